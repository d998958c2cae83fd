"""Bag datasets and MIL datamodules over a :class:`~chanformer.datasets.wsi.store.BagStore`.

:class:`BagDataset` reads bags of one store (optionally capped at ``max_instances`` per bag);
:class:`BagLoaders` batches them into padded :class:`~chanformer.batch.BagBatch` es;
:class:`BagDataModule` splits a store by slide (stratified by label); :func:`read_grids` reads
the tile grids written by ``chanformer wsi tile``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import BagBatch
from chanformer.datasets.wsi.slides import TileGrid
from chanformer.datasets.wsi.store import Bag, BagError, BagStore
from chanformer.spec import DataSpec

__all__ = ["BagDataModule", "BagDataset", "BagLoaders", "read_grids"]


class BagDataset(Dataset[Bag]):
    """Bags of a :class:`BagStore`, loaded once into memory and checked.

    Args:
        store: the store (or its path).
        slides: which slides (default: every complete bag).
        max_instances: training-time cap; larger bags are randomly subsampled each time they are read.
        seed: seed of that subsampling.

    Raises:
        BagError: empty bags, NaN features, or feature widths that differ between bags (names the slide).
    """

    def __init__(self, store: str | os.PathLike[str] | BagStore, slides: Sequence[str] | None = None,
                 max_instances: int | None = None, seed: int = 0) -> None:  # fmt: skip
        self.store = store if isinstance(store, BagStore) else BagStore(store)
        names = list(slides) if slides is not None else self.store.slides()
        if not names:
            raise BagError(f"bag store {self.store.path} holds no complete bag")
        self.bags = [self.store.read_bag(s) for s in names]
        d = self.bags[0].features.shape[1]
        for b in self.bags:
            if b.features.shape[1] != d:
                first = self.bags[0].slide
                raise BagError(f"slide {b.slide}: {b.features.shape[1]} features per tile, but slide {first} has {d}")
        self.feature_dim = d
        self.max_instances = max_instances
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> Bag:
        b = self.bags[i]
        if self.max_instances and len(b.features) > self.max_instances:
            idx = torch.from_numpy(np.sort(self._rng.choice(len(b.features), self.max_instances, replace=False)))
            return Bag(b.features[idx], b.coords[idx], b.label, b.slide, b.attrs)
        return b

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if b.label is None else b.label for b in self.bags])


class BagLoaders:
    """The loaders of a bag datamodule: ``self.datasets[split]`` batched into padded
    :class:`BagBatch` es (training order reshuffled per epoch from ``self.seed``)."""

    datasets: dict[str, Any]
    batch_size: int
    num_workers: int
    seed: int

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self.datasets.get(split)
        if ds is None:
            return []  # type: ignore[return-value]
        from chanformer.datasets.base import EpochShuffleSampler

        return DataLoader(ds, batch_size=self.batch_size, collate_fn=BagBatch.collate, num_workers=self.num_workers,
                          sampler=EpochShuffleSampler(len(ds), self.seed) if shuffle else None)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


class BagDataModule(BagLoaders, L.LightningDataModule):
    """Train/val/test bags from one store, split by slide (stratified by label).

    Args:
        store: bag store path (``chanformer wsi extract --store ...``).
        batch_size: bags per step; bags of different sizes are padded with a mask (1 = no padding).
        val_fraction / test_fraction: share of each class held out for validation / test.
        split_file: optional JSON ``{"train": [...], "val": [...], "test": [...]}`` of slide names.
        num_classes: default: ``max(label) + 1``.
        max_instances: random subsample of larger training bags (None = all tiles).
        normalize: standardise every feature with the mean/std of the training tiles.
        seed: split and shuffling seed.
    """

    def __init__(
        self,
        store: str = "runs/wsi/bags.zarr",
        batch_size: int = 1,
        val_fraction: float = 0.25,
        test_fraction: float = 0.25,
        split_file: str | None = None,
        num_classes: int | None = None,
        max_instances: int | None = None,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.store = BagStore(store)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        full = BagDataset(self.store)
        labels = full.labels
        if (labels < 0).any():
            bad = full.bags[int(np.argmax(labels < 0))].slide
            raise BagError(f"slide {bad}: bag has no label (pass labels= when extracting)")
        self._num_classes = num_classes or int(labels.max()) + 1
        self.feature_dim = full.feature_dim
        names = [b.slide for b in full.bags]
        if split_file:
            split = json.loads(Path(split_file).read_text())
            parts = {k: [names.index(s) for s in split.get(k, [])] for k in ("train", "val", "test")}
        else:
            from chanformer.datasets.base import stratified_split

            rest, test = stratified_split(labels, test_fraction, seed) if test_fraction > 0 \
                else (np.arange(len(labels)), np.zeros(0, int))  # fmt: skip
            tr, va = stratified_split(labels[rest], val_fraction / max(1e-9, 1 - test_fraction), seed + 1) if val_fraction > 0 \
                else (np.arange(len(rest)), np.zeros(0, int))  # fmt: skip
            parts = {"train": list(rest[tr]), "val": list(rest[va]), "test": list(test)}
        self.splits = {k: [names[i] for i in v] for k, v in parts.items()}
        sub = {k: [full.bags[i] for i in v] for k, v in parts.items()}
        if normalize and sub["train"]:
            tiles = torch.cat([b.features for b in sub["train"]])
            mean, std = tiles.mean(0), tiles.std(0).clamp_min(1e-6)
            sub = {k: [Bag((b.features - mean) / std, b.coords, b.label, b.slide, b.attrs) for b in v] for k, v in sub.items()}
        self.datasets: dict[str, BagDataset | None] = {}
        for k, bags in sub.items():
            if not bags:
                self.datasets[k] = None
                continue
            ds = BagDataset.__new__(BagDataset)
            ds.store, ds.bags, ds.feature_dim, ds._rng = self.store, bags, full.feature_dim, np.random.default_rng(seed)
            ds.max_instances = max_instances if k == "train" else None
            self.datasets[k] = ds

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def spec(self) -> DataSpec:
        return DataSpec(num_classes=self.num_classes, class_names=[str(i) for i in range(self.num_classes)],
                        feature_dim=self.feature_dim)  # fmt: skip



def read_grids(directory: str | os.PathLike[str]) -> dict[str, TileGrid]:
    """Tile grids written by ``chanformer wsi tile`` (``<slide>.tiles.json`` files) by slide name."""
    out = {}
    for p in sorted(Path(directory).glob("*.tiles.json")):
        g = TileGrid.from_json(json.loads(p.read_text()))
        out[g.slide] = g
    return out
