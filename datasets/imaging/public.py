"""Shared pieces of the readers of published image datasets (EuroSAT, So2Sat LCZ42, BigEarthNet).

* :class:`PublicDataMissingError` - a ``FileNotFoundError`` whose message describes the layout
  the publisher distributes and where to download it (nothing here ever downloads).
* :class:`LabelledImageDataset` - the common ``__getitem__``: values ``[C, H, W]`` float32 read by a
  subclass, the requested channel subset, an optional fitted
  :class:`~chanformer.datasets.imaging.datasets.ChannelNormalizer`, the target, a transform.
* :class:`PublicImageDataModule` - the official train/val/test splits of such a dataset as
  :class:`~chanformer.batch.ChannelBatch` es, with per-channel mean/std statistics fitted on
  (a strided subset of) the training split.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab, UnknownChannelError
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.imaging.datasets import ChannelNormalizer, ImageAugment
from chanformer.spec import DataSpec
from chanformer.transforms.channel_sampling import HierarchicalChannelSampling

__all__ = ["LabelledImageDataset", "PublicDataMissingError", "PublicImageDataModule", "select_channels"]

PathLike = str | os.PathLike[str]


class PublicDataMissingError(FileNotFoundError):
    """A published dataset's folder or one of its files is missing; the message shows the layout."""


def select_channels(available: Sequence[str], wanted: Iterable[str] | None, prefix: str, what: str) -> list[int]:
    """Indices into ``available`` keys of ``wanted`` (keys like ``s2/B04`` or bare names like ``B04``,
    which get ``prefix``); ``None`` = all. Unknown names raise :class:`UnknownChannelError` naming them."""
    if wanted is None:
        return list(range(len(available)))
    keys = [w if "/" in w else f"{prefix}/{w}" for w in wanted]
    missing = [k for k in keys if k not in available]
    if missing:
        raise UnknownChannelError(missing, f"{what} channels ({', '.join(available)})")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what}: channels listed twice in {list(wanted)}")
    if not keys:
        raise ValueError(f"{what}: channels is empty")
    return [list(available).index(k) for k in keys]


