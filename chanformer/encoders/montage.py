"""Map batches onto a fixed electrode montage, interpolating missing electrodes.

Fixed-montage encoders (DBConformer) need every montage electrode. :func:`interpolate_montage`
fills the electrodes a sample lacks from the ones it has with mne's spherical-spline
interpolation (Perrin et al. 1989), using the electrode positions stored in the vocabulary.
The ``[missing, present]`` interpolation matrix is computed once per (present, missing) channel
set through mne's public ``interpolate_bads`` (applied to an identity signal, which yields the
matrix itself) and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import cast

import numpy as np
import torch

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab

__all__ = ["interpolate_montage", "interpolation_matrix"]

Position = tuple[float, float, float]


@lru_cache(maxsize=256)
def _matrix(present: tuple[Position, ...], missing: tuple[Position, ...]) -> np.ndarray:
    import mne

    names = [f"p{i}" for i in range(len(present))] + [f"m{i}" for i in range(len(missing))]
    info = mne.create_info(names, 100.0, "eeg")
    # identity on the present channels: interpolation is linear, so the bad rows become the matrix
    data = np.zeros((len(names), len(present)))
    data[: len(present)] = np.eye(len(present))
    raw = mne.io.RawArray(data, info, verbose="error")
    pos = dict(zip(names, np.asarray(present + missing, dtype=float)))
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=pos, coord_frame="head"), verbose="error")
    raw.info["bads"] = names[len(present) :]
    raw.interpolate_bads(reset_bads=True, origin="auto", verbose="error")
    return raw.get_data()[len(present) :]


def interpolation_matrix(vocab: ChannelVocab, present: Sequence[str], missing: Sequence[str]) -> np.ndarray:
    """Spherical-spline weights ``[len(missing), len(present)]``: ``x_missing = M @ x_present``.

    Raises ``ValueError`` naming every channel (present or missing) without a position.
    """
    no_pos = [
        k
        for k in [*present, *missing]
        if vocab[k].position is None or not np.isfinite(cast("tuple[float, float, float]", vocab[k].position)).all()
    ]
    if no_pos:
        raise ValueError(f"cannot interpolate missing electrodes: channel(s) {no_pos} have no position in vocabulary "
                         f"{vocab.name!r}")
    if len(present) < 4:
        raise ValueError(f"cannot interpolate {list(missing)} from only {len(present)} present electrode(s)")
    return _matrix(tuple(vocab[k].position for k in present), tuple(vocab[k].position for k in missing))  # type: ignore[misc]


def interpolate_montage(batch: ChannelBatch, channels: Sequence[str], vocab: ChannelVocab) -> ChannelBatch:
    """``batch`` mapped onto ``channels`` (vocabulary keys) with absent electrodes interpolated.

    Returns a batch ``[B, len(channels), T]`` in montage order, every channel present. Only the
    montage electrodes a sample has are used as interpolation sources; samples sharing a channel
    set share one cached matrix.
    """
    ids = vocab.ids(list(channels))
    mapped = batch.select(ids)
    if bool(mapped.mask.all()):
        return mapped
    values = mapped.values.clone()
    patterns, inverse = torch.unique(mapped.mask, dim=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        if bool(pattern.all()):
            continue
        have = pattern.nonzero().flatten().tolist()
        lack = (~pattern).nonzero().flatten().tolist()
        m = interpolation_matrix(vocab, [channels[i] for i in have], [channels[i] for i in lack])
        rows = (inverse == p).nonzero().flatten()
        w = torch.as_tensor(m, dtype=values.dtype, device=values.device)
        src = values[rows][:, have]  # [b, present, T]
        values[rows[:, None], torch.tensor(lack, device=values.device)[None]] = torch.einsum("mp,bpt->bmt", w, src)
    mask = torch.ones_like(mapped.mask)
    ids_t = torch.as_tensor(ids, dtype=torch.long, device=values.device).expand_as(mapped.channel_ids).clone()
    coords = None
    if mapped.coords is not None:
        pos = [vocab[i].position for i in ids]
        coords = torch.tensor(pos, dtype=mapped.coords.dtype, device=values.device).expand_as(mapped.coords).clone()
    return replace(mapped, values=values, channel_ids=ids_t, mask=mask, coords=coords)
