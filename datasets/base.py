"""The generic datamodule base shared by every field.

:class:`ChannelDataModule` wraps ready-made train/val/test datasets of
:class:`~chanformer.batch.ChannelSample` and batches them with :meth:`ChannelBatch.collate`;
:class:`EpochShuffleSampler` gives a training order that depends only on ``(seed, epoch)``;
:func:`stratified_split` holds out a share of each class. Field datamodules (time series, EEG,
images, speech) subclass :class:`ChannelDataModule`.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.spec import DataSpec

__all__ = ["ChannelDataModule", "EpochShuffleSampler", "stratified_split"]


class ChannelDataModule(L.LightningDataModule):
    """Thin datamodule: train/val/test datasets, batched with :meth:`ChannelBatch.collate`.

    Args:
        train / val / test: datasets of ``ChannelSample`` (subclasses build them in ``setup``).
        vocab: the vocabulary their ``channel_ids`` index.
        batch_size / num_workers: as for ``DataLoader``.
        seed: seeds the training shuffle (and subclasses' splits).
        drop_last: drop the last incomplete training batch.

    """

    train_dataset: Dataset[ChannelSample] | None
    val_dataset: Dataset[ChannelSample] | None
    test_dataset: Dataset[ChannelSample] | None

    def __init__(
        self,
        train: Dataset[ChannelSample] | None = None,
        val: Dataset[ChannelSample] | None = None,
        test: Dataset[ChannelSample] | None = None,
        *,
        vocab: ChannelVocab | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.train_dataset, self.val_dataset, self.test_dataset = train, val, test
        self._vocab = vocab
        self.augment: torch.nn.Module | None = None
        self.batch_size, self.num_workers, self.seed, self.drop_last = (
            batch_size,
            num_workers,
            seed,
            drop_last,
        )

    @property
    def vocab(self) -> ChannelVocab:
        if self._vocab is None:
            raise AttributeError("this datamodule was built without vocab=")
        return self._vocab

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab)

    def _loader(self, ds: Dataset[ChannelSample] | None, stage: str, train: bool = False) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"no {stage} dataset: pass {stage}= or call setup() first")
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if train else None,  # type: ignore[arg-type]
            drop_last=train and self.drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=ChannelBatch.collate,
        )

    def on_after_batch_transfer(self, batch: ChannelBatch, dataloader_idx: int) -> ChannelBatch:
        """Augment training batches on the device they were moved to."""
        trainer = getattr(self, "trainer", None)
        if self.augment is not None and trainer is not None and trainer.training:
            batch = self.augment(batch)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from a checkpoint
    sees exactly the order an uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(train, val)``: ``round(val_fraction * n_c)`` of each class to val.

    Every class keeps at least one case in train; ``seed`` fixes the draw.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = min(max(round(val_fraction * len(idx)), 1 if val_fraction > 0 else 0), len(idx) - 1)
        val.append(idx[:n])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx
