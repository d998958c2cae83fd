"""CAMELYON16 as distributed: slides, slide labels, the official train/test split and lesion polygons.

The layout of the GigaScience / Google Drive copies (``lesion_annotations.zip`` may stay zipped)::

    <root>/training/normal/normal_001.tif ... normal_160.tif
    <root>/training/tumor/tumor_001.tif ... tumor_110.tif
    <root>/training/lesion_annotations/tumor_001.xml ...     (or training/lesion_annotations.zip)
    <root>/testing/images/test_001.tif ... test_130.tif
    <root>/testing/lesion_annotations/test_001.xml ...       (or testing/lesion_annotations.zip)
    <root>/testing/reference.csv                              test_001,Tumor,Macro,Primary / test_002,Normal ...

The flat layout of the AWS Open Data copy (``<root>/images/*.tif``, ``<root>/annotations/*.xml``,
``reference.csv`` in ``<root>/evaluation/`` or ``<root>``) is read too: the split and the training
labels then come from the file names (``normal_`` / ``tumor_`` / ``test_``).

Slide labels: ``normal`` (0) / ``tumor`` (1); training slides by folder (or name), test slides
from ``reference.csv`` (no header; column 2 ``Tumor``/``Normal``, the rest kept as
:attr:`Camelyon16Slide.reference`). Lesions are ASAP XML polygons in level-0 pixels; the groups
``_0``, ``_1`` and ``Tumor`` are tumour, ``_2`` and ``Exclusion`` are non-tumour regions cut out of
it. :func:`tile_tumor_fraction` turns them into the tumour share of every tile of a grid (a
:class:`~chanformer.datasets.wsi.slides.TileGrid`, a bag's coordinates), so tile labels follow
the tiles ``chanformer wsi tile`` / ``extract`` made.

Slides are read by :class:`~chanformer.datasets.wsi.slides.Slide` (tifffile); the originals are
JPEG-compressed, which tifffile decodes with the ``imagecodecs`` package.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

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
from chanformer.datasets.wsi.slides import TileGrid
from chanformer.datasets.wsi.store import Bag, BagError, BagStore

__all__ = [
    "CAMELYON16_CLASSES",
    "AsapAnnotation",
    "Camelyon16BagDataset",
    "Camelyon16DataModule",
    "Camelyon16MissingError",
    "Camelyon16Slide",
    "Camelyon16Slides",
    "LesionAnnotations",
    "read_asap_xml",
    "tile_tumor_fraction",
]

CAMELYON16_URL = "https://camelyon17.grand-challenge.org/Data/"
CAMELYON16_CLASSES = ("normal", "tumor")
TUMOR_GROUPS = ("_0", "_1", "Tumor")
EXCLUSION_GROUPS = ("_2", "Exclusion")
_ID = re.compile(r"^(normal|tumor|test)_(\d+)$", re.IGNORECASE)
_LAYOUT = (
    "expected the CAMELYON16 layout <root>/training/normal/normal_NNN.tif, <root>/training/tumor/tumor_NNN.tif, "
    "<root>/training/lesion_annotations/tumor_NNN.xml (or lesion_annotations.zip), <root>/testing/images/test_NNN.tif, "
    "<root>/testing/lesion_annotations/test_NNN.xml (or .zip) and <root>/testing/reference.csv "
    "(or the flat <root>/images/, <root>/annotations/ layout of the AWS copy); "
    f"download CAMELYON16 (CC0) from {CAMELYON16_URL}; chanformer never downloads it"
)


class Camelyon16MissingError(WSIDataMissingError):
    """A CAMELYON16 folder, slide, annotation or ``reference.csv`` row is missing; the message shows the layout."""


# -- ASAP annotations -------------------------------------------------------------------------------
@dataclass
class AsapAnnotation:
    """One ``<Annotation>`` of an ASAP XML file: ``coords [K, 2]`` float64 level-0 ``(x, y)``, in order."""

    name: str
    group: str
    type: str
    coords: np.ndarray


def read_asap_xml(source: str | os.PathLike[str] | bytes, name: str | None = None) -> list[AsapAnnotation]:
    """The annotations of an ASAP XML file (``<ASAP_Annotations><Annotations><Annotation Name= Type=
    PartOfGroup=><Coordinates><Coordinate Order= X= Y=/>``), coordinates sorted by ``Order``.

    ``source`` is a path or the file's bytes (``name`` then names it in errors). A file that is not
    ASAP XML, or a coordinate that is not a number, raises ``ValueError`` naming the file.
    """
    where = name or str(source if not isinstance(source, bytes) else "<bytes>")
    try:
        root = ElementTree.fromstring(source) if isinstance(source, bytes) else ElementTree.parse(source).getroot()
    except ElementTree.ParseError as e:
        raise ValueError(f"{where}: not valid XML ({e})") from None
    if root.tag != "ASAP_Annotations":
        raise ValueError(f"{where}: expected an <ASAP_Annotations> document, got <{root.tag}>")
    out = []
    for i, ann in enumerate(root.iter("Annotation")):
        pts: list[tuple[float, float, float]] = []
        for c in ann.iter("Coordinate"):
            try:
                pts.append((float(c.get("Order", len(pts))), float(c.get("X", "nan")), float(c.get("Y", "nan"))))
            except ValueError:
                raise ValueError(f"{where}: annotation {ann.get('Name', i)!r} has a coordinate that is not a number "
                                 f"({dict(c.attrib)})") from None  # fmt: skip
        arr = np.array(sorted(pts), dtype=np.float64).reshape(-1, 3)[:, 1:]
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: annotation {ann.get('Name', i)!r} has a coordinate without X or Y")
        out.append(AsapAnnotation(ann.get("Name", f"Annotation {i}"), ann.get("PartOfGroup", "None"),
                                  ann.get("Type", "Polygon"), arr))  # fmt: skip
    return out


def _polygon_mask(polygons: Sequence[np.ndarray], r0: int, c0: int, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Union of ``polygons`` (level-0 ``(x, y)``) on a grid of ``cell``-pixel cells whose first cell is
    ``(r0, c0)``; a cell is inside when its centre is."""
    from skimage.draw import polygon

    mask = np.zeros(shape, bool)
    for p in polygons:
        rr, cc = polygon(p[:, 1] / cell - r0 - 0.5, p[:, 0] / cell - c0 - 0.5, shape=shape)
        mask[rr, cc] = True
    return mask


