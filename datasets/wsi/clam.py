"""Slide feature bags in CLAM's layout: ``h5_files/`` / ``pt_files/``, a slide table and split files.

CLAM (Lu et al., 2021; https://github.com/mahmoodlab/CLAM) writes one file per slide with
``extract_features_fp.py``::

    <root>/h5_files/<slide_id>.h5    datasets 'features' [N, D] float32 and 'coords' [N, 2] int32
                                     (level-0 (x, y) of each patch's top-left corner)
    <root>/pt_files/<slide_id>.pt    the same features as a bare torch tensor [N, D]

Its ``create_patches_fp.py`` writes ``<results>/patches/<slide_id>.h5`` whose ``coords`` dataset
carries the attributes ``patch_size``, ``patch_level``, ``downsample``, ``level_dim``... A
slide table (``case_id,slide_id,label``, or plain ``slide_id,label``) gives the labels, and
``create_splits_seq.py`` writes ``splits_<k>.csv`` (an index column, then ``train,val,test``
columns of slide ids, ragged: shorter columns end in empty cells).

This module reads those files as they are, straight into :class:`~chanformer.datasets.wsi.store.Bag`
objects (coordinates turned into chanformer's level-0 ``(y, x)``), which
:meth:`chanformer.batch.BagBatch.collate` pads into batches for :class:`~chanformer.tasks.MILTask`.
``.pt`` files are read with ``torch.load(weights_only=True)`` only: a file holding anything but
tensors is refused, never unpickled.
"""

from __future__ import annotations

import csv
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from chanformer.datasets.wsi.public import (
    LazyBagDataset,
    SplitBagDataModule,
    WSIDataMissingError,
    check_bag,
    check_on_missing,
    handle_missing,
)
from chanformer.datasets.wsi.store import Bag, BagError

__all__ = [
    "CLAMFeatureDataset",
    "CLAMFeaturesDataModule",
    "CLAMFeaturesMissingError",
    "CLAMSlideTable",
    "read_clam_features",
    "read_clam_slide_table",
    "read_clam_splits",
]

CLAM_URL = "https://github.com/mahmoodlab/CLAM"
_SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".czi")
_LAYOUT = (
    "expected CLAM's feature folder: <root>/h5_files/<slide_id>.h5 (datasets 'features' [N, D] and 'coords' "
    "[N, 2]) and/or <root>/pt_files/<slide_id>.pt (a [N, D] tensor), as written by CLAM's extract_features_fp.py; "
    "a slide table with columns case_id,slide_id,label or slide_id,label (default <root>/labels.csv, or csv_path=); "
    "optional split files splits_<k>.csv with columns train,val,test (default <root>/splits/, or split_dir=); "
    f"the features are made with CLAM ({CLAM_URL}) from your slides; chanformer never downloads or extracts them"
)


class CLAMFeaturesMissingError(WSIDataMissingError):
    """A CLAM feature folder, slide table, split file or a listed slide's features are missing."""


# -- the slide table and the split files ------------------------------------------------------------
@dataclass
class CLAMSlideTable:
    """The slides of a CLAM slide table, in file order (rows whose label is in ``ignore`` dropped).

    Attributes:
        slide_ids / case_ids: per slide (``case_id`` is the slide id when the table has no such column).
        targets: class index per slide; class_names: name of each class index.
        raw_labels: the label cells as written.
    """

    path: Path
    slide_ids: list[str]
    case_ids: list[str]
    targets: list[int]
    class_names: list[str]
    raw_labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.slide_ids)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV as strings (no type guessing: ``007`` stays ``007``)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f)]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text CSV ({e})") from None
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    return [h.strip() for h in rows[0]], rows[1:]


def _class_names(label_dict: Mapping[str, int]) -> list[str]:
    values = sorted(set(label_dict.values()))
    if values != list(range(len(values))):
        raise ValueError(f"label_dict={dict(label_dict)}: values must be the class indices 0..{len(values) - 1}, got {values}")
    return ["/".join(k for k, v in label_dict.items() if v == i) for i in values]


def read_clam_slide_table(
    path: str | os.PathLike[str],
    label_dict: Mapping[str, int] | None = None,
    label_column: str = "label",
    ignore: Sequence[str] = (),
) -> CLAMSlideTable:
    """Read CLAM's slide table (``case_id,slide_id,label``; ``case_id`` optional; other columns ignored).

    Labels: with ``label_dict`` (CLAM's argument, e.g. ``{"normal_tissue": 0, "tumor_tissue": 1}``;
    several names may share an index) each label must be one of its keys; without it, integer
    labels are class indices as they are and other labels are numbered in sorted order. Rows
    whose label is in ``ignore`` are dropped (CLAM's ``ignore``).

    Raises:
        CLAMFeaturesMissingError: no such file.
        ValueError: no ``slide_id``/label column, an empty cell, a slide listed twice or a label
            outside ``label_dict``, naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise CLAMFeaturesMissingError(f"CLAM slide table {path} not found; {_LAYOUT}")
    header, rows = _read_rows(path)
    slide_col = next((c for c in ("slide_id", "slide") if c in header), None)
    if slide_col is None or label_column not in header:
        raise ValueError(f"{path}: expected columns slide_id and {label_column} (CLAM's case_id,slide_id,label), "
                         f"got {header}")  # fmt: skip
    i_slide, i_label = header.index(slide_col), header.index(label_column)
    i_case = header.index("case_id") if "case_id" in header else None
    ignored = {str(x) for x in ignore}
    slides, cases, labels = [], [], []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        slide, label = cells[i_slide], cells[i_label]
        if not slide:
            raise ValueError(f"{path}, line {line}: empty {slide_col}")
        if not label:
            raise ValueError(f"{path}, line {line}: slide {slide} has an empty {label_column}")
        if label in ignored:
            continue
        if slide in seen:
            raise ValueError(f"{path}, line {line}: slide {slide} is listed twice (first on line {seen[slide]})")
        seen[slide] = line
        slides.append(slide)
        cases.append(cells[i_case] or slide if i_case is not None else slide)
        labels.append(label)
    if not slides:
        raise ValueError(f"{path}: no slides (every row empty or ignored)")
    if label_dict is not None:
        names = _class_names(label_dict)
        unknown = sorted({v for v in labels if v not in label_dict})
        if unknown:
            where = slides[labels.index(unknown[0])]
            raise ValueError(f"{path}: label {unknown[0]!r} (slide {where}) is not in label_dict {dict(label_dict)}; "
                             "add it, or list it in ignore=")  # fmt: skip
        targets = [int(label_dict[v]) for v in labels]
    elif all(v.lstrip("-").isdigit() for v in labels):
        ints = [int(v) for v in labels]
        if min(ints) < 0:
            raise ValueError(f"{path}: negative integer label {min(ints)}; pass label_dict= to map labels to classes")
        names = [str(i) for i in range(max(ints) + 1)]
        targets = ints
    else:
        names = sorted(set(labels))
        targets = [names.index(v) for v in labels]
    return CLAMSlideTable(path, slides, cases, targets, names, labels)


def read_clam_splits(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """CLAM's ``splits_<k>.csv``: ``{"train": [...], "val": [...], "test": [...]}`` of slide ids.

    The file has an unnamed index column and columns ``train``, ``val``, ``test`` of different
    lengths (empty cells at the end of the shorter ones). Ids stay strings as written.

    Raises:
        CLAMFeaturesMissingError: no such file.
        ValueError: a column missing, or a slide in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise CLAMFeaturesMissingError(f"CLAM split file {path} not found; {_LAYOUT}")
    header, rows = _read_rows(path)
    missing = [k for k in ("train", "val", "test") if k not in header]
    if missing:
        raise ValueError(f"{path}: expected CLAM's split columns train,val,test, missing {missing} (header {header})")
    out: dict[str, list[str]] = {}
    for k in ("train", "val", "test"):
        j = header.index(k)
        out[k] = [r[j].strip() for r in rows if j < len(r) and r[j].strip()]
    where: dict[str, str] = {}
    for k, ids in out.items():
        for s in ids:
            if s in where:
                raise ValueError(f"{path}: slide {s} is in both the {where[s]} and the {k} split")
            where[s] = k
    return out


# -- feature files ----------------------------------------------------------------------------------
def _h5py() -> Any:
    import h5py

    return h5py


