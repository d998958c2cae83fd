"""Cell Painting plates (JUMP-CP and other Cell Painting Gallery sets) read as their publishers distribute them.

The Cell Painting Gallery (https://registry.opendata.aws/cellpainting-gallery/, bucket
``s3://cellpainting-gallery``; JUMP-CP is ``cpg0016-jump``) stores one 16-bit TIFF per channel per
site (field of view) and describes each site by a CellProfiler ``load_data.csv``. Copy a source's
folders yourself (``aws s3 sync --no-sign-request``) and point the reader at that folder::

    <root>/images/<batch>/images/<plate>__<timestamp>/Images/r01c01f01p01-ch1sk1fk1fl1.tiff   (Phenix)
    <root>/images/<batch>/images/<plate>/<plate>_A01_s1_w1<GUID>.tif                           (ImageXpress)
    <root>/workspace/load_data_csv/<batch>/<plate>/load_data.csv
    <root>/metadata/platemaps/<batch>/barcode_platemap.csv       Assay_Plate_Barcode, Plate_Map_Name
    <root>/metadata/platemaps/<batch>/platemap/<Plate_Map_Name>.txt   tab-separated: well_position, broad_sample, ...
    <root>/metadata/external_metadata/<name>.tsv                 optional: broad_sample -> pert_iname, target, moa, ...

``load_data.csv`` has one row per site: ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site`` and,
per channel, ``FileName_Orig<X>`` / ``PathName_Orig<X>`` for ``X`` in ``DNA``, ``ER``, ``RNA``,
``AGP``, ``Mito`` (and optionally ``Brightfield``). The file names themselves are never parsed
(Phenix ``ch<n>`` numbers and ImageXpress ``w<n>`` wavelengths map to stains differently per
source); the channel comes from the column. ``PathName`` values are the absolute S3 (or
acquisition-machine) folders; the reader maps them onto ``<root>`` by the longest trailing part of
the path that exists there (``s3://cellpainting-gallery/cpg0016-jump/source_4/images/...`` ->
``<root>/images/...`` when ``<root>`` is the ``source_4`` copy), or takes them as they are when
they exist.

Plate maps: the cpg0000-style pair above, or a single table given as ``platemap=`` (tab-separated
``.txt``/``.tsv`` or ``.csv``, optionally gzipped): its well column (``well_position`` or
``Metadata_Well``), perturbation column (``broad_sample``, ``Metadata_broad_sample``,
``Metadata_JCP2022`` or ``jcp2022``) and optional plate column (``Metadata_Plate``,
``Assay_Plate_Barcode``; without it the map applies to every plate). JUMP's
``metadata/well.csv.gz`` (``Metadata_Source``, ``Metadata_Plate``, ``Metadata_Well``,
``Metadata_JCP2022``) is such a table.

Nothing is ever downloaded: missing folders or files raise :class:`CellPaintingMissingError`;
tables lacking the columns above raise :class:`CellPaintingFormatError` naming the columns found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from chanformer.channels import Channel, ChannelVocab
from chanformer.datasets.imaging.datasets import ChannelNormalizer
from chanformer.datasets.imaging.microscopy import ImageReadError, read_image
from chanformer.datasets.imaging.public import LabelledImageDataset, PublicDataMissingError, PublicImageDataModule
from chanformer.datasets.imaging.sim import CELL_PAINTING_STAINS

__all__ = [
    "CELL_PAINTING_CHANNELS",
    "CELL_PAINTING_GALLERY_URL",
    "CellPaintingDataModule",
    "CellPaintingDataset",
    "CellPaintingFormatError",
    "CellPaintingMissingError",
    "cell_painting_site_vocab",
    "read_load_data",
]

CELL_PAINTING_GALLERY_URL = "https://registry.opendata.aws/cellpainting-gallery/"
#: ``load_data.csv`` channel name (``FileName_Orig<name>``) -> stain key, in the order samples list them.
CELL_PAINTING_CHANNELS: dict[str, str] = {
    "DNA": "stain/DAPI", "ER": "stain/ER", "RNA": "stain/RNA", "AGP": "stain/AGP", "Mito": "stain/Mito",
}  # fmt: skip
BRIGHTFIELD_KEY = "stain/Brightfield"
_SITE_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
_WELL_COLUMNS = ("well_position", "Metadata_Well")
_PERT_COLUMNS = ("broad_sample", "Metadata_broad_sample", "Metadata_JCP2022", "jcp2022", "JCP2022")
_PLATE_COLUMNS = ("Metadata_Plate", "Assay_Plate_Barcode", "plate")
_LAYOUT = (
    "expected a Cell Painting Gallery copy: <root>/workspace/load_data_csv/<batch>/<plate>/load_data.csv (columns "
    "Metadata_Plate, Metadata_Well, Metadata_Site, FileName_Orig{DNA,ER,RNA,AGP,Mito}, PathName_Orig{...}), the TIFFs "
    "they name under <root>/images/..., and a plate map (<root>/metadata/platemaps/<batch>/barcode_platemap.csv + "
    "platemap/<name>.txt, or platemap=<table with well_position/Metadata_Well and broad_sample/Metadata_JCP2022>); "
    f"copy them yourself from {CELL_PAINTING_GALLERY_URL} (s3://cellpainting-gallery, aws s3 sync --no-sign-request); "
    "chanformer never downloads them"
)


class CellPaintingMissingError(PublicDataMissingError):
    """A load_data.csv, plate map, metadata table or listed TIFF is missing."""


class CellPaintingFormatError(ValueError):
    """A load_data.csv, plate map or metadata table lacks the expected columns (names those found)."""


def cell_painting_site_vocab() -> ChannelVocab:
    """The five Cell Painting stain keys (as :func:`~chanformer.datasets.imaging.sim.cell_painting_vocab`)
    plus ``stain/Brightfield``."""
    chans = [Channel(k, kind="stain", wavelength_nm=w) for k, w in CELL_PAINTING_STAINS.items()]
    return ChannelVocab("cell_painting", [*chans, Channel(BRIGHTFIELD_KEY, kind="stain")])


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CellPaintingMissingError(f"Cell Painting table not found: {path}; {_LAYOUT}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if name.endswith((".txt", ".tsv")) else ",", low_memory=False)


def _need(df: pd.DataFrame, cols: Iterable[str], path: Any, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CellPaintingFormatError(f"{path}: {what} lacks column(s) {', '.join(missing)}; columns found: "
                                      f"{', '.join(map(str, df.columns))}")  # fmt: skip


def _first(df: pd.DataFrame, names: Sequence[str], path: Any, what: str, required: bool = True) -> str | None:
    for n in names:
        if n in df.columns:
            return n
    if required:
        raise CellPaintingFormatError(f"{path}: {what} has none of the columns {', '.join(names)}; columns found: "
                                      f"{', '.join(map(str, df.columns))}")  # fmt: skip
    return None


def read_load_data(paths: Sequence[Path], channels: Sequence[str]) -> pd.DataFrame:
    """Concatenate ``load_data.csv`` files, checking the site and ``FileName_/PathName_Orig<X>`` columns;
    adds ``_csv_dir`` (the folder of each row's file)."""
    parts = []
    for p in paths:
        df = _read_table(p)
        _need(df, [*_SITE_COLUMNS, *(f"{k}_Orig{c}" for c in channels for k in ("FileName", "PathName"))], p,
              "load_data.csv")  # fmt: skip
        parts.append(df.assign(_csv_dir=str(p.parent)))
    out = pd.concat(parts, ignore_index=True)
    out["Metadata_Plate"] = out["Metadata_Plate"].astype(str)
    out["Metadata_Well"] = out["Metadata_Well"].astype(str)
    return out


def _norm_well(w: Any) -> str:
    """``"A1"``, ``"a01"`` -> ``"A01"``."""
    s = str(w).strip().upper()
    return f"{s[0]}{int(s[1:]):02d}" if len(s) > 1 and s[1:].isdigit() else s


class CellPaintingDataset(LabelledImageDataset):
    """Cell Painting sites as :class:`~chanformer.batch.ChannelSample` s: values ``[5, H, W]`` float32
    (raw 16-bit intensities unless a ``normalizer`` is given), channels ``stain/DAPI`` (DNA),
    ``stain/ER``, ``stain/RNA``, ``stain/AGP``, ``stain/Mito`` (+ ``stain/Brightfield`` with
    ``brightfield=True``), target = index of the site's label into :attr:`classes` (sorted).

    The label is the perturbation of the site's well in the plate map (``broad_sample`` /
    ``Metadata_JCP2022``), or ``label_column`` of ``metadata`` (a table keyed by that perturbation
    column, e.g. ``target`` or ``moa``). Wells without a perturbation (the plate map's empty
    ``broad_sample`` of DMSO controls) get ``empty_label`` (``None`` drops them); wells absent from
    the plate map, or whose perturbation has no metadata row, are dropped and counted in
    :attr:`dropped`.

    Splits (``split_by="plate"`` or ``"well"``): the plates (or the ``(plate, well)`` pairs) are
    shuffled with ``seed`` and the first ``round(test_fraction * n)`` go to test, the next
    ``round(val_fraction * n)`` to val (at least one each when the fraction is positive and there
    are enough), the rest to train; all sites of a well stay in one split, so no well is seen in two.

    Args:
        root: the copied Cell Painting Gallery source folder (see the module docstring).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        load_data: ``load_data.csv`` file(s); default every ``load_data.csv`` under
            ``<root>/workspace/load_data_csv`` (or under ``root``).
        platemap: one plate-map table (see the module docstring); default the
            ``barcode_platemap.csv`` + ``platemap/*.txt`` pairs under ``<root>/metadata/platemaps``.
        metadata / label_column: optional perturbation -> label table and its label column.
        empty_label: label of wells without a perturbation.
        brightfield: add the ``OrigBrightfield`` channel.
        image_size: resize every field (bilinear, antialiased) to ``image_size x image_size``.
        split_by / val_fraction / test_fraction / seed: the split above.
        vocab / normalizer / transform: see :class:`~chanformer.datasets.imaging.public.LabelledImageDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test", "all"] = "train",
        *,
        load_data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        platemap: str | os.PathLike[str] | None = None,
        metadata: str | os.PathLike[str] | None = None,
        label_column: str | None = None,
        empty_label: str | None = "DMSO",
        brightfield: bool = False,
        image_size: int | None = None,
        split_by: Literal["plate", "well"] = "plate",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        vocab: ChannelVocab | None = None,
        normalizer: ChannelNormalizer | None = None,
        transform: Any = None,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"CellPaintingDataset(split={split!r}): expected 'train', 'val', 'test' or 'all'")
        if split_by not in ("plate", "well"):
            raise ValueError(f"CellPaintingDataset(split_by={split_by!r}): expected 'plate' or 'well'")
        self.root, self.split, self.image_size = Path(root), split, image_size
        if not self.root.is_dir():
            raise CellPaintingMissingError(f"Cell Painting root folder not found: {self.root}; {_LAYOUT}")
        self.orig = [*CELL_PAINTING_CHANNELS, *(["Brightfield"] if brightfield else [])]
        self.all_keys = [*CELL_PAINTING_CHANNELS.values(), *([BRIGHTFIELD_KEY] if brightfield else [])]
        sites = read_load_data(self._load_data_files(load_data), self.orig)
        sites["Metadata_Well"] = sites["Metadata_Well"].map(_norm_well)
        pmap, pert = self._platemap(platemap)
        on = ["Metadata_Well"] + (["Metadata_Plate"] if "Metadata_Plate" in pmap.columns else [])
        sites = sites.merge(pmap, on=on, how="left", indicator=True)
        self.dropped = {"not_in_platemap": int((sites["_merge"] == "left_only").sum())}
        sites = sites[sites["_merge"] == "both"].drop(columns="_merge")
        sites["_pert"] = sites[pert].where(sites[pert].notna() & (sites[pert].astype(str).str.strip() != ""), None)
        if empty_label is not None:
            sites["_pert"] = sites["_pert"].fillna(empty_label)
        self.dropped["no_perturbation"] = int(sites["_pert"].isna().sum())
        sites = sites[sites["_pert"].notna()]
        self.perturbation_column = pert
        if metadata is not None:
            n = len(sites)
            sites = self._join_metadata(sites, Path(metadata), pert, label_column)
            self.dropped["no_metadata"] = n - len(sites)
        elif label_column is not None:
            raise ValueError("CellPaintingDataset(label_column=...): needs metadata= (the perturbation -> label table)")
        else:
            sites = sites.assign(_label=sites["_pert"].astype(str))
        sites = sites.sort_values(["Metadata_Plate", "Metadata_Well", "Metadata_Site"], kind="stable")
        sites = sites.reset_index(drop=True)
        if sites.empty:
            raise CellPaintingFormatError(f"no labelled sites: no load_data.csv row matched the plate map; {_LAYOUT}")
        self.classes = sorted(set(sites["_label"]))
        groups = sites["Metadata_Plate"] if split_by == "plate" else sites["Metadata_Plate"] + "/" + sites["Metadata_Well"]
        self.split_of = self._assign(sorted(set(groups)), val_fraction, test_fraction, seed)
        keep = np.ones(len(sites), bool) if split == "all" else (groups.map(self.split_of) == split).to_numpy()
        self.frame = sites[keep].reset_index(drop=True)
        self.labels = np.array([self.classes.index(v) for v in self.frame["_label"]], dtype=np.int64)
        self._dirs: dict[tuple[str, str], Path] = {}
        self._init_common(vocab or cell_painting_site_vocab(), None, "stain", normalizer, transform)

    # -- tables ----------------------------------------------------------------------------
    def _load_data_files(self, load_data: Any) -> list[Path]:
        if load_data is not None:
            files = [Path(p) for p in ([load_data] if isinstance(load_data, (str, os.PathLike)) else load_data)]
            absent = [str(p) for p in files if not p.is_file()]
            if absent:
                raise CellPaintingMissingError(f"load_data.csv file(s) not found: {', '.join(absent)}; {_LAYOUT}")
            return files
        base = self.root / "workspace" / "load_data_csv"
        files = sorted((base if base.is_dir() else self.root).rglob("load_data.csv"))
        if not files:
            raise CellPaintingMissingError(f"no load_data.csv under {self.root}; {_LAYOUT}")
        return files

    def _platemap(self, platemap: str | os.PathLike[str] | None) -> tuple[pd.DataFrame, str]:
        """The plate map as ``Metadata_Well`` (+ ``Metadata_Plate``) and the perturbation column."""
        if platemap is not None:
            path = Path(platemap)
            df = _read_table(path)
            return self._tidy_map(df, path, _first(df, _PLATE_COLUMNS, path, "plate map", required=False))
        barcodes = sorted((self.root / "metadata" / "platemaps").glob("*/barcode_platemap.csv"))
        if not barcodes:
            raise CellPaintingMissingError(f"no plate map: neither platemap= nor "
                                           f"{self.root}/metadata/platemaps/<batch>/barcode_platemap.csv; {_LAYOUT}")  # fmt: skip
        parts, pert = [], ""
        for bc in barcodes:
            table = _read_table(bc)
            _need(table, ("Assay_Plate_Barcode", "Plate_Map_Name"), bc, "barcode_platemap.csv")
            for plate, name in zip(table["Assay_Plate_Barcode"].astype(str), table["Plate_Map_Name"].astype(str), strict=True):
                path = bc.parent / "platemap" / f"{name}.txt"
                df, pert = self._tidy_map(_read_table(path), path, None)
                parts.append(df.assign(Metadata_Plate=plate))
        return pd.concat(parts, ignore_index=True), pert

    @staticmethod
    def _tidy_map(df: pd.DataFrame, path: Path, plate_col: str | None) -> tuple[pd.DataFrame, str]:
        well = _first(df, _WELL_COLUMNS, path, "plate map")
        pert = _first(df, _PERT_COLUMNS, path, "plate map")
        assert well is not None and pert is not None
        cols = [well, pert] + ([plate_col] if plate_col else [])
        out = df[cols].rename(columns={well: "Metadata_Well", **({plate_col: "Metadata_Plate"} if plate_col else {})})
        out["Metadata_Well"] = out["Metadata_Well"].map(_norm_well)
        if plate_col:
            out["Metadata_Plate"] = out["Metadata_Plate"].astype(str)
        return out, pert

    @staticmethod
    def _join_metadata(sites: pd.DataFrame, path: Path, pert: str, label_column: str | None) -> pd.DataFrame:
        meta = _read_table(path)
        key = pert if pert in meta.columns else _first(meta, _PERT_COLUMNS, path, "perturbation metadata")
        if label_column is None:
            raise ValueError(f"CellPaintingDataset(metadata={str(path)!r}): give label_column= (one of "
                             f"{', '.join(map(str, meta.columns))})")  # fmt: skip
        _need(meta, [label_column], path, "perturbation metadata")
        table = meta[[key, label_column]].drop_duplicates(subset=[key]).rename(columns={key: "_pert", label_column: "_label"})
        table["_pert"] = table["_pert"].astype(str)
        out = sites.assign(_pert=sites["_pert"].astype(str)).merge(table, on="_pert", how="left")
        out = out[out["_label"].notna()]
        return out.assign(_label=out["_label"].astype(str))

    @staticmethod
    def _assign(groups: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: need fractions in [0, 1) "
                             "summing to less than 1")  # fmt: skip
        order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
        n = len(order)

        def count(f: float) -> int:
            return min(max(round(f * n), 1 if f > 0 else 0), n - 1)

        n_test = count(test_fraction)
        n_val = min(count(val_fraction), max(0, n - n_test - 1))
        return {g: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, g in enumerate(order)}

    # -- items -----------------------------------------------------------------------------
    def _resolve(self, row: pd.Series, channel: str) -> Path:
        pathname = str(row[f"PathName_Orig{channel}"]).strip()
        key = (pathname, str(row["_csv_dir"]))
        if key not in self._dirs:
            self._dirs[key] = self._find_dir(pathname, Path(row["_csv_dir"]))
        return self._dirs[key] / str(row[f"FileName_Orig{channel}"]).strip()

    def _find_dir(self, pathname: str, csv_dir: Path) -> Path:
        as_given = Path(pathname)
        if "://" not in pathname and (as_given if as_given.is_absolute() else csv_dir / as_given).is_dir():
            return as_given if as_given.is_absolute() else csv_dir / as_given
        stripped = pathname.split("://", 1)[1].split("/", 1)[-1] if "://" in pathname else pathname
        parts = [p for p in PurePosixPath(stripped.replace("\\", "/")).parts if p not in ("/", "")]
        for i in range(len(parts)):
            cand = self.root.joinpath(*parts[i:])
            if cand.is_dir():
                return cand
        raise CellPaintingMissingError(f"image folder {pathname!r} (a PathName in {csv_dir}/load_data.csv) has no "
                                       f"trailing part found under {self.root}; {_LAYOUT}")  # fmt: skip

    def path(self, index: int, channel: str) -> Path:
        """File of ``channel`` (``"DNA"``, ``"ER"``, ...) of site ``index``."""
        return self._resolve(self.frame.iloc[index], channel)

    def __len__(self) -> int:
        return len(self.frame)

    def read(self, index: int) -> np.ndarray:
        row = self.frame.iloc[index]
        planes = []
        for ch in self.orig:
            path = self._resolve(row, ch)
            if not path.is_file():
                raise CellPaintingMissingError(f"Cell Painting image listed in load_data.csv not found: {path} "
                                               f"(channel {ch}, plate {row['Metadata_Plate']}, well "
                                               f"{row['Metadata_Well']}, site {row['Metadata_Site']}); {_LAYOUT}")  # fmt: skip
            da = read_image(path)
            if da.shape[0] != 1:
                raise ImageReadError(f"{path}: expected one plane per channel file, found {da.shape[0]}", path=path)
            planes.append(np.asarray(da.values[0], dtype=np.float32))
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise ImageReadError(f"site {row['Metadata_Plate']}/{row['Metadata_Well']}/s{row['Metadata_Site']}: "
                                 f"channel images differ in size {sorted(shapes)}")  # fmt: skip
        values = np.stack(planes)
        if self.image_size is not None and values.shape[1:] != (self.image_size, self.image_size):
            x = torch.from_numpy(values)[None]
            values = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                                   antialias=True)[0].numpy()  # fmt: skip
        return values

    def target(self, index: int) -> Tensor:
        return torch.tensor(int(self.labels[index]), dtype=torch.long)


class CellPaintingDataModule(PublicImageDataModule):
    """Cell Painting sites split by plate or well (see :class:`CellPaintingDataset`), batches
    ``[B, 5, S, S]`` (fields resized to ``image_size``), the five stain keys, one class per label.

    Args:
        root: the copied Cell Painting Gallery source folder (the one argument a user sets).
        load_data / platemap / metadata / label_column: see :class:`CellPaintingDataset`.
        empty_label / brightfield / split_by / val_fraction / test_fraction: see
            :class:`CellPaintingDataset`.
        image_size: side the fields are resized to.
        normalize / norm_items / flip_rot / hcs / batch_size / num_workers / seed: see
            :class:`~chanformer.datasets.imaging.public.PublicImageDataModule`.
    """

    def __init__(
        self,
        root: str,
        load_data: list[str] | None = None,
        platemap: str | None = None,
        metadata: str | None = None,
        label_column: str | None = None,
        empty_label: str | None = "DMSO",
        brightfield: bool = False,
        image_size: int = 224,
        split_by: Literal["plate", "well"] = "plate",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        normalize: bool = True,
        norm_items: int = 512,
        flip_rot: bool = False,
        hcs: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.ds_kwargs: dict[str, Any] = dict(load_data=load_data, platemap=platemap, metadata=metadata,
                                              label_column=label_column, empty_label=empty_label,
                                              brightfield=brightfield, image_size=image_size, split_by=split_by,
                                              val_fraction=val_fraction, test_fraction=test_fraction)  # fmt: skip
        self.image_size = image_size
        super().__init__(root, normalize=normalize, norm_items=norm_items, flip_rot=flip_rot, hcs=hcs,
                         batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip

    def build_vocab(self) -> ChannelVocab:
        return cell_painting_site_vocab()

    def make_dataset(self, split: str) -> CellPaintingDataset:
        return CellPaintingDataset(self.root, split, seed=self.seed, vocab=self.vocab, **self.ds_kwargs)  # type: ignore[arg-type]