def tile_tumor_fraction(
    tumor: Sequence[np.ndarray],
    coords: np.ndarray,
    tile_extent: float,
    exclusion: Sequence[np.ndarray] = (),
    samples: int = 8,
) -> np.ndarray:
    """Share of every tile covered by tumour: inside a ``tumor`` polygon and outside every ``exclusion`` one.

    Args:
        tumor / exclusion: polygons ``[K, 2]`` in level-0 ``(x, y)`` (ASAP's order).
        coords: ``[N, 2]`` level-0 ``(y, x)`` of the tiles' top-left corners (chanformer's order:
            :attr:`TileGrid.coords <chanformer.datasets.wsi.slides.TileGrid>`, ``Bag.coords``).
        tile_extent: tile edge in level-0 pixels (``tile_size * downsample`` of the grid).
        samples: each tile is measured on ``samples x samples`` cells (resolution 1/samples of an edge).

    Returns:
        ``[N]`` float32 in ``[0, 1]``. Polygons are rasterised only over their bounding box, so a
        gigapixel slide costs the lesion area, not the slide area.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(len(coords), np.float32)
    polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in tumor]
    polys = [p for p in polys if len(p) >= 3]
    if not polys or not len(coords):
        return out
    if not tile_extent > 0 or samples < 1:
        raise ValueError(f"tile_tumor_fraction: tile_extent={tile_extent} and samples={samples} must be positive")
    cell = float(tile_extent) / samples
    pts = np.concatenate(polys)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    hit = (coords[:, 0] < y1) & (coords[:, 0] + tile_extent > y0) & (coords[:, 1] < x1) & (coords[:, 1] + tile_extent > x0)
    if not hit.any():
        return out
    cells = np.round(coords[hit] / cell).astype(np.int64)  # first cell (row, col) of each tile
    r0, c0 = cells.min(0)
    shape = (int(cells[:, 0].max() - r0 + samples), int(cells[:, 1].max() - c0 + samples))
    mask = _polygon_mask(polys, int(r0), int(c0), shape, cell)
    excl = [q for q in (np.asarray(p, np.float64).reshape(-1, 2) for p in exclusion) if len(q) >= 3]
    if excl:
        mask &= ~_polygon_mask(excl, int(r0), int(c0), shape, cell)
    ii = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r, c = cells[:, 0] - r0, cells[:, 1] - c0
    s = ii[r + samples, c + samples] - ii[r, c + samples] - ii[r + samples, c] + ii[r, c]
    out[hit] = s / float(samples * samples)
    return out


@dataclass
class LesionAnnotations:
    """The lesions of one slide: tumour and exclusion polygons (level-0 ``(x, y)``), plus any others."""

    slide: str
    tumor: list[np.ndarray] = field(default_factory=list)
    exclusion: list[np.ndarray] = field(default_factory=list)
    other: list[AsapAnnotation] = field(default_factory=list)
    source: str | None = None

    @classmethod
    def from_annotations(cls, slide: str, annotations: Sequence[AsapAnnotation], source: str | None = None,
                         tumor_groups: Sequence[str] = TUMOR_GROUPS,
                         exclusion_groups: Sequence[str] = EXCLUSION_GROUPS) -> LesionAnnotations:  # fmt: skip
        """Sort ASAP annotations by group (case-insensitive); an area annotation of an unknown group
        raises ``ValueError`` (pass its group in ``tumor_groups``/``exclusion_groups``); dots and
        point sets are kept in :attr:`other`."""
        tg, eg = {g.lower() for g in tumor_groups}, {g.lower() for g in exclusion_groups}
        out = cls(slide, source=source)
        for a in annotations:
            area = a.type.lower() in ("polygon", "spline", "rectangle") and len(a.coords) >= 3
            if not area:
                out.other.append(a)
            elif a.group.lower() in tg:
                out.tumor.append(a.coords)
            elif a.group.lower() in eg:
                out.exclusion.append(a.coords)
            else:
                raise ValueError(f"{source or slide}: annotation {a.name!r} is in group {a.group!r}, neither tumour "
                                 f"{list(tumor_groups)} nor exclusion {list(exclusion_groups)}")  # fmt: skip
        return out

    def tumor_fraction(self, coords: np.ndarray, tile_extent: float, samples: int = 8) -> np.ndarray:
        """See :func:`tile_tumor_fraction`."""
        return tile_tumor_fraction(self.tumor, coords, tile_extent, self.exclusion, samples)


def _tile_geometry(tiles: TileGrid | Bag | np.ndarray | torch.Tensor, tile_extent: float | None) -> tuple[np.ndarray, float]:
    if isinstance(tiles, TileGrid):
        return tiles.coords, tile_extent or tiles.tile_size * tiles.downsample
    if isinstance(tiles, Bag):
        a = tiles.attrs
        if tile_extent is None:
            if "tile_extent" in a:
                tile_extent = float(a["tile_extent"])
            elif "tile_size" in a:
                tile_extent = float(a["tile_size"]) * float(a.get("downsample", 1.0))
        coords = tiles.coords.numpy()
    else:
        coords = np.asarray(tiles)
    if tile_extent is None:
        raise ValueError("tile_extent= is needed (level-0 tile edge): the tiles carry no tile size")
    return coords, float(tile_extent)


# -- the dataset ------------------------------------------------------------------------------------
@dataclass
class Camelyon16Slide:
    """One CAMELYON16 slide: id (``tumor_001``), file, official split (``train``/``test``), label
    (0 normal, 1 tumour) and, for test slides, the rest of its ``reference.csv`` row (``("Macro", ...)``)."""

    slide: str
    path: Path
    split: str
    label: int
    reference: tuple[str, ...] = ()

    @property
    def class_name(self) -> str:
        return CAMELYON16_CLASSES[self.label]


def _tifs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith("."))


def read_reference_csv(path: str | os.PathLike[str]) -> dict[str, tuple[int, tuple[str, ...]]]:
    """``testing/reference.csv`` -> ``{slide: (label, rest of the row)}`` (no header; ``Tumor``/``Normal``)."""
    path = Path(path)
    out: dict[str, tuple[int, tuple[str, ...]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if len(cells) < 2 or cells[1].lower() not in CAMELYON16_CLASSES:
                if line == 1 and len(cells) >= 2 and not _ID.match(cells[0]):
                    continue  # a header row someone added
                raise ValueError(f"{path}, line {line}: expected '<slide>,Tumor|Normal[,...]', got {row}")
            slide = Path(cells[0]).stem if cells[0].lower().endswith((".tif", ".tiff")) else cells[0]
            out[slide] = (CAMELYON16_CLASSES.index(cells[1].lower()), tuple(c for c in cells[2:] if c))
    return out


class Camelyon16Slides:
    """The CAMELYON16 slides of ``root`` with labels, the official split and lesion annotations.

    Args:
        root: the download folder (see the module docstring for the layouts read).
        split: ``"train"`` (270 slides), ``"test"`` (130) or ``"all"``.
        exclude: slide ids to leave out (e.g. test slides other works drop).
        on_missing: test slides named in ``reference.csv`` whose image is absent (a partial
            download): ``"raise"`` a :class:`Camelyon16MissingError` listing them, or ``"skip"`` them.
        tumor_groups / exclusion_groups: ASAP groups that are tumour / cut out of it.

    Use :meth:`paths` (slide files for ``chanformer wsi extract`` / ``extract_features``),
    :attr:`labels` (``{slide: 0 | 1}``, the ``labels=`` of ``extract_features``),
    :meth:`annotations` and :meth:`tumor_fraction` / :meth:`tile_labels` (tile-level ground truth).
    """

    classes = CAMELYON16_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "test", "all"] = "all",
        exclude: Sequence[str] | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
        tumor_groups: Sequence[str] = TUMOR_GROUPS,
        exclusion_groups: Sequence[str] = EXCLUSION_GROUPS,
    ) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"Camelyon16Slides(split={split!r}): expected 'train', 'test' or 'all'")
        check_on_missing(on_missing, "Camelyon16Slides")
        self.root, self.split = Path(root), split
        self.tumor_groups, self.exclusion_groups = tuple(tumor_groups), tuple(exclusion_groups)
        if not self.root.is_dir():
            raise Camelyon16MissingError(f"CAMELYON16 root folder not found: {self.root}; {_LAYOUT}")
        flat = not (self.root / "training").is_dir() and not (self.root / "testing").is_dir() and (self.root / "images").is_dir()
        self.layout = "flat" if flat else "folders"
        slides = self._train_slides(flat) if split in ("train", "all") else []
        if split in ("test", "all"):
            slides += self._test_slides(flat, on_missing)
        skip = set(exclude or ())
        self.slides: list[Camelyon16Slide] = [s for s in slides if s.slide not in skip]
        if not self.slides:
            raise Camelyon16MissingError(f"CAMELYON16 {self.root}: no {split} slides; {_LAYOUT}")
        self._annotations = self._index_annotations()

    # -- slides and labels ------------------------------------------------------------------------
    def _require(self, path: Path, what: str) -> Path:
        if not path.exists():
            raise Camelyon16MissingError(f"CAMELYON16 {what} not found: {path}; {_LAYOUT}")
        return path

    def _train_slides(self, flat: bool) -> list[Camelyon16Slide]:
        out = []
        if flat:
            for p in _tifs(self.root / "images"):
                m = _ID.match(p.stem)
                if m and m.group(1).lower() in CAMELYON16_CLASSES:
                    out.append(Camelyon16Slide(p.stem, p, "train", CAMELYON16_CLASSES.index(m.group(1).lower())))
        else:
            for label, name in enumerate(CAMELYON16_CLASSES):
                folder = self._require(self.root / "training" / name, f"training/{name} folder")
                out += [Camelyon16Slide(p.stem, p, "train", label) for p in _tifs(folder)]
        if not out:
            raise Camelyon16MissingError(f"CAMELYON16 {self.root}: no training slides (normal_NNN.tif, tumor_NNN.tif); {_LAYOUT}")
        return out

    def reference_path(self) -> Path:
        for cand in (self.root / "testing" / "reference.csv", self.root / "evaluation" / "reference.csv",
                     self.root / "testing" / "evaluation" / "reference.csv", self.root / "reference.csv"):  # fmt: skip
            if cand.is_file():
                return cand
        raise Camelyon16MissingError(f"CAMELYON16 test labels not found: {self.root / 'testing' / 'reference.csv'} "
                                     f"(also looked in evaluation/ and the root); {_LAYOUT}")  # fmt: skip

    def _test_slides(self, flat: bool, on_missing: str) -> list[Camelyon16Slide]:
        folder = self.root / "images" if flat else self._require(self.root / "testing" / "images", "testing/images folder")
        files = {p.stem: p for p in _tifs(folder) if p.stem.lower().startswith("test_")}
        reference = read_reference_csv(self.reference_path())
        unlabelled = sorted(set(files) - set(reference))
        if unlabelled:
            raise Camelyon16MissingError(f"CAMELYON16 {self.reference_path()}: no row for {', '.join(unlabelled[:20])}; "
                                         "is it the reference.csv of CAMELYON16?")  # fmt: skip
        absent = sorted(set(reference) - set(files))
        handle_missing(absent, on_missing, f"CAMELYON16 {folder}: {len(absent)} test slides of reference.csv have no "
                       "image", Camelyon16MissingError, "download them (partial download?)")  # fmt: skip
        return [Camelyon16Slide(s, files[s], "test", reference[s][0], reference[s][1]) for s in sorted(files)]

    def __len__(self) -> int:
        return len(self.slides)

    def __getitem__(self, i: int) -> Camelyon16Slide:
        return self.slides[i]

    def __iter__(self) -> Any:
        return iter(self.slides)

    @property
    def ids(self) -> list[str]:
        return [s.slide for s in self.slides]

    @property
    def labels(self) -> dict[str, int]:
        """``{slide: 0 (normal) | 1 (tumour)}``."""
        return {s.slide: s.label for s in self.slides}

    def slide(self, slide: str) -> Camelyon16Slide:
        for s in self.slides:
            if s.slide == slide:
                return s
        raise KeyError(f"CAMELYON16 {self.root}: no slide {slide!r} in split {self.split!r}")

    def paths(self, split: Literal["train", "test", "all"] = "all") -> list[Path]:
        """Slide files of ``split`` (for ``extract_features(slides=...)`` or ``chanformer wsi extract``)."""
        return [s.path for s in self.slides if split == "all" or s.split == split]

    def write_labels_csv(self, path: str | os.PathLike[str]) -> Path:
        """``slide,label`` CSV (the ``--labels`` of ``chanformer wsi extract``); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["slide", "label"])
            w.writerows([s.slide, s.label] for s in self.slides)
        return path

    # -- lesions -------------------------------------------------------------------------------
    def _index_annotations(self) -> dict[str, tuple[Path, str | None]]:
        """``{slide: (xml file, None) | (zip file, member)}`` over every place CAMELYON16 keeps them."""
        out: dict[str, tuple[Path, str | None]] = {}
        places = [self.root / "training" / "lesion_annotations", self.root / "testing" / "lesion_annotations",
                  self.root / "annotations", self.root / "lesion_annotations"]  # fmt: skip
        for folder in places:
            if folder.is_dir():
                for p in sorted(folder.rglob("*.xml")):
                    out.setdefault(p.stem, (p, None))
        for z in (p.with_suffix(".zip") for p in places):
            if z.is_file():
                try:
                    with zipfile.ZipFile(z) as zf:
                        for member in zf.namelist():
                            stem = Path(member).stem
                            if member.lower().endswith(".xml") and not Path(member).name.startswith("."):
                                out.setdefault(stem, (z, member))
                except zipfile.BadZipFile as e:
                    raise Camelyon16MissingError(f"CAMELYON16 {z}: not a readable zip ({e}); re-download it") from None
        return out

    def annotation_file(self, slide: str) -> str | None:
        """Where ``slide``'s XML is (``path`` or ``archive.zip:member``), ``None`` if it has none."""
        hit = self._annotations.get(slide)
        return None if hit is None else (str(hit[0]) if hit[1] is None else f"{hit[0]}:{hit[1]}")

    def annotations(self, slide: str) -> LesionAnnotations:
        """The lesions of ``slide`` (empty for a normal slide).

        Raises:
            Camelyon16MissingError: a tumour slide without its XML (lesion_annotations not unpacked?).
        """
        info = self.slide(slide)
        hit = self._annotations.get(slide)
        if hit is None:
            if info.label == 0:
                return LesionAnnotations(slide)
            where = "training/lesion_annotations" if info.split == "train" else "testing/lesion_annotations"
            raise Camelyon16MissingError(f"CAMELYON16 {self.root}: tumour slide {slide} has no lesion annotation "
                                         f"({where}/{slide}.xml or {where}.zip); {_LAYOUT}")  # fmt: skip
        path, member = hit
        if member is None:
            anns = read_asap_xml(path)
        else:
            with zipfile.ZipFile(path) as zf:
                anns = read_asap_xml(zf.read(member), name=f"{path}:{member}")
        source = self.annotation_file(slide)
        return LesionAnnotations.from_annotations(slide, anns, source, self.tumor_groups, self.exclusion_groups)

    def tumor_fraction(self, slide: str, tiles: TileGrid | Bag | np.ndarray | torch.Tensor,
                       tile_extent: float | None = None, samples: int = 8) -> np.ndarray:  # fmt: skip
        """Tumour share ``[N]`` of every tile of ``slide``: ``tiles`` is a :class:`TileGrid`
        (``tile_slide`` / ``chanformer wsi tile``), a bag (coords + its ``tile_size``/``downsample``
        attributes, as ``extract_features`` writes them) or level-0 ``(y, x)`` coords with ``tile_extent``."""
        coords, extent = _tile_geometry(tiles, tile_extent)
        return self.annotations(slide).tumor_fraction(coords, extent, samples)

    def tile_labels(self, slide: str, tiles: TileGrid | Bag | np.ndarray | torch.Tensor, threshold: float = 0.5,
                    tile_extent: float | None = None, samples: int = 8) -> np.ndarray:  # fmt: skip
        """``[N]`` int64: 1 where a tile's tumour share is at least ``threshold``, else 0."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"tile_labels(threshold={threshold}): must be in (0, 1]")
        return (self.tumor_fraction(slide, tiles, tile_extent, samples) >= threshold - 1e-9).astype(np.int64)


# -- bags of a store, labelled and split as CAMELYON16 --------------------------------------------
class Camelyon16BagDataset(LazyBagDataset):
    """Bags of CAMELYON16 slides from a :class:`~chanformer.datasets.wsi.store.BagStore`
    (``chanformer wsi extract`` output), labelled from CAMELYON16 (a label stored in a bag must agree)."""

    def __init__(self, store: BagStore | str | os.PathLike[str], slides: Sequence[Camelyon16Slide],
                 max_instances: int | None = None, seed: int = 0) -> None:  # fmt: skip
        self.store = store if isinstance(store, BagStore) else BagStore(store)
        self._info = list(slides)
        self.slides = [s.slide for s in self._info]
        self.targets = [s.label for s in self._info]
        self.feature_dim = int(self.store.attrs.get("feature_dim") or 0)
        self._init_lazy(max_instances, seed)

    def read(self, i: int) -> Bag:
        info = self._info[i]
        b = self.store.read_bag(info.slide)
        if b.label is not None and int(b.label) != info.label:
            raise BagError(f"slide {info.slide}: the bag in {self.store.path} has label {b.label}, CAMELYON16 says "
                           f"{info.label} ({info.class_name}); extract without --labels or with CAMELYON16's")  # fmt: skip
        check_bag(info.slide, b.features, str(self.store.path), self.feature_dim or None)
        attrs = dict(b.attrs, label=info.label, split=info.split, reference=list(info.reference))
        return Bag(b.features, b.coords, info.label, info.slide, attrs)


class Camelyon16DataModule(SplitBagDataModule):
    """CAMELYON16's official split over a bag store: its 270 training slides (minus a stratified
    ``val_fraction`` for validation, drawn with ``seed``) and its 130 test slides.

    The bags come from ``chanformer wsi extract`` (or ``extract_features``) run on the slides of
    ``root``, with or without ``--labels``: labels come from CAMELYON16 itself (folder names and
    ``testing/reference.csv``).

    Args:
        root: the CAMELYON16 download folder: the one argument to set.
        store: the bag store extracted from its slides.
        val_fraction: share of each class of the training slides held out for validation.
        exclude: slide ids to leave out.
        on_missing: slides of CAMELYON16 without a complete bag in the store (or test images
            missing from a partial download): ``"raise"`` listing them, or ``"skip"`` them with a warning.
        batch_size / max_instances / normalize / num_workers / seed: as for
            :class:`~chanformer.datasets.wsi.bags.BagDataModule`.
    """

    def __init__(
        self,
        root: str = "data/CAMELYON16",
        store: str = "runs/camelyon16/bags.zarr",
        val_fraction: float = 0.2,
        exclude: list[str] | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
        batch_size: int = 1,
        max_instances: int | None = None,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_on_missing(on_missing, "Camelyon16DataModule")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Camelyon16DataModule(batch_size={batch_size!r}): must be an integer >= 1")
        self.batch_size, self.num_workers, self.seed, self.normalize = batch_size, num_workers, seed, normalize
        self.slides = Camelyon16Slides(root, "all", exclude=exclude, on_missing=on_missing)
        self.store = BagStore(store)
        if not self.store.exists():
            raise Camelyon16MissingError(f"bag store {store} not found: extract it first, e.g. `chanformer wsi extract "
                                         f"{Path(root) / 'training'} {Path(root) / 'testing' / 'images'} --store {store}` "
                                         "(docs/public-datasets/wsi.md)")  # fmt: skip
        have = set(self.store.slides())
        absent = [s.slide for s in self.slides if s.slide not in have]
        handle_missing(absent, on_missing, f"bag store {store}: {len(absent)} CAMELYON16 slides have no complete bag",
                       Camelyon16MissingError, "run the extraction on them (it resumes)")  # fmt: skip
        use = [s for s in self.slides if s.slide in have]
        train = [s for s in use if s.split == "train"]
        test = [s for s in use if s.split == "test"]
        if not train:
            raise Camelyon16MissingError(f"bag store {store}: no bag of a CAMELYON16 training slide")
        from chanformer.datasets.base import stratified_split

        labels = np.array([s.label for s in train])
        tr, va = stratified_split(labels, val_fraction, seed) if val_fraction > 0 \
            else (np.arange(len(train)), np.zeros(0, np.int64))  # fmt: skip
        parts = {"train": [train[i] for i in tr], "val": [train[i] for i in va], "test": test}
        self.class_names, self.feature_dim = list(CAMELYON16_CLASSES), int(self.store.attrs.get("feature_dim") or 0)
        if not self.feature_dim:
            raise BagError(f"bag store {store}: no feature_dim recorded (was the extraction interrupted before its first bag?)")
        self.datasets = {k: Camelyon16BagDataset(self.store, v, max_instances if k == "train" else None, seed) if v else None
                         for k, v in parts.items()}  # fmt: skip

    def tile_fractions(self, slide: str, bag: Bag | None = None, samples: int = 8) -> np.ndarray:
        """Tumour share of every tile of ``slide``'s bag (its stored coordinates and tile size)."""
        bag = bag or self.store.read_bag(slide)
        return self.slides.tumor_fraction(slide, bag, samples=samples)
