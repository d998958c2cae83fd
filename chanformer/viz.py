"""Plots of channel importance (matplotlib): bar charts, EEG topomaps, spectral-band bars.

Every function takes importance ``[C]`` or ``[B, C]`` (averaged over ``B``), draws on ``ax``
(a new figure when ``None``) and returns the axes. Importance comes from
:func:`chanformer.importance.channel_importance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chanformer.channels import ChannelVocab

__all__ = ["plot_band_importance", "plot_channel_importance", "plot_importance_topomap"]


def _mean(importance: Any, n: int | None = None) -> np.ndarray:
    arr = importance.detach().cpu().numpy() if hasattr(importance, "detach") else np.asarray(importance)
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr.mean(0)
    if arr.ndim != 1:
        raise ValueError(f"importance must be [C] or [B, C], got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"importance has {arr.shape[0]} channels but {n} names/channels were given")
    return arr


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3))[1]


def _short(key: str) -> str:
    return key.split("/", 1)[-1]


def plot_channel_importance(
    importance: Any, names: Sequence[str], ax: Any = None, *, title: str | None = None, sort: bool = False
) -> Any:
    """Bar chart of importance per channel (``names``: one label per channel, e.g. vocabulary keys)."""
    imp = _mean(importance, len(names))
    labels = [_short(str(n)) for n in names]
    order = np.argsort(-imp) if sort else np.arange(len(imp))
    ax = _axes(ax)
    ax.bar([labels[i] for i in order], imp[order], color="tab:blue")
    ax.set_ylabel("importance")
    ax.set_xlabel("channel")
    if len(labels) > 8:
        ax.tick_params(axis="x", labelrotation=90)
    if title:
        ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def plot_importance_topomap(
    importance: Any, channels: Sequence[str], vocab: ChannelVocab | None = None, ax: Any = None, **kwargs: Any
) -> Any:
    """EEG topomap of importance via :func:`mne.viz.plot_topomap`.

    Args:
        importance: ``[C]`` or ``[B, C]``.
        channels: vocabulary keys of the ``C`` channels (e.g. ``"eeg/Cz"``).
        vocab: vocabulary holding their 3-D positions (default: the EEG 10-05 vocabulary).
        ax: matplotlib axes.
        **kwargs: passed to :func:`mne.viz.plot_topomap` (e.g. ``cmap``, ``contours``).

    Raises:
        ValueError: naming the channels that have no position.

    """
    import mne

    from chanformer.channels import eeg_1005_vocab

    vocab = vocab if vocab is not None else eeg_1005_vocab()
    imp = _mean(importance, len(channels))
    missing = [k for k in channels if k not in vocab or vocab[k].position is None]
    if missing:
        raise ValueError(f"plot_importance_topomap: no position for channel(s) {missing} in vocabulary {vocab.name!r}")
    names = [_short(k) for k in channels]
    pos = {n: vocab[i].position for n, i in zip(names, vocab.ids(list(channels)))}
    info = mne.create_info(names, sfreq=100.0, ch_types="eeg")
    info.set_montage(mne.channels.make_dig_montage(ch_pos=pos, coord_frame="head"), on_missing="ignore")
    ax = _axes(ax)
    kwargs.setdefault("cmap", "Reds")
    mne.viz.plot_topomap(imp, info, axes=ax, show=False, names=names, **kwargs)
    return ax


def plot_band_importance(importance: Any, channels: Sequence[str], vocab: ChannelVocab, ax: Any = None) -> Any:
    """Bars per spectral band / stain, ordered by ``wavelength_nm`` when every channel has one.

    Bars are labelled ``name (wavelength nm)``; channels without a wavelength keep their order.
    """
    imp = _mean(importance, len(channels))
    info = [vocab[i] for i in vocab.ids(list(channels))]
    waves = [c.wavelength_nm for c in info]
    order = np.argsort(np.array(waves, dtype=float)) if all(w is not None for w in waves) else np.arange(len(imp))
    labels = [f"{_short(info[i].key)}\n{waves[i]:.0f} nm" if waves[i] is not None else _short(info[i].key) for i in order]
    ax = _axes(ax)
    ax.bar(labels, imp[order], color="tab:green")
    ax.set_ylabel("importance")
    ax.set_xlabel("band (by wavelength)" if waves and all(w is not None for w in waves) else "channel")
    ax.tick_params(axis="x", labelsize=7)
    ax.figure.tight_layout()
    return ax
