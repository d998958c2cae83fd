"""So2Sat LCZ42 read from the HDF5 files its publishers distribute.

Layout (https://mediatum.ub.tum.de/1454690, CC BY 4.0)::

    <root>/training.h5      352 366 patches
    <root>/validation.h5     24 119 patches
    <root>/testing.h5        24 188 patches

The version-3 release splits the same kind of files into sub-folders (``<root>/random/``,
``<root>/block/``, ``<root>/culture_10/``), selected with ``variant=``. Each file holds three
datasets (float64, channels last):

==========  ==================  ================================================================
dataset     shape               content
==========  ==================  ================================================================
``sen1``    ``[N, 32, 32, 8]``  Sentinel-1 dual-pol SAR, 10 m: see :data:`SEN1_CHANNELS`
``sen2``    ``[N, 32, 32, 10]`` Sentinel-2 B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 (reflectance,
                                already divided by 10 000; 20 m bands resampled to 10 m)
``label``   ``[N, 17]``         one-hot local climate zone (LCZ), :data:`LCZ_CLASSES` order
==========  ==================  ================================================================

Nothing is ever downloaded: a missing folder or file raises :class:`So2SatMissingError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from chanformer.channels import Channel, ChannelVocab, sentinel2_vocab
from chanformer.datasets.imaging.datasets import ChannelNormalizer
from chanformer.datasets.imaging.public import LabelledImageDataset, PublicDataMissingError, PublicImageDataModule

__all__ = [
    "LCZ_CLASSES",
    "SEN1_CHANNELS",
    "SEN2_BANDS",
    "SO2SAT_FILES",
    "SO2SAT_URL",
    "So2SatDataModule",
    "So2SatDataset",
    "So2SatFormatError",
    "So2SatMissingError",
    "so2sat_vocab",
]

SO2SAT_URL = "https://mediatum.ub.tum.de/1454690"
SO2SAT_V3_URL = "https://mediatum.ub.tum.de/1613658"
#: split -> file name.
SO2SAT_FILES: dict[str, str] = {"train": "training.h5", "val": "validation.h5", "test": "testing.h5"}
#: The 8 channels of ``sen1``, in file order: key -> description.
SEN1_CHANNELS: dict[str, str] = {
    "s1/VH_real": "real part of the unfiltered VH channel",
    "s1/VH_imag": "imaginary part of the unfiltered VH channel",
    "s1/VV_real": "real part of the unfiltered VV channel",
    "s1/VV_imag": "imaginary part of the unfiltered VV channel",
    "s1/VH_lee": "intensity of the refined-Lee filtered VH channel",
    "s1/VV_lee": "intensity of the refined-Lee filtered VV channel",
    "s1/C12_lee_real": "real part of the refined-Lee filtered covariance matrix off-diagonal element",
    "s1/C12_lee_imag": "imaginary part of the refined-Lee filtered covariance matrix off-diagonal element",
}
#: The 10 bands of ``sen2``, in file order.
SEN2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Sentinel-1 C-band centre wavelength (5.405 GHz), nm.
S1_WAVELENGTH_NM = 5.5466e7
#: The 17 local climate zones, in label (one-hot column) order: LCZ 1-10 built types, A-G land cover.
LCZ_CLASSES: tuple[str, ...] = (
    "Compact high-rise", "Compact mid-rise", "Compact low-rise", "Open high-rise", "Open mid-rise",
    "Open low-rise", "Lightweight low-rise", "Large low-rise", "Sparsely built", "Heavy industry",
    "Dense trees", "Scattered trees", "Bush, scrub", "Low plants", "Bare rock or paved", "Bare soil or sand",
    "Water",
)  # fmt: skip
MODALITIES = ("s1", "s2")
_LAYOUT = (
    "expected the So2Sat LCZ42 layout <root>/training.h5, <root>/validation.h5, <root>/testing.h5 (HDF5 datasets "
    "sen1 [N,32,32,8], sen2 [N,32,32,10], label [N,17]; version 3: <root>/<random|block|culture_10>/...h5 with "
    f"variant=...); download the files yourself from {SO2SAT_URL} (version 3: {SO2SAT_V3_URL}); "
    "chanformer never downloads them"
)


class So2SatMissingError(PublicDataMissingError):
    """The So2Sat folder or one of its HDF5 files is missing; the message shows the layout."""


class So2SatFormatError(ValueError):
    """An So2Sat HDF5 file lacks a dataset or has shapes/labels other than the published ones."""


def so2sat_vocab() -> ChannelVocab:
    """The 13 Sentinel-2 bands (``s2/*``) followed by the 8 So2Sat Sentinel-1 channels (``s1/*``)."""
    vocab = sentinel2_vocab()
    vocab.name = "sentinel2+so2sat_s1"
    for key in SEN1_CHANNELS:
        unit = "intensity" if key.endswith("_lee") else ""
        vocab.add(Channel(key, kind="sar", wavelength_nm=S1_WAVELENGTH_NM, unit=unit))
    return vocab


def so2sat_file(root: str | os.PathLike[str], split: str, variant: str | None = None) -> Path:
    """Path of a split's file, checked to exist (raises :class:`So2SatMissingError` naming it)."""
    if split not in SO2SAT_FILES:
        raise ValueError(f"So2Sat split must be one of {sorted(SO2SAT_FILES)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise So2SatMissingError(f"So2Sat root folder not found: {root}; {_LAYOUT}")
    folder = root / variant if variant else root
    path = folder / SO2SAT_FILES[split]
    if not path.is_file():
        raise So2SatMissingError(f"So2Sat {split} file not found: {path}; {_LAYOUT}")
    return path


class So2SatDataset(LabelledImageDataset):
    """So2Sat LCZ42 patches as :class:`~chanformer.batch.ChannelSample` s.

    Each item: values ``[C, 32, 32]`` float32 (``C`` = 8 Sentinel-1 + 10 Sentinel-2 channels by
    default, ``s1/*`` first as :data:`SEN1_CHANNELS`, then ``s2/B02`` ... ``s2/B12`` as :data:`SEN2_BANDS`),
    target = LCZ index into :data:`LCZ_CLASSES` (the one-hot column). :attr:`labels` holds all targets.

    Args:
        root: the folder holding ``training.h5``/``validation.h5``/``testing.h5``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        variant: version-3 sub-folder (``"random"``, ``"block"``, ``"culture_10"``); default none.
        modalities: ``("s1", "s2")`` (default), ``("s2",)`` or ``("s1",)``.
        channels: keys (or bare Sentinel-2 band names) to keep, in output order.
        vocab: vocabulary the channel ids index (default :func:`so2sat_vocab`).
        normalizer / transform: applied to each sample.

    The HDF5 file is opened on first read in each process (so DataLoader workers each hold their own
    handle) and only the rows read are loaded.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test"] = "train",
        *,
        variant: str | None = None,
        modalities: Sequence[str] = MODALITIES,
        channels: Iterable[str] | None = None,
        vocab: ChannelVocab | None = None,
        normalizer: ChannelNormalizer | None = None,
        transform: Any = None,
    ) -> None:
        import h5py

        bad = [m for m in modalities if m not in MODALITIES]
        if bad or not modalities:
            raise ValueError(f"So2SatDataset(modalities={list(modalities)}): choose among {list(MODALITIES)}")
        self.root, self.split, self.variant = Path(root), split, variant
        self.path = so2sat_file(root, split, variant)
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        self.classes = list(LCZ_CLASSES)
        self.all_keys = (list(SEN1_CHANNELS) if "s1" in self.modalities else []) + (
            [f"s2/{b}" for b in SEN2_BANDS] if "s2" in self.modalities else []
        )
        with h5py.File(self.path, "r") as f:
            missing = [k for k in ("sen1", "sen2", "label") if k not in f]
            if missing:
                raise So2SatFormatError(f"{self.path}: no HDF5 dataset(s) {', '.join(missing)} (has {sorted(f)}); {_LAYOUT}")
            onehot = np.asarray(f["label"])
            n = onehot.shape[0]
            for name, depth in (("sen1", 8), ("sen2", 10)):
                shape = tuple(f[name].shape)
                if shape != (n, 32, 32, depth):
                    raise So2SatFormatError(f"{self.path}: dataset {name!r} has shape {shape}, expected ({n}, 32, 32, {depth})")
        if onehot.ndim != 2 or onehot.shape[1] != len(LCZ_CLASSES):
            raise So2SatFormatError(f"{self.path}: 'label' has shape {onehot.shape}, expected (N, 17) one-hot")
        ok = np.isclose(onehot.sum(1), 1.0) & np.isclose(onehot.max(1), 1.0)
        if not ok.all():
            raise So2SatFormatError(f"{self.path}: 'label' row {int(np.flatnonzero(~ok)[0])} is not one-hot")
        self.labels = onehot.argmax(1).astype(np.int64)
        self._h5: Any = None
        self._init_common(vocab or so2sat_vocab(), channels, "s2", normalizer, transform)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None  # h5py handles do not pickle; each worker opens its own
        return state

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> np.ndarray:
        if self._h5 is None:
            import h5py

            self._h5 = h5py.File(self.path, "r")
        parts = [np.asarray(self._h5[name][index]) for m, name in (("s1", "sen1"), ("s2", "sen2")) if m in self.modalities]
        return np.moveaxis(np.concatenate(parts, axis=-1), -1, 0)  # [H, W, C] -> [C, H, W]

    def target(self, index: int) -> Tensor:
        return torch.tensor(int(self.labels[index]), dtype=torch.long)


class So2SatDataModule(PublicImageDataModule):
    """So2Sat LCZ42 official training/validation/testing files as batches of ``[B, C, 32, 32]``
    (Sentinel-1 and Sentinel-2 channels of :func:`so2sat_vocab`), 17 LCZ classes.

    Args:
        root: the folder holding the ``.h5`` files (the one argument a user sets).
        variant / modalities / channels: see :class:`So2SatDataset`.
        normalize / norm_items / flip_rot / hcs / batch_size / num_workers / seed: see
            :class:`~chanformer.datasets.imaging.public.PublicImageDataModule`.
    """

    image_size = 32

    def __init__(
        self,
        root: str,
        variant: str | None = None,
        modalities: list[str] | None = None,
        channels: list[str] | None = None,
        normalize: bool = True,
        norm_items: int = 2048,
        flip_rot: bool = False,
        hcs: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.variant, self.modalities, self.channels = variant, tuple(modalities or MODALITIES), channels
        super().__init__(root, normalize=normalize, norm_items=norm_items, flip_rot=flip_rot, hcs=hcs,
                         batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip

    def build_vocab(self) -> ChannelVocab:
        return so2sat_vocab()

    def make_dataset(self, split: str) -> So2SatDataset:
        return So2SatDataset(self.root, split, variant=self.variant, modalities=self.modalities,  # type: ignore[arg-type]
                             channels=self.channels, vocab=self.vocab)  # fmt: skip
