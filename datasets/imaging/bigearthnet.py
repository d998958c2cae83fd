"""BigEarthNet-S2 v1.0 read from the folder its publishers distribute (multi-label targets).

Layout (``BigEarthNet-S2-v1.0.tar.gz`` from https://bigearth.net, CDLA-Permissive-1.0)::

    <root>/BigEarthNet-v1.0/S2A_MSIL2A_20170613T101031_0_45/
        S2A_MSIL2A_20170613T101031_0_45_B01.tif ... _B12.tif      (12 bands, B8A included, no B10)
        S2A_MSIL2A_20170613T101031_0_45_labels_metadata.json
    ...                                                               (590 326 patch folders)
    <root>/train.csv, val.csv, test.csv                               (optional split lists)
    <root>/patches_with_cloud_and_shadow.csv, patches_with_seasonal_snow.csv   (optional)

``<root>`` may also be the ``BigEarthNet-v1.0`` folder itself. Each band is a single-band uint16
GeoTIFF (Sentinel-2 L2A reflectance x 10000) covering 1200 m x 1200 m: ``B02 B03 B04 B08`` at 10 m
(120 x 120 px), ``B05 B06 B07 B8A B11 B12`` at 20 m (60 x 60), ``B01 B09`` at 60 m (20 x 20); the
reader upsamples every band to 120 x 120 (bilinear by default). The JSON holds ``labels`` (CORINE
Land Cover 2018 level-3 names, :data:`BEN43_CLASSES`), ``coordinates`` (``ulx``, ``uly``, ``lrx``,
``lry``), ``projection``, ``tile_source`` and ``acquisition_date``.

Targets are multi-hot float vectors: over the 19-class nomenclature of Sumbul et al. 2021
(:data:`BEN19_CLASSES`, mapping :data:`BEN43_TO_19`; default) or the 43 original labels. Labels the
19-class nomenclature drops (e.g. ``Bare rock``, ``Burnt areas``, ``Port areas``) contribute nothing.

Splits: the official BigEarthNet-19 lists ``train.csv``/``val.csv``/``test.csv`` (one S2 patch name
per line; 269 695 / 123 723 / 125 866 patches, clouds, shadows and seasonal snow excluded), or
torchgeo's ``bigearthnet-{train,val,test}.csv`` (``S2 name,S1 name`` per line). Without lists a
seeded random split is drawn over the patch folders found, leaving out the patches named in
``patches_with_cloud_and_shadow.csv``/``patches_with_seasonal_snow.csv`` when those are present.

Nothing is ever downloaded: a missing folder or file raises :class:`BigEarthNetMissingError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chanformer.channels import ChannelVocab, sentinel2_vocab
from chanformer.datasets.imaging.datasets import ChannelNormalizer
from chanformer.datasets.imaging.public import LabelledImageDataset, PublicDataMissingError, PublicImageDataModule
from chanformer.datasets.imaging.satellite import read_geotiff
from chanformer.spec import DataSpec

__all__ = [
    "BEN19_CLASSES",
    "BEN43_CLASSES",
    "BEN43_TO_19",
    "BIGEARTHNET_BANDS",
    "BIGEARTHNET_URL",
    "BigEarthNetDataModule",
    "BigEarthNetDataset",
    "BigEarthNetFormatError",
    "BigEarthNetMissingError",
]

BIGEARTHNET_URL = "https://bigearth.net"
SPLIT_URL = "https://git.tu-berlin.de/rsim/BigEarthNet-S2_19-classes_models/-/tree/master/splits"
#: The 12 band files of a patch, and their side in pixels.
BIGEARTHNET_BANDS: dict[str, int] = {
    "B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60, "B07": 60,
    "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60,
}  # fmt: skip
SIZE = 120
#: CORINE Land Cover level-3 labels of BigEarthNet, in the customary index order.
BEN43_CLASSES: tuple[str, ...] = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub", "Beaches, dunes, sands",
    "Bare rock", "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes", "Salines",
    "Intertidal flats", "Water courses", "Water bodies", "Coastal lagoons", "Estuaries", "Sea and ocean",
)  # fmt: skip
#: The 19-class nomenclature (Sumbul et al., 2021).
BEN19_CLASSES: tuple[str, ...] = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
)  # fmt: skip
#: 43-class index -> 19-class index (the 11 level-3 classes absent here have no 19-class counterpart).
BEN43_TO_19: dict[int, int] = {
    0: 0, 1: 0, 2: 1, 11: 2, 12: 2, 13: 2, 14: 3, 15: 3, 16: 3, 18: 3, 17: 4, 19: 5, 20: 6, 21: 7,
    22: 8, 23: 9, 24: 10, 25: 11, 31: 11, 26: 12, 27: 12, 28: 13, 29: 14, 33: 15, 34: 15, 35: 16, 36: 16,
    38: 17, 39: 17, 40: 18, 41: 18, 42: 18,
}  # fmt: skip
SPLITS = ("train", "val", "test")
EXCLUDE_LISTS = ("patches_with_cloud_and_shadow.csv", "patches_with_seasonal_snow.csv")
_PATCH = re.compile(r"S2[AB]_MSIL2A_\d{8}T\d{6}_\d+_\d+")
_LAYOUT = (
    "expected the BigEarthNet-S2 v1.0 layout <root>/BigEarthNet-v1.0/<patch>/<patch>_B01.tif ... <patch>_B12.tif "
    "(12 bands incl. B8A) and <patch>/<patch>_labels_metadata.json, optionally with train.csv/val.csv/test.csv; "
    f"download BigEarthNet-S2-v1.0.tar.gz yourself from {BIGEARTHNET_URL} (split lists: {SPLIT_URL}); "
    "chanformer never downloads it"
)


class BigEarthNetMissingError(PublicDataMissingError):
    """The BigEarthNet folder, a patch folder, a band file, a JSON file or a split list is missing."""


class BigEarthNetFormatError(ValueError):
    """A patch's metadata or band file differs from the published format (unknown label, size)."""