def _coords_attrs(dataset: Any) -> dict[str, Any]:
    """JSON-friendly copy of the attributes CLAM / TRIDENT write on a ``coords`` dataset."""
    out: dict[str, Any] = {}
    for k, v in dataset.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out


def tile_extent(attrs: Mapping[str, Any]) -> float | None:
    """Level-0 edge of a patch from CLAM's ``coords`` attributes (``patch_size`` at ``patch_level``,
    scaled by that level's ``downsample``), or TRIDENT's ``patch_size_level0``; ``None`` if unknown."""
    if attrs.get("patch_size_level0") is not None:
        return float(attrs["patch_size_level0"])
    size = attrs.get("patch_size")
    if size is None:
        return None
    ds = attrs.get("downsample")
    if ds is not None:
        factor = float(np.asarray(ds, dtype=np.float64).reshape(-1)[0])
        return float(size) * factor
    return float(size) if int(attrs.get("patch_level", 0)) == 0 else None


def _load_pt(path: Path, slide: str, mmap: bool = False) -> torch.Tensor:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise BagError(f"slide {slide}: {path} holds more than plain tensors; only tensor files are read "
                       f"(torch.load weights_only=True), nothing is unpickled ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
        if mmap and "mmap" in str(e).lower():  # an old (non-zip) torch.save file: load it whole
            return _load_pt(path, slide, mmap=False)
        raise BagError(f"slide {slide}: cannot read {path} as a torch tensor file ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, torch.Tensor):
        raise BagError(f"slide {slide}: {path} holds a {type(obj).__name__}, expected CLAM's [N, D] feature tensor")
    return obj


def read_clam_features(
    h5_path: str | os.PathLike[str] | None = None,
    pt_path: str | os.PathLike[str] | None = None,
    slide: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Features ``[N, D]`` float32, level-0 ``(y, x)`` coords ``[N, 2]`` int64 (or ``None``) and the
    ``coords`` attributes of one slide.

    Features come from ``pt_path`` when given, else from the ``features`` dataset of ``h5_path``;
    coordinates from the ``coords`` dataset of ``h5_path`` (CLAM stores ``(x, y)``; they are
    swapped). Bad files raise :class:`~chanformer.datasets.wsi.store.BagError` naming the slide.
    """
    if h5_path is None and pt_path is None:
        raise ValueError("read_clam_features: give h5_path, pt_path or both")
    name = slide or Path(h5_path or pt_path or "").stem
    feats: torch.Tensor | None = None
    coords: torch.Tensor | None = None
    attrs: dict[str, Any] = {}
    if pt_path is not None:
        feats = _load_pt(Path(pt_path), name).float()
    if h5_path is not None:
        h5py = _h5py()
        try:
            with h5py.File(h5_path, "r") as f:
                if feats is None:
                    if "features" not in f:
                        raise BagError(f"slide {name}: {h5_path} has no 'features' dataset (has {sorted(f.keys())})")
                    feats = torch.from_numpy(np.asarray(f["features"][...], dtype=np.float32))
                if "coords" in f:
                    c = np.asarray(f["coords"][...])
                    attrs = _coords_attrs(f["coords"])
                    if c.ndim != 2 or c.shape[1] != 2:
                        raise BagError(f"slide {name}: {h5_path} 'coords' has shape {c.shape}, expected [N, 2]")
                    coords = torch.from_numpy(np.ascontiguousarray(c[:, ::-1]).astype(np.int64))
        except OSError as e:
            raise BagError(f"slide {name}: cannot read {h5_path} as HDF5 ({e})") from None
    assert feats is not None
    if feats.ndim == 3 and feats.shape[0] == 1:  # some pipelines save [1, N, D]
        feats = feats[0]
    if coords is not None and len(coords) != len(feats):
        raise BagError(f"slide {name}: {len(feats)} feature rows but {len(coords)} coordinates in {h5_path}")
    return feats, coords, attrs


def _probe(h5_path: Path | None, pt_path: Path | None, slide: str) -> tuple[int, int]:
    """``(N, D)`` of a slide's features without reading them (HDF5 shape; memory-mapped tensor)."""
    if pt_path is not None:
        t = _load_pt(pt_path, slide, mmap=True)
        shape = tuple(t.shape[1:]) if t.ndim == 3 and t.shape[0] == 1 else tuple(t.shape)
    else:
        h5py = _h5py()
        try:
            with h5py.File(h5_path, "r") as f:
                if "features" not in f:
                    raise BagError(f"slide {slide}: {h5_path} has no 'features' dataset (has {sorted(f.keys())})")
                shape = tuple(f["features"].shape)
        except OSError as e:
            raise BagError(f"slide {slide}: cannot read {h5_path} as HDF5 ({e})") from None
    where = pt_path or h5_path
    if len(shape) != 2 or shape[0] == 0:
        raise BagError(f"slide {slide}: empty bag or not [N, D] features (shape {shape}) in {where}")
    return int(shape[0]), int(shape[1])


def _feature_file(folder: Path, slide: str, suffix: str) -> Path | None:
    p = folder / f"{slide}{suffix}"
    if p.is_file():
        return p
    for ext in _SLIDE_SUFFIXES:  # a slide table that kept the slide files' extension (slide_1.svs)
        if slide.lower().endswith(ext):
            q = folder / f"{slide[: -len(ext)]}{suffix}"
            if q.is_file():
                return q
    return None


@dataclass
class _Entry:
    slide: str
    case: str
    target: int
    h5: Path | None
    pt: Path | None
    n: int
    attrs: dict[str, Any]


class CLAMFeatureDataset(LazyBagDataset):
    """Bags of CLAM feature files: one :class:`~chanformer.datasets.wsi.store.Bag` per slide, read when indexed.

    Args:
        root: the feature folder (``h5_files/`` and/or ``pt_files/``; see the module docstring).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every slide of the table; no split
            is read or drawn, :attr:`split_source` is ``"none"``).
        fold: which ``splits_<fold>.csv``; without split files, which fold of a seeded
            ``n_folds``-fold split by case, stratified by label (the test fold; ``val_fraction``
            of the other cases, stratified, is the validation split).
        csv_path: the slide table (default ``<root>/labels.csv``).
        split_dir: folder of ``splits_<k>.csv`` (default ``<root>/splits`` when it exists).
        label_dict / label_column / ignore: as CLAM's ``Generic_MIL_Dataset``
            (see :func:`read_clam_slide_table`).
        features: ``"auto"`` (the ``.h5`` file when there is one, else the ``.pt``), ``"h5"`` or ``"pt"``.
            Coordinates always come from the ``.h5`` when it exists; a slide with only a ``.pt`` gets
            its row numbers as ``coords[:, 0]`` (``attrs["coords"] == "row"``).
        patches_dir: CLAM's ``patches/`` folder (``create_patches_fp.py``), read for the ``coords``
            attributes (patch size and level) when the feature file has none; default
            ``<root>/patches`` when it exists.
        on_missing: slides of the table (in the selected split) without a feature file:
            ``"raise"`` a :class:`CLAMFeaturesMissingError` listing them, or ``"skip"`` them with a warning.
        max_instances: random subsample of larger bags each time one is read (``None``: all).
        n_folds / val_fraction / seed: the split drawn when there are no split files.

    Every bag's ``coords`` are level-0 ``(y, x)`` (CLAM writes ``(x, y)``); ``attrs`` hold
    ``case_id``, the files read, CLAM's ``coords`` attributes and ``tile_extent`` (level-0 patch
    edge, for :func:`~chanformer.pipelines.wsi_heatmap.save_heatmaps`) when they give it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test", "all"] = "all",
        fold: int = 0,
        csv_path: str | os.PathLike[str] | None = None,
        split_dir: str | os.PathLike[str] | None = None,
        label_dict: Mapping[str, int] | None = None,
        label_column: str = "label",
        ignore: Sequence[str] = (),
        features: Literal["auto", "h5", "pt"] = "auto",
        patches_dir: str | os.PathLike[str] | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
        max_instances: int | None = None,
        n_folds: int = 10,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"CLAMFeatureDataset(split={split!r}): expected 'train', 'val', 'test' or 'all'")
        index = _CLAMIndex(root, fold, csv_path, split_dir, label_dict, label_column, ignore, features, patches_dir,
                           on_missing, n_folds, val_fraction, seed, every_slide=split == "all")  # fmt: skip
        self._init_from(index, split, max_instances, seed)

    def _init_from(self, index: _CLAMIndex, split: str, max_instances: int | None, seed: int) -> CLAMFeatureDataset:
        self.root, self.table, self.class_names = index.root, index.table, index.table.class_names
        self.split, self.fold, self.split_source, self.features_format = split, index.fold, index.split_source, index.features
        self._entries = index.entries(split)
        self.slides = [e.slide for e in self._entries]
        self.targets = [e.target for e in self._entries]
        self.case_ids = [e.case for e in self._entries]
        self.feature_dim = index.feature_dim
        self._init_lazy(max_instances, seed)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_instances(self) -> list[int]:
        """Instances (patches) per bag, from the files' shapes."""
        return [e.n for e in self._entries]

    def read(self, i: int) -> Bag:
        e = self._entries[i]
        use_pt = e.pt if (self.features_format == "pt" or e.h5 is None) else None
        feats, coords, attrs = read_clam_features(e.h5, use_pt, e.slide)
        check_bag(e.slide, feats, str(use_pt or e.h5), self.feature_dim)
        meta: dict[str, Any] = {"slide": e.slide, "label": e.target, "case_id": e.case, "coords": "level0_yx"}
        meta.update(e.attrs)
        meta.update(attrs)
        if coords is None:
            coords = torch.stack([torch.arange(len(feats)), torch.zeros(len(feats), dtype=torch.long)], 1)
            meta["coords"] = "row"
        meta["h5_file"], meta["pt_file"] = (str(e.h5) if e.h5 else None), (str(e.pt) if e.pt else None)
        extent = tile_extent(meta)
        if extent is not None:
            meta["tile_extent"] = extent
        return Bag(feats, coords, e.target, e.slide, meta)


class _CLAMIndex:
    """The slide table, the split and the feature files of a CLAM folder, resolved once."""

    def __init__(self, root: str | os.PathLike[str], fold: int, csv_path: str | os.PathLike[str] | None,
                 split_dir: str | os.PathLike[str] | None, label_dict: Mapping[str, int] | None, label_column: str,
                 ignore: Sequence[str], features: str, patches_dir: str | os.PathLike[str] | None, on_missing: str,
                 n_folds: int, val_fraction: float, seed: int, every_slide: bool = False) -> None:  # fmt: skip
        check_on_missing(on_missing, "CLAM features")
        if features not in ("auto", "h5", "pt"):
            raise ValueError(f"CLAM features: features={features!r}, expected 'auto', 'h5' or 'pt'")
        if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
            raise ValueError(f"CLAM features: fold={fold!r} must be a non-negative integer")
        self.root = Path(root)
        if not self.root.is_dir():
            raise CLAMFeaturesMissingError(f"CLAM feature folder {self.root} not found; {_LAYOUT}")
        h5_dir, pt_dir = self.root / "h5_files", self.root / "pt_files"
        wanted = {"auto": (h5_dir, pt_dir), "h5": (h5_dir,), "pt": (pt_dir,)}[features]
        if not any(d.is_dir() for d in wanted):
            raise CLAMFeaturesMissingError(f"CLAM feature folder {self.root}: no {' or '.join(d.name + '/' for d in wanted)} "
                                           f"folder; {_LAYOUT}")  # fmt: skip
        self.fold, self.features = fold, features
        self.table = read_clam_slide_table(Path(csv_path) if csv_path else self.root / "labels.csv", label_dict,
                                           label_column, ignore)  # fmt: skip
        if len(self.table.class_names) < 2:
            raise ValueError(f"{self.table.path}: every slide has label {self.table.class_names[0]!r}; "
                             "classification needs at least two classes")  # fmt: skip
        patches = Path(patches_dir) if patches_dir else (self.root / "patches" if (self.root / "patches").is_dir() else None)
        if patches is not None and not patches.is_dir():
            raise CLAMFeaturesMissingError(f"CLAM patches folder {patches} not found (patches_dir=); it is the "
                                           "patches/ folder written by CLAM's create_patches_fp.py")  # fmt: skip
        if every_slide:  # split="all": no split is read or drawn
            self._splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
            self.split_source, self.split_file = "none", None
        else:
            self._splits = self._resolve_splits(split_dir, n_folds, val_fraction, seed)
        # feature files of every slide the splits use, checked once
        used = set(self.table.slide_ids) if every_slide else {s for ids in self._splits.values() for s in ids}
        rows = {s: i for i, s in enumerate(self.table.slide_ids)}
        missing, self._entries = [], {}
        dims: dict[int, str] = {}
        for s in self.table.slide_ids:
            if s not in used:
                continue
            h5 = _feature_file(h5_dir, s, ".h5") if h5_dir.is_dir() else None
            pt = _feature_file(pt_dir, s, ".pt") if pt_dir.is_dir() else None
            have = {"auto": h5 or pt, "h5": h5, "pt": pt}[features]
            if have is None:
                missing.append(s)
                continue
            n, d = _probe(h5 if (features != "pt" and h5 is not None) else None,
                          pt if (features == "pt" or h5 is None) else None, s)  # fmt: skip
            dims.setdefault(d, s)
            if len(dims) > 1:
                (d0, s0), (d1, s1) = list(dims.items())[:2]
                raise BagError(f"slide {s1}: {d1} features per patch, but slide {s0} has {d0} (features of two encoders?)")
            attrs = _patch_attrs(patches, s) if patches is not None else {}
            i = rows[s]
            self._entries[s] = _Entry(s, self.table.case_ids[i], self.table.targets[i], h5, pt if features != "h5" else None,
                                      n, attrs)  # fmt: skip
        what = {"auto": "h5_files/<slide_id>.h5 or pt_files/<slide_id>.pt", "h5": "h5_files/<slide_id>.h5",
                "pt": "pt_files/<slide_id>.pt"}[features]  # fmt: skip
        handle_missing(missing, on_missing, f"CLAM features {self.root}: {len(missing)} slides of {self.table.path.name} "
                       f"have no {what}", CLAMFeaturesMissingError,
                       "extract their features with CLAM's extract_features_fp.py or drop them from the table")  # fmt: skip
        if not self._entries:
            raise CLAMFeaturesMissingError(f"CLAM feature folder {self.root}: no slide of {self.table.path} has "
                                           f"features; {_LAYOUT}")  # fmt: skip
        self.feature_dim = next(iter(dims))

    split_source: str
    split_file: Path | None

    def _resolve_splits(self, split_dir: str | os.PathLike[str] | None, n_folds: int, val_fraction: float,
                        seed: int) -> dict[str, list[str]]:  # fmt: skip
        table = self.table
        folder = Path(split_dir) if split_dir else self.root / "splits"
        if split_dir and not folder.is_dir():
            raise CLAMFeaturesMissingError(f"CLAM split folder {folder} not found (split_dir=); it holds "
                                           "splits_<k>.csv from CLAM's create_splits_seq.py")  # fmt: skip
        if folder.is_dir():
            path = folder / f"splits_{self.fold}.csv"
            if not path.is_file():
                have = sorted(p.name for p in folder.glob("splits_*.csv") if p.stem.split("_")[-1].isdigit())
                raise CLAMFeaturesMissingError(f"CLAM split file {path} not found (fold={self.fold}); {folder} has "
                                               f"{have or 'no splits_<k>.csv'}")  # fmt: skip
            splits = read_clam_splits(path)
            known = set(table.slide_ids)
            unknown = [s for ids in splits.values() for s in ids if s not in known]
            if unknown:  # CLAM keeps only the split's slides that are in the table; say so
                warnings.warn(f"{path}: {len(unknown)} slides are not in {table.path.name} (or have an ignored "
                              f"label) and are left out: {', '.join(unknown[:10])}", UserWarning, stacklevel=4)  # fmt: skip
            self.split_source, self.split_file = "files", path
            order = {s: i for i, s in enumerate(table.slide_ids)}
            return {k: sorted((s for s in ids if s in known), key=order.__getitem__) for k, ids in splits.items()}
        # No split files: a seeded, stratified n_folds-fold split of the cases (slides of a case stay together).
        from chanformer.datasets.base import stratified_split
        from chanformer.datasets.wsi.tables import stratified_folds

        if not 0 <= self.fold < n_folds:
            raise ValueError(f"CLAM features: fold={self.fold} must be in [0, n_folds={n_folds})")
        cases = list(dict.fromkeys(table.case_ids))
        case_label: dict[str, int] = {}
        for c, t in zip(table.case_ids, table.targets):  # a case's label is its slides' highest (CLAM's 'max' voting)
            case_label[c] = max(t, case_label.get(c, t))
        labels = np.array([case_label[c] for c in cases])
        try:
            folds = stratified_folds(labels, n_folds, seed)
        except ValueError as e:
            raise ValueError(f"CLAM features {self.root} ({len(cases)} cases, no split files): {e}") from None
        test = folds[self.fold]
        rest = np.setdiff1d(np.arange(len(cases)), test)
        if val_fraction > 0:
            tr, va = stratified_split(labels[rest], val_fraction, seed + 1000 + self.fold)
            train, val = rest[tr], rest[va]
        else:
            train, val = rest, np.zeros(0, dtype=np.int64)
        self.split_source, self.split_file = "folds", None
        part = {cases[i]: k for k, idx in (("train", train), ("val", val), ("test", test)) for i in idx}
        return {k: [s for s, c in zip(table.slide_ids, table.case_ids) if part[c] == k] for k in ("train", "val", "test")}

    def entries(self, split: str) -> list[_Entry]:
        ids = self.table.slide_ids if split == "all" else self._splits[split]
        return [self._entries[s] for s in ids if s in self._entries]


def _patch_attrs(folder: Path, slide: str) -> dict[str, Any]:
    path = _feature_file(folder, slide, ".h5")
    if path is None:
        return {}
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            return _coords_attrs(f["coords"]) if "coords" in f else {}
    except OSError as e:
        raise BagError(f"slide {slide}: cannot read {path} as HDF5 ({e})") from None


class CLAMFeaturesDataModule(SplitBagDataModule):
    """Fold ``fold`` of a CLAM feature folder: the train/val/test slides of ``splits_<fold>.csv``
    (or of a seeded fold split by case), as padded :class:`~chanformer.batch.BagBatch` es.

    Args:
        root: the feature folder (``h5_files/``, ``pt_files/``): the one argument to set.
        csv_path: slide table (default ``<root>/labels.csv``).
        split_dir / fold: CLAM's ``splits_<fold>.csv`` (default folder ``<root>/splits``).
        label_dict / label_column / ignore / features: see :class:`CLAMFeatureDataset`.
        patches_dir / on_missing / n_folds / val_fraction: see :class:`CLAMFeatureDataset`.
        batch_size: bags per step (padded with a mask).
        max_instances: random subsample of larger training bags (``None``: every patch).
        normalize: standardise every feature with the mean/std of the training patches.
        num_workers: data loader workers.
        seed: shuffling seed (and the split seed without split files).
    """

    def __init__(
        self,
        root: str = "data/clam_features",
        csv_path: str | None = None,
        split_dir: str | None = None,
        fold: int = 0,
        label_dict: dict[str, int] | None = None,
        label_column: str = "label",
        ignore: list[str] | None = None,
        features: Literal["auto", "h5", "pt"] = "auto",
        patches_dir: str | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
        n_folds: int = 10,
        val_fraction: float = 0.1,
        batch_size: int = 1,
        max_instances: int | None = None,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"CLAMFeaturesDataModule(batch_size={batch_size!r}): must be an integer >= 1")
        self.batch_size, self.num_workers, self.seed, self.normalize = batch_size, num_workers, seed, normalize
        index = _CLAMIndex(root, fold, csv_path, split_dir, label_dict, label_column, ignore or (), features,
                           patches_dir, on_missing, n_folds, val_fraction, seed)  # fmt: skip
        self.index = index
        self.class_names, self.feature_dim = list(index.table.class_names), index.feature_dim
        self.split_source = index.split_source
        self.datasets = {}
        for k in ("train", "val", "test"):
            cap = max_instances if k == "train" else None
            ds = CLAMFeatureDataset.__new__(CLAMFeatureDataset)._init_from(index, k, cap, seed)
            self.datasets[k] = ds if len(ds) else None
        if self.datasets["train"] is None:
            raise ValueError(f"CLAMFeaturesDataModule({root}): fold {fold} has no training slide with features")