class LabelledImageDataset(Dataset[ChannelSample]):
    """Base of the published-dataset readers: subclasses list their items and read one.

    Subclasses set :attr:`all_keys` (channel keys of :meth:`read`'s output, in order), :attr:`classes`,
    and implement ``__len__``, :meth:`read` (``[C_all, H, W]`` array) and :meth:`target`.
    ``channels`` (see :func:`select_channels`) keeps a subset, in the order given.
    """

    all_keys: list[str]
    classes: list[str]
    vocab: ChannelVocab

    def _init_common(
        self,
        vocab: ChannelVocab,
        channels: Iterable[str] | None,
        prefix: str,
        normalizer: ChannelNormalizer | None,
        transform: Any,
    ) -> None:
        self.vocab, self.normalizer, self.transform = vocab, normalizer, transform
        self.channel_index = select_channels(self.all_keys, channels, prefix, type(self).__name__)
        self.channel_keys = [self.all_keys[i] for i in self.channel_index]
        self.channel_ids = torch.tensor(self.vocab.ids(self.channel_keys), dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Raw values ``[C_all, H, W]`` of item ``index`` (every channel of :attr:`all_keys`)."""

    @abstractmethod
    def target(self, index: int) -> Tensor:
        """Target of item ``index``."""

    def raw(self, index: int) -> np.ndarray:
        """The selected channels of item ``index``, unnormalised, ``[C, H, W]``."""
        values = self.read(index)
        return values if self.channel_index == list(range(len(self.all_keys))) else values[self.channel_index]

    def __getitem__(self, index: int) -> ChannelSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range for {len(self)} items")
        index = int(index) % len(self)
        values = self.raw(index)
        if self.normalizer is not None:
            out = self.normalizer(values, self.channel_keys, source=f"{type(self).__name__} item {index}")
        else:
            out = np.asarray(values, dtype=np.float32)
        sample = ChannelSample(torch.from_numpy(np.ascontiguousarray(out)), self.channel_ids.clone(),
                               target=self.target(index))  # fmt: skip
        return self.transform(sample) if self.transform is not None else sample

    def fit_normalizer(self, max_items: int = 512) -> ChannelNormalizer:
        """Per-channel mean/std over up to ``max_items`` evenly strided items; sets :attr:`normalizer`."""

        def images() -> Iterator[tuple[np.ndarray, list[str]]]:
            step = max(1, len(self) // max(1, max_items))
            for i in range(0, len(self), step):
                yield self.raw(i), self.channel_keys

        self.normalizer = ChannelNormalizer("meanstd").fit(images())
        return self.normalizer


class PublicImageDataModule(ChannelDataModule):
    """Train/val/test splits of a published image dataset as :class:`~chanformer.batch.ChannelBatch` es.

    Subclasses implement :meth:`make_dataset` (``"train"``, ``"val"``, ``"test"``) and
    :meth:`build_vocab`; this class fits per-channel mean/std on the training split (``normalize``,
    over at most ``norm_items`` items) and shares it with val/test, adds flips/rotations to the
    training samples (``flip_rot``), Hierarchical Channel Sampling to training batches on the device
    (``hcs``, keeping at least ``hcs_min_channels``) and reports the data spec (image size, classes,
    channels).
    """

    image_size: int = 0

    def __init__(
        self,
        root: str,
        *,
        normalize: bool = True,
        norm_items: int = 512,
        flip_rot: bool = False,
        hcs: bool = False,
        hcs_min_channels: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.root = root
        self.normalize, self.norm_items, self.flip_rot = normalize, norm_items, flip_rot
        super().__init__(vocab=self.build_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        if hcs:
            self.augment = HierarchicalChannelSampling(min_channels=hcs_min_channels)  # type: ignore[assignment]
        self.classes: list[str] | None = None

    @abstractmethod
    def build_vocab(self) -> ChannelVocab: ...

    @abstractmethod
    def make_dataset(self, split: str) -> LabelledImageDataset: ...

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:  # type: ignore[has-type]
            return
        train = self.make_dataset("train")
        if self.normalize:
            train.fit_normalizer(self.norm_items)
        if self.flip_rot:
            train.transform = ImageAugment(flip_rot=True, seed=None)
        val, test = self.make_dataset("val"), self.make_dataset("test")
        for ds in (val, test):
            ds.normalizer = train.normalizer
        self.classes = list(train.classes)
        self.channel_keys = list(train.channel_keys)
        self.train_dataset = train
        self.val_dataset = val if len(val) else None
        self.test_dataset = test if len(test) else None

    @property
    def num_classes(self) -> int:
        if self.classes is None:
            self.setup("fit")
        return len(self.classes or [])

    def input_contract(self) -> InputContract:
        """The images' preprocessing for the pretrained export: the training channels, the
        per-channel mean/std fitted on the training split (keyed by channel), the image side,
        and for satellite channels (``s2/``, ``l8/``, ...) the sensor, so GeoTIFF bands named
        ``B4`` / ``B04`` / ``band_4`` resolve."""
        from chanformer.datasets.imaging.satellite import SENSORS

        if self.train_dataset is None:  # type: ignore[has-type]
            self.setup("fit")
        train: Any = self.train_dataset  # type: ignore[has-type]
        fitted = getattr(train, "normalizer", None)
        normalizer = fitted.to_json() if fitted is not None and fitted.fitted else None
        keys = list(getattr(self, "channel_keys", None) or self.vocab.keys)
        prefixes = {k.split("/", 1)[0] for k in keys if "/" in k}
        sensors = [sen.name for sen in SENSORS.values() if sen.prefix in prefixes]
        return InputContract(
            modality="image", channels=keys, key_prefix=f"{next(iter(prefixes))}/" if len(prefixes) == 1 else "",
            image_size=self.image_size or None, sensor=sensors[0] if len(sensors) == 1 else None,
            units="normalised" if normalizer else "", normalizer=normalizer,
            extra={"dataset": type(self).__name__},
        )  # fmt: skip

    @property
    def spec(self) -> DataSpec:
        n = self.num_classes
        return DataSpec(vocab=self.vocab, image_size=self.image_size, num_classes=n, class_names=list(self.classes or []),
                        channels=list(self.channel_keys))  # fmt: skip


def first_existing(root: Path, candidates: Sequence[str], accept: Any) -> Path | None:
    """The first ``root / c`` (in order) that is a folder for which ``accept(path)`` is true."""
    for c in candidates:
        p = root / c
        if p.is_dir() and accept(p):
            return p
    return None