def _read_list(path: Path) -> list[str]:
    """Patch names (first comma-separated field of each line that starts like one) of a CSV list."""
    names = []
    for line in path.read_text().splitlines():
        first = line.split(",", 1)[0].strip().strip('"')
        if first.startswith("S2"):
            names.append(first)
    return names


class BigEarthNetDataset(LabelledImageDataset):
    """BigEarthNet-S2 v1.0 patches as :class:`~chanformer.batch.ChannelSample` s with multi-hot targets.

    Each item: values ``[C, 120, 120]`` float32 (``C`` = 12 bands ``s2/B01`` ... ``s2/B12`` in
    :data:`BIGEARTHNET_BANDS` order, or the ``bands`` asked for), every band resampled to 120 x 120;
    target = float32 multi-hot ``[19]`` (or ``[43]``) over :attr:`classes`. :attr:`patches` lists the
    patch names; :meth:`metadata` returns a patch's JSON and :meth:`label_names` its label names.

    Args:
        root: the download folder (see the module docstring).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        split_dir: folder holding ``train.csv``/``val.csv``/``test.csv`` (or torchgeo's
            ``bigearthnet-*.csv``); default: ``root`` or the data folder when the lists are there,
            else a seeded random split (``val_fraction``, ``test_fraction``, ``seed``).
        nomenclature: ``19`` (default) or ``43`` classes.
        bands: band names or ``s2/*`` keys to keep, in output order.
        resample: ``"bilinear"`` (default) or ``"nearest"`` upsampling of the 20 m / 60 m bands.
        vocab / normalizer / transform: as for the other readers.
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
        nomenclature: int = 19,
        bands: Iterable[str] | None = None,
        resample: Literal["bilinear", "nearest"] = "bilinear",
        vocab: ChannelVocab | None = None,
        normalizer: ChannelNormalizer | None = None,
        transform: Any = None,
    ) -> None:
        if split not in (*SPLITS, "all"):
            raise ValueError(f"BigEarthNetDataset(split={split!r}): expected 'train', 'val', 'test' or 'all'")
        if nomenclature not in (19, 43):
            raise ValueError(f"BigEarthNetDataset(nomenclature={nomenclature!r}): expected 19 or 43")
        if resample not in ("bilinear", "nearest"):
            raise ValueError(f"BigEarthNetDataset(resample={resample!r}): expected 'bilinear' or 'nearest'")
        self.root, self.split, self.nomenclature, self.resample = Path(root), split, nomenclature, resample
        self.data_dir = self._data_dir()
        self.classes = list(BEN19_CLASSES if nomenclature == 19 else BEN43_CLASSES)
        self.all_keys = [f"s2/{b}" for b in BIGEARTHNET_BANDS]
        lists = self._find_lists(split_dir)
        self.split_source = "files" if lists is not None else "random"
        if lists is not None:
            patches = [n for s in SPLITS for n in _read_list(lists[s])] if split == "all" else _read_list(lists[split])
            absent = [n for n in patches if not (self.data_dir / n).is_dir()]
            if absent:
                shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                where = lists[split] if split != "all" else lists["train"].parent
                raise BigEarthNetMissingError(f"{len(absent)} patch folder(s) listed in {where} not found under "
                                              f"{self.data_dir}: {shown}; {_LAYOUT}")  # fmt: skip
        else:
            found = sorted(p.name for p in self.data_dir.iterdir() if p.is_dir() and _PATCH.fullmatch(p.name))
            excluded: set[str] = set()
            for name in EXCLUDE_LISTS:
                for d in {self.root, self.data_dir}:
                    if (d / name).is_file():
                        excluded.update(_read_list(d / name))
            patches = [p for p in found if p not in excluded]
            if split != "all":
                order = np.random.default_rng(seed).permutation(len(patches))
                n_test, n_val = round(test_fraction * len(patches)), round(val_fraction * len(patches))
                part = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
                patches = [patches[i] for i in np.sort(part[split])]
        self.patches = patches
        self._init_common(vocab or sentinel2_vocab(), bands, "s2", normalizer, transform)

    def _data_dir(self) -> Path:
        if not self.root.is_dir():
            raise BigEarthNetMissingError(f"BigEarthNet root folder not found: {self.root}; {_LAYOUT}")
        for cand in (self.root / "BigEarthNet-v1.0", self.root):
            if cand.is_dir() and any(p.is_dir() and _PATCH.fullmatch(p.name) for p in cand.iterdir()):
                return cand
        raise BigEarthNetMissingError(f"no BigEarthNet patch folders (S2A_MSIL2A_<date>T<time>_<row>_<col>) under "
                                      f"{self.root}; {_LAYOUT}")  # fmt: skip

    def _find_lists(self, split_dir: str | os.PathLike[str] | None) -> dict[str, Path] | None:
        styles = ("{}.csv", "bigearthnet-{}.csv")
        dirs = [Path(split_dir)] if split_dir is not None else list(dict.fromkeys([self.root, self.data_dir]))
        for d in dirs:
            for style in styles:
                paths = {s: d / style.format(s) for s in SPLITS}
                if all(p.is_file() for p in paths.values()):
                    return paths
        if split_dir is not None:
            raise BigEarthNetMissingError(f"BigEarthNet split lists train.csv/val.csv/test.csv (or bigearthnet-*.csv) "
                                          f"not found in {split_dir}; {_LAYOUT}")  # fmt: skip
        return None

    def __len__(self) -> int:
        return len(self.patches)

    def _file(self, index: int, suffix: str) -> Path:
        name = self.patches[index]
        path = self.data_dir / name / f"{name}_{suffix}"
        if not path.is_file():
            raise BigEarthNetMissingError(f"BigEarthNet file missing: {path}; {_LAYOUT}")
        return path

    def metadata(self, index: int) -> dict[str, Any]:
        """The patch's ``<patch>_labels_metadata.json`` as a dict."""
        path = self._file(index, "labels_metadata.json")
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BigEarthNetFormatError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
            raise BigEarthNetFormatError(f"{path}: no 'labels' list")
        return meta

    def label_names(self, index: int) -> list[str]:
        """The patch's label names in :attr:`classes` (19-class names after the mapping)."""
        path = self._file(index, "labels_metadata.json")
        out: list[str] = []
        for label in self.metadata(index)["labels"]:
            if label not in BEN43_CLASSES:
                raise BigEarthNetFormatError(f"{path}: unknown BigEarthNet label {label!r}")
            i43 = BEN43_CLASSES.index(label)
            if self.nomenclature == 43:
                out.append(label)
            elif i43 in BEN43_TO_19:
                out.append(BEN19_CLASSES[BEN43_TO_19[i43]])
        return list(dict.fromkeys(out))

    def target(self, index: int) -> Tensor:
        y = torch.zeros(len(self.classes), dtype=torch.float32)
        for name in self.label_names(index):
            y[self.classes.index(name)] = 1.0
        return y

    def read(self, index: int) -> np.ndarray:
        return self._read_bands(index, list(BIGEARTHNET_BANDS))

    def raw(self, index: int) -> np.ndarray:
        return self._read_bands(index, [k.split("/", 1)[1] for k in self.channel_keys])

    def _read_bands(self, index: int, bands: list[str]) -> np.ndarray:
        out = np.empty((len(bands), SIZE, SIZE), dtype=np.float32)
        for c, band in enumerate(bands):
            path = self._file(index, f"{band}.tif")
            arr = np.asarray(read_geotiff(path, sensor="sentinel2", bands=[band]).values, dtype=np.float32)
            side = BIGEARTHNET_BANDS[band]
            if arr.shape != (1, side, side):
                raise BigEarthNetFormatError(f"{path}: band {band} is {arr.shape[1]}x{arr.shape[2]}, expected {side}x{side}")
            if side == SIZE:
                out[c] = arr[0]
            else:
                t = torch.from_numpy(arr)[None]
                kw: dict[str, Any] = {"align_corners": False} if self.resample == "bilinear" else {}
                out[c] = F.interpolate(t, size=(SIZE, SIZE), mode=self.resample, **kw)[0, 0].numpy()
        return out


