"""EuroSAT (multispectral, all 13 Sentinel-2 bands) read from the folder its publishers distribute.

Layout (``EuroSAT_MS.zip`` from https://zenodo.org/records/7711810, or the older ``EuroSATallBands.zip``
from https://madm.dfki.de/files/sentinel/, MIT licence)::

    <root>/EuroSAT_MS/AnnualCrop/AnnualCrop_1.tif ... AnnualCrop_3000.tif
    <root>/EuroSAT_MS/Forest/Forest_1.tif ...
    ...                                           (10 class folders, 27 000 files)
    <root>/eurosat-train.txt, eurosat-val.txt, eurosat-test.txt   (optional split lists)

``<root>`` may also be the class folders' parent itself, or hold the old archive's
``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/...``. Each file is a 64 x 64
GeoTIFF, 13 bands of uint16 top-of-atmosphere reflectance x 10000 (Sentinel-2 L1C), UTM
coordinates, 10 m pixels. The bands are stored in the order ``B01 ... B12`` followed by ``B8A``
(:data:`EUROSAT_BANDS`; see https://github.com/phelber/EuroSAT/issues/7 and torchgeo PR #2480,
which corrected the ``B08, B8A, B09`` order assumed earlier).

Splits: the lists ``eurosat-{train,val,test}.txt`` distributed with torchgeo (from Google's
TensorFlow Datasets split; 16 200 / 5 400 / 5 400 images, one ``<Class>_<n>.jpg`` name per line,
read as the ``.tif`` of the same name). Without them a seeded split stratified by class is drawn
(``val_fraction``/``test_fraction``, default 0.2/0.2, i.e. the same 60/20/20 proportions).

Nothing is ever downloaded: a missing folder or file raises :class:`EuroSATMissingError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from chanformer.channels import ChannelVocab, sentinel2_vocab
from chanformer.datasets.base import stratified_split
from chanformer.datasets.imaging.datasets import ChannelNormalizer
from chanformer.datasets.imaging.microscopy import ImageReadError
from chanformer.datasets.imaging.public import (
    LabelledImageDataset,
    PublicDataMissingError,
    PublicImageDataModule,
    first_existing,
)
from chanformer.datasets.imaging.satellite import read_geotiff

__all__ = [
    "EUROSAT_BANDS",
    "EUROSAT_CLASSES",
    "EUROSAT_URL",
    "EuroSATDataModule",
    "EuroSATDataset",
    "EuroSATMissingError",
]

EUROSAT_URL = "https://zenodo.org/records/7711810"
SPLIT_URL = "https://hf.co/datasets/torchgeo/eurosat (eurosat-train.txt, eurosat-val.txt, eurosat-test.txt)"
#: Band order of the EuroSAT GeoTIFFs (B8A last).
EUROSAT_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12",
                                  "B8A")  # fmt: skip
#: The 10 classes (folder names), in label-index order.
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)  # fmt: skip
SPLITS = ("train", "val", "test")
_SUBDIRS = (".", "EuroSAT_MS", "EuroSATallBands", "ds/images/remote_sensing/otherDatasets/sentinel_2/tif",
            "EuroSATallBands/ds/images/remote_sensing/otherDatasets/sentinel_2/tif")  # fmt: skip
_LAYOUT = (
    "expected the EuroSAT multispectral layout <root>/EuroSAT_MS/<Class>/<Class>_<n>.tif (10 class folders "
    f"{', '.join(EUROSAT_CLASSES)}; 64x64 13-band GeoTIFFs), optionally with eurosat-train.txt/-val.txt/-test.txt; "
    f"download EuroSAT_MS.zip yourself from {EUROSAT_URL} (split lists: {SPLIT_URL}); chanformer never downloads it"
)
_NAME = re.compile(r"(?P<cls>[A-Za-z]+)_(?P<n>\d+)")


class EuroSATMissingError(PublicDataMissingError):
    """The EuroSAT folder, a class folder, a split list or a listed image is missing."""


def eurosat_folder(root: str | os.PathLike[str]) -> Path:
    """The folder holding the 10 class folders under ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise EuroSATMissingError(f"EuroSAT root folder not found: {root}; {_LAYOUT}")
    found = first_existing(root, _SUBDIRS, lambda p: any((p / c).is_dir() for c in EUROSAT_CLASSES))
    if found is None:
        raise EuroSATMissingError(f"no EuroSAT class folders ({EUROSAT_CLASSES[0]}, ...) under {root}; {_LAYOUT}")
    absent = [c for c in EUROSAT_CLASSES if not (found / c).is_dir()]
    if absent:
        raise EuroSATMissingError(f"EuroSAT class folder(s) missing under {found}: {', '.join(absent)}; {_LAYOUT}")
    return found


def _sort_key(path: Path) -> tuple[str, int]:
    m = _NAME.fullmatch(path.stem)
    return (m.group("cls"), int(m.group("n"))) if m else (path.stem, -1)


