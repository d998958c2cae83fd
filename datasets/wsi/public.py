"""Shared pieces of the readers of published whole-slide data (CLAM feature folders, CAMELYON16).

* :class:`WSIDataMissingError` - a ``FileNotFoundError`` whose message describes the expected
  layout and where the data comes from (nothing here ever downloads).
* :func:`handle_missing` - slides that are listed but have no data: a named error listing them,
  or a warning and the slides left out (``on_missing="raise" | "skip"``).
* :class:`LazyBagDataset` - bags read from disk when indexed (feature folders of a whole cohort
  rarely fit in memory), standardised with statistics fitted on the training bags and randomly
  subsampled to ``max_instances`` in training.
* :class:`SplitBagDataModule` - explicit train/val/test bag datasets batched into padded
  :class:`~chanformer.batch.BagBatch` es, with the per-feature mean/std fitted once on the
  training bags (streamed, one bag at a time) and a :class:`~chanformer.spec.DataSpec` for the CLI.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from chanformer.datasets.wsi.bags import BagLoaders
from chanformer.datasets.wsi.store import Bag, BagError
from chanformer.spec import DataSpec

__all__ = ["LazyBagDataset", "SplitBagDataModule", "WSIDataMissingError", "feature_statistics", "handle_missing"]

ON_MISSING = ("raise", "skip")


class WSIDataMissingError(FileNotFoundError):
    """A published whole-slide data folder, file or listed slide is missing; the message shows the layout."""


def check_on_missing(value: str, owner: str) -> None:
    if value not in ON_MISSING:
        raise ValueError(f"{owner}(on_missing={value!r}): expected 'raise' or 'skip'")


def _listing(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def handle_missing(missing: Sequence[str], on_missing: str, what: str, error: type[Exception] = WSIDataMissingError,
                   hint: str = "") -> None:  # fmt: skip
    """Name the slides in ``missing``: raise ``error`` (``on_missing="raise"``) or warn (``"skip"``).

    ``what`` says what they lack (``"CLAM features /data/feats: 2 slides of labels.csv have no feature
    file"``); ``hint`` is appended to the error (where to look, how to skip them).
    """
    if not missing:
        return
    message = f"{what}: {_listing(list(missing))}"
    if on_missing == "raise":
        raise error(f"{message}{'; ' + hint if hint else ''}; or pass on_missing='skip' to leave them out")
    warnings.warn(f"{message}; left out (on_missing='skip')", UserWarning, stacklevel=3)


class LazyBagDataset(Dataset[Bag]):
    """Bags read when indexed; subclasses implement :meth:`read` (the raw bag of item ``i``).

    Attributes set by subclasses: :attr:`slides` (bag names), :attr:`targets` (class index per bag),
    :attr:`feature_dim`. ``mean``/``std`` (``[D]``), when set, standardise every bag;
    ``max_instances`` randomly subsamples larger bags each time they are read (training).
    """

    slides: list[str]
    targets: list[int]
    feature_dim: int

    def _init_lazy(self, max_instances: int | None, seed: int) -> None:
        if max_instances is not None and (isinstance(max_instances, bool) or max_instances < 1):
            raise ValueError(f"{type(self).__name__}(max_instances={max_instances!r}): must be a positive integer or None")
        self.max_instances = max_instances
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self._rng = np.random.default_rng(seed)

    @abstractmethod
    def read(self, i: int) -> Bag:
        """Bag ``i`` as stored (float32 ``[N, D]`` features, level-0 ``(y, x)`` coords), checked."""

    def __len__(self) -> int:
        return len(self.slides)

    def __getitem__(self, i: int) -> Bag:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{type(self).__name__} index {i} out of range for {len(self)} bags")
        b = self.read(int(i) % len(self))
        feats = b.features
        if self.mean is not None and self.std is not None:
            feats = (feats - self.mean) / self.std
        coords = b.coords
        if self.max_instances and len(feats) > self.max_instances:
            idx = torch.from_numpy(np.sort(self._rng.choice(len(feats), self.max_instances, replace=False)))
            feats, coords = feats[idx], coords[idx]
        return Bag(feats, coords, b.label, b.slide, b.attrs)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.targets, dtype=np.int64)


def check_bag(slide: str, features: Tensor, where: str, feature_dim: int | None = None) -> None:
    """Empty, non-2-D, NaN/inf features or the wrong width raise a :class:`BagError` naming the slide."""
    if features.ndim != 2 or len(features) == 0:
        raise BagError(f"slide {slide}: empty bag or not [N, D] features (shape {tuple(features.shape)}) in {where}")
    if feature_dim is not None and features.shape[1] != feature_dim:
        raise BagError(f"slide {slide}: {features.shape[1]} features per tile in {where}, other slides have {feature_dim}")
    bad = ~torch.isfinite(features)
    if bool(bad.any()):
        raise BagError(f"slide {slide}: {int(bad.any(1).sum())} tiles have NaN/inf features in {where}")


def feature_statistics(dataset: LazyBagDataset) -> tuple[Tensor, Tensor]:
    """Per-feature mean and (population) std over every instance of ``dataset``, streamed one bag at a
    time in float64; a constant feature gets std 1 (as :func:`~chanformer.datasets.wsi.tables.standardize_bags`)."""
    total = torch.zeros(dataset.feature_dim, dtype=torch.float64)
    squares = torch.zeros(dataset.feature_dim, dtype=torch.float64)
    n = 0
    for i in range(len(dataset)):
        f = dataset.read(i).features.double()
        total += f.sum(0)
        squares += (f * f).sum(0)
        n += len(f)
    mean = total / max(n, 1)
    var = (squares / max(n, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.float(), std.float()


class SplitBagDataModule(BagLoaders, L.LightningDataModule):
    """Train/val/test :class:`LazyBagDataset` s with fixed splits, batched into padded bags.

    Subclasses fill :attr:`datasets` (``"train"``, ``"val"``, ``"test"``; ``None`` for an empty
    split), :attr:`class_names` and :attr:`feature_dim`. Features are standardised with the
    mean/std of the training instances (``normalize``), fitted on first use of a loader (or
    :meth:`setup`) and shared with every split.
    """

    datasets: dict[str, Any]
    class_names: list[str]
    feature_dim: int
    normalize: bool

    def fit_normalizer(self) -> None:
        """Fit mean/std on the training bags (once) and set them on every split's dataset."""
        if not self.normalize or getattr(self, "_fitted", False):
            return
        train = self.datasets.get("train")
        if train is None:
            raise ValueError(f"{type(self).__name__}: no training bags to fit the feature statistics on "
                             "(pass normalize=False)")  # fmt: skip
        self.mean, self.std = feature_statistics(train)
        for ds in self.datasets.values():
            if ds is not None:
                ds.mean, ds.std = self.mean, self.std
        self._fitted = True

    def setup(self, stage: str | None = None) -> None:
        self.fit_normalizer()

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        self.fit_normalizer()
        return super()._loader(split, shuffle)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(num_classes=self.num_classes, class_names=list(self.class_names), feature_dim=self.feature_dim)

    @property
    def splits(self) -> dict[str, list[str]]:
        """Slide names of each split."""
        return {k: [] if ds is None else list(ds.slides) for k, ds in self.datasets.items()}