class BigEarthNetDataModule(PublicImageDataModule):
    """BigEarthNet-S2 official (or seeded random) splits as batches of ``[B, C, 120, 120]`` with
    multi-hot float targets ``[B, 19]`` (or ``[B, 43]``).

    Its :attr:`spec` says ``multilabel=True``, so a linked
    :class:`~chanformer.tasks.ClassificationTask` trains one sigmoid per label (recipe
    ``bigearthnet-channelvit``).
    """

    image_size = SIZE

    def __init__(
        self,
        root: str,
        split_dir: str | None = None,
        nomenclature: int = 19,
        bands: list[str] | None = None,
        normalize: bool = True,
        norm_items: int = 512,
        flip_rot: bool = False,
        hcs: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.split_dir, self.nomenclature, self.bands = split_dir, nomenclature, bands
        super().__init__(root, normalize=normalize, norm_items=norm_items, flip_rot=flip_rot, hcs=hcs,
                         batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip

    def build_vocab(self) -> ChannelVocab:
        return sentinel2_vocab()

    @property
    def spec(self) -> DataSpec:
        return replace(super().spec, multilabel=True)

    def make_dataset(self, split: str) -> BigEarthNetDataset:
        return BigEarthNetDataset(self.root, split, split_dir=self.split_dir, seed=self.seed,  # type: ignore[arg-type]
                                  nomenclature=self.nomenclature, bands=self.bands, vocab=self.vocab)  # fmt: skip
