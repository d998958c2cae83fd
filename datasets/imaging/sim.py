"""Synthetic, labelled multichannel images where the class shows in ONE channel only.

These images are **synthetic** (no biology, no satellite): they exist so that channel-subset
robustness (ChannelViT's partial-channel evaluation, Hierarchical Channel Sampling) can be
measured honestly and offline. Every channel carries the same kind of signal - an oriented
sinusoidal texture inside a channel-specific compartment mask - drawn from the same set of
orientations; only the texture orientation of the *class channel* depends on the label. A model
therefore has to know *which* channel is which (channel identity) to classify, and an image
without its class channel carries no information about the label (chance accuracy).

Two styles:

* ``"cells"`` (microscopy, Cell Painting-like stains ``stain/DAPI``, ``stain/ER``, ``stain/RNA``,
  ``stain/AGP``, ``stain/Mito``; class in ``stain/Mito``): 2-4 round cells per field with a
  nucleus (DAPI), cytoplasm (ER, Mito), nucleus + cytoplasm (RNA) and membrane ring (AGP).
* ``"fields"`` (satellite, Sentinel-2 band keys ``s2/B02``, ``s2/B03``, ``s2/B04``, ``s2/B08``,
  ``s2/B11``, ``s2/B12``; class in ``s2/B08``): Voronoi parcels with per-band reflectance levels.

The label-independent content of image ``i`` comes from a random stream seeded by ``(seed, i)``
and the class texture from a separate stream, so re-rendering an image with another label
changes the class channel and nothing else (:meth:`SyntheticImageDataset.render`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import Channel, ChannelVocab, sentinel2_vocab

__all__ = [
    "CELL_PAINTING_STAINS",
    "SATELLITE_BANDS",
    "SyntheticImageDataset",
    "cell_painting_vocab",
]

#: Cell Painting stains and approximate emission peaks (nm) of their usual dyes.
CELL_PAINTING_STAINS: dict[str, float] = {
    "stain/DAPI": 461.0,  # Hoechst 33342 - DNA
    "stain/ER": 520.0,  # Concanavalin A / Alexa 488 - endoplasmic reticulum
    "stain/RNA": 570.0,  # SYTO 14 - nucleoli, cytoplasmic RNA
    "stain/AGP": 600.0,  # WGA + phalloidin / Alexa 568 - Golgi, plasma membrane, actin
    "stain/Mito": 665.0,  # MitoTracker Deep Red - mitochondria
}
#: Sentinel-2 bands used by the ``"fields"`` style (10 m + 20 m SWIR).
SATELLITE_BANDS = ("s2/B02", "s2/B03", "s2/B04", "s2/B08", "s2/B11", "s2/B12")

_STYLES = {
    "cells": (tuple(CELL_PAINTING_STAINS), "stain/Mito"),
    "fields": (SATELLITE_BANDS, "s2/B08"),
}
# compartment of each stain: nucleus, cytoplasm, whole cell, membrane ring
_COMPARTMENT = {"stain/DAPI": "nucleus", "stain/ER": "cytoplasm", "stain/RNA": "cell",
                "stain/AGP": "membrane", "stain/Mito": "cytoplasm"}  # fmt: skip


def cell_painting_vocab() -> ChannelVocab:
    """Vocabulary of the five Cell Painting stain keys (with approximate emission wavelengths)."""
    return ChannelVocab(
        "cell_painting", [Channel(k, kind="stain", wavelength_nm=w) for k, w in CELL_PAINTING_STAINS.items()]
    )


class SyntheticImageDataset(Dataset[ChannelSample]):
    """Seeded synthetic images ``[C, S, S]`` (float32) whose label shows in one channel only.

    Args:
        n: number of images.
        image_size: side ``S`` in pixels.
        num_classes: classes = texture orientations ``k * 180 / num_classes`` degrees of the class
            channel (distractor channels draw their orientation from the same set).
        style: ``"cells"`` (microscopy stains) or ``"fields"`` (Sentinel-2 bands); see module doc.
        channels: channel keys to emit, in this order (default: all of the style's channels).
        class_channel: the channel whose texture encodes the label (default: the style's).
        vocab: vocabulary for ``channel_ids`` (default: :func:`cell_painting_vocab` or the
            Sentinel-2 vocabulary).
        noise: standard deviation of additive Gaussian pixel noise.
        seed: base seed; image ``i`` depends only on ``(seed, i)``.
        cache: keep rendered images in memory.

    Labels are balanced: image ``i`` has label ``i % num_classes``.
    """

    def __init__(
        self,
        n: int = 1000,
        image_size: int = 32,
        num_classes: int = 4,
        style: str = "cells",
        channels: Sequence[str] | None = None,
        class_channel: str | None = None,
        vocab: ChannelVocab | None = None,
        noise: float = 0.1,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if style not in _STYLES:
            raise ValueError(f"SyntheticImageDataset(style={style!r}): expected one of {sorted(_STYLES)}")
        if n < 1 or image_size < 8 or num_classes < 2:
            raise ValueError(f"SyntheticImageDataset: need n >= 1, image_size >= 8, num_classes >= 2 "
                             f"(got {n}, {image_size}, {num_classes})")  # fmt: skip
        default_channels, default_class = _STYLES[style]
        self.channels = list(channels or default_channels)
        self.class_channel = class_channel or default_class
        unknown = [c for c in self.channels if c not in default_channels]
        if unknown:
            raise ValueError(f"SyntheticImageDataset(style={style!r}): unknown channels {unknown} "
                             f"(known: {list(default_channels)})")  # fmt: skip
        if self.class_channel not in default_channels:
            raise ValueError(f"SyntheticImageDataset(class_channel={self.class_channel!r}) is not a {style!r} channel")
        self.vocab = vocab if vocab is not None else (cell_painting_vocab() if style == "cells" else sentinel2_vocab())
        self.channel_ids = torch.tensor(self.vocab.ids(self.channels), dtype=torch.long)
        self.n, self.image_size, self.num_classes, self.style = n, image_size, num_classes, style
        self.noise, self.seed, self.cache = float(noise), int(seed), cache
        self._all = list(default_channels)
        self._cache: dict[int, ChannelSample] = {}

    def __len__(self) -> int:
        return self.n

    def label(self, index: int) -> int:
        return index % self.num_classes

    @property
    def class_names(self) -> list[str]:
        return [f"{round(k * 180 / self.num_classes)}deg" for k in range(self.num_classes)]

    def render(self, index: int, label: int | None = None) -> np.ndarray:
        """Image ``index`` as ``[C, S, S]`` float32 (all of ``self.channels``), optionally with
        another ``label``: only the class channel changes.
        """
        if not 0 <= index < self.n:
            raise IndexError(f"image index {index} out of range [0, {self.n})")
        label = self.label(index) if label is None else int(label)
        s = self.image_size
        rng = np.random.default_rng([self.seed, index, 0])  # everything but the class texture
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
        masks = self._cells(rng, yy, xx) if self.style == "cells" else self._fields(rng, yy, xx)
        angles = np.arange(self.num_classes) * np.pi / self.num_classes
        out = np.empty((len(self._all), s, s), dtype=np.float64)
        for c, key in enumerate(self._all):
            # every channel's draws happen, in the same order, whatever the label
            theta = angles[rng.integers(self.num_classes)]
            period, phase = rng.uniform(3.5, 5.5), rng.uniform(0, 2 * np.pi)
            level, amp = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.5)
            noise = rng.normal(0.0, self.noise, (s, s))
            if key == self.class_channel:
                crng = np.random.default_rng([self.seed, index, 1])
                theta = angles[label % self.num_classes]
                period, phase = crng.uniform(3.5, 5.5), crng.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
            m = masks[key]
            out[c] = m * (level + amp * wave) + noise
        keep = [self._all.index(k) for k in self.channels]
        return out[keep].astype(np.float32)

    def _cells(self, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> dict[str, np.ndarray]:
        s = yy.shape[0]
        n_cells = int(rng.integers(2, 5))
        cell = np.zeros_like(yy)
        nucleus = np.zeros_like(yy)
        membrane = np.zeros_like(yy)
        for _ in range(n_cells):
            cy, cx = rng.uniform(0.15 * s, 0.85 * s, 2)
            r = rng.uniform(0.17, 0.27) * s
            d = np.hypot(yy - cy, xx - cx)
            cell = np.maximum(cell, 1 / (1 + np.exp((d - r) / 0.8)))
            nucleus = np.maximum(nucleus, 1 / (1 + np.exp((d - 0.45 * r) / 0.6)))
            membrane = np.maximum(membrane, np.exp(-(((d - r) / 1.2) ** 2)))
        comp = {"nucleus": nucleus, "cytoplasm": np.clip(cell - nucleus, 0, 1), "cell": cell, "membrane": membrane}
        return {k: comp[_COMPARTMENT[k]] for k in self._all}

    def _fields(self, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> dict[str, np.ndarray]:
        s = yy.shape[0]
        seeds = rng.uniform(0, s, (int(rng.integers(3, 6)), 2))
        parcel = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
        out = {}
        for k in self._all:
            levels = rng.uniform(0.5, 1.0, len(seeds))  # per-parcel reflectance of this band
            out[k] = levels[parcel]
        return out

    def __getitem__(self, index: int) -> ChannelSample:
        if index < 0:
            index += self.n
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        sample = ChannelSample(
            torch.from_numpy(self.render(index)), self.channel_ids.clone(),
            target=torch.tensor(self.label(index), dtype=torch.long),
        )  # fmt: skip
        if self.cache:
            self._cache[index] = sample
        return sample