class EuroSATDataset(LabelledImageDataset):
    """EuroSAT multispectral patches as :class:`~chanformer.batch.ChannelSample` s.

    Each item: values ``[C, 64, 64]`` float32 (raw reflectance x 10000 unless a ``normalizer`` is
    given), channel ids of the Sentinel-2 keys ``s2/B01`` ... ``s2/B12``, ``s2/B8A`` in
    :data:`EUROSAT_BANDS` order (or the ``bands`` asked for, in that order), target = class index
    into :data:`EUROSAT_CLASSES`. :attr:`files` and :attr:`labels` list the items.

    Args:
        root: the download folder (see the module docstring).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        split_dir: folder holding ``eurosat-train.txt``/``-val.txt``/``-test.txt``; default: ``root`` or
            the class folders' parent when the lists are there, else a seeded stratified split.
            ``split_dir`` given but a list missing raises :class:`EuroSATMissingError`.
        val_fraction / test_fraction / seed: the stratified split used without split lists.
        bands: band names (``"B04"``) or keys (``"s2/B04"``) to keep, in output order; default all 13.
        vocab: vocabulary the channel ids index (default :func:`~chanformer.channels.sentinel2_vocab`).
        normalizer / transform: applied to each sample (see :class:`LabelledImageDataset`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test", "all"] = "train",
        *,
        split_dir: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        bands: Iterable[str] | None = None,
        vocab: ChannelVocab | None = None,
        normalizer: ChannelNormalizer | None = None,
        transform: Any = None,
    ) -> None:
        if split not in (*SPLITS, "all"):
            raise ValueError(f"EuroSATDataset(split={split!r}): expected 'train', 'val', 'test' or 'all'")
        self.root, self.split = Path(root), split
        self.data_dir = eurosat_folder(self.root)
        self.classes = list(EUROSAT_CLASSES)
        self.all_keys = [f"s2/{b}" for b in EUROSAT_BANDS]
        files: list[Path] = []
        for c in EUROSAT_CLASSES:
            files += sorted((p for p in (self.data_dir / c).iterdir() if p.suffix.lower() in (".tif", ".tiff")),
                            key=_sort_key)  # fmt: skip
        if not files:
            raise EuroSATMissingError(f"no .tif files in the EuroSAT class folders under {self.data_dir}; {_LAYOUT}")
        labels = np.array([EUROSAT_CLASSES.index(p.parent.name) for p in files])
        self.split_dir = self._find_split_dir(split_dir)
        self.split_source = "files" if self.split_dir is not None else "stratified"
        if split == "all":
            keep = np.arange(len(files))
        elif self.split_dir is not None:
            keep = self._from_list(files, self.split_dir / f"eurosat-{split}.txt")
        else:
            rest, test = stratified_split(labels, test_fraction, seed)
            tr, va = stratified_split(labels[rest], val_fraction / max(1e-9, 1.0 - test_fraction), seed)
            keep = {"train": rest[tr], "val": rest[va], "test": test}[split]
        self.files = [files[i] for i in keep]
        self.labels = labels[keep]
        self._init_common(vocab or sentinel2_vocab(), bands, "s2", normalizer, transform)

    def _find_split_dir(self, split_dir: str | os.PathLike[str] | None) -> Path | None:
        names = [f"eurosat-{s}.txt" for s in SPLITS]
        if split_dir is not None:
            d = Path(split_dir)
            absent = [n for n in names if not (d / n).is_file()]
            if absent:
                raise EuroSATMissingError(f"EuroSAT split list(s) {', '.join(absent)} not found in {d}; {_LAYOUT}")
            return d
        for d in (self.root, self.data_dir.parent, self.data_dir):
            if all((d / n).is_file() for n in names):
                return d
        return None

    def _from_list(self, files: list[Path], list_path: Path) -> np.ndarray:
        index = {p.name: i for i, p in enumerate(files)}
        keep, absent = [], []
        for line in list_path.read_text().splitlines():
            name = line.strip()
            if not name:
                continue
            tif = re.sub(r"\.(jpg|jpeg|png)$", ".tif", name, flags=re.IGNORECASE)
            if tif in index:
                keep.append(index[tif])
            else:
                absent.append(name)
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise EuroSATMissingError(f"{len(absent)} image(s) listed in {list_path} not found under {self.data_dir}: "
                                      f"{shown}; {_LAYOUT}")  # fmt: skip
        return np.asarray(keep, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        path = self.files[index]
        da = read_geotiff(path, sensor="sentinel2", bands=EUROSAT_BANDS)
        values = np.asarray(da.values)
        if values.shape[1:] != (64, 64):
            raise ImageReadError(f"{path}: EuroSAT image is {values.shape[1]}x{values.shape[2]}, expected 64x64",
                                 path=path)  # fmt: skip
        return values

    def target(self, index: int) -> Tensor:
        return torch.tensor(int(self.labels[index]), dtype=torch.long)


class EuroSATDataModule(PublicImageDataModule):
    """EuroSAT multispectral train/val/test (split lists when present, else stratified) as batches of
    ``[B, C, 64, 64]``, channels ``s2/*`` of the Sentinel-2 vocabulary, 10 classes.

    Args:
        root: the download folder (the one argument a user sets).
        split_dir / val_fraction / test_fraction / bands: see :class:`EuroSATDataset`.
        normalize / norm_items / flip_rot / hcs / batch_size / num_workers / seed: see
            :class:`~chanformer.datasets.imaging.public.PublicImageDataModule`.
    """

    image_size = 64

    def __init__(
        self,
        root: str,
        split_dir: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        bands: list[str] | None = None,
        normalize: bool = True,
        norm_items: int = 512,
        flip_rot: bool = False,
        hcs: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.split_dir, self.val_fraction, self.test_fraction, self.bands = split_dir, val_fraction, test_fraction, bands
        super().__init__(root, normalize=normalize, norm_items=norm_items, flip_rot=flip_rot, hcs=hcs,
                         batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip

    def build_vocab(self) -> ChannelVocab:
        return sentinel2_vocab()

    def make_dataset(self, split: str) -> EuroSATDataset:
        return EuroSATDataset(self.root, split, split_dir=self.split_dir, val_fraction=self.val_fraction,  # type: ignore[arg-type]
                              test_fraction=self.test_fraction, seed=self.seed, bands=self.bands, vocab=self.vocab)  # fmt: skip
