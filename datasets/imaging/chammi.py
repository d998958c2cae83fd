"""CHAMMI (channel-adaptive models in microscopy imaging) read from the folder its publishers distribute.

CHAMMI (Chen et al., NeurIPS 2023 Datasets and Benchmarks) gathers single-cell crops from three
sources with different channel sets. Download ``CHAMMI.zip`` from Zenodo
(https://zenodo.org/records/7988357, DOI 10.5281/zenodo.7988357) and unpack it::

    <root>/Allen/enriched_meta.csv     WTC-11 hiPSC cells (the paper's "WTC-11"), 3 channels
    <root>/Allen/...png                one file per cell, path given by the CSV's file_path
    <root>/HPA/enriched_meta.csv       Human Protein Atlas cells, 4 channels
    <root>/HPA/...png
    <root>/CP/enriched_meta.csv        Cell Painting cells, 5 channels
    <root>/CP/...png

``<root>`` is the folder holding ``Allen/``, ``HPA/`` and ``CP/`` (named ``CHAMMI`` in the archive;
a parent holding ``CHAMMI/`` is accepted too). Each ``enriched_meta.csv`` lists one cell per row;
the columns read are ``file_path`` (relative to ``<root>``; its first component is the
sub-dataset), ``Label`` (the class), ``train_test_split`` (``Train`` or the name of the test task
the row belongs to), one boolean column per test task (``Task_one``, ``Task_two``, ...: the rows of
that task, as the benchmark's evaluation selects them), ``channel_width`` (width of one channel
in the strip; optional) and ``ID`` (optional). A single merged CSV with the same columns
(``metadata_csv=``, e.g. the ``morphem70k_v2.csv`` of the authors' training code, or an
``enriched_meta.csv`` in ``<root>`` itself) can replace the three files.

Each image is a greyscale strip ``[H, C * W]``: the ``C`` channels side by side, left to right.
The reader cuts it into ``[C, H, W]`` (:func:`fold_strip`). Channels (:data:`CHAMMI_CHANNELS`):
``Allen`` nucleus, membrane, protein; ``HPA`` microtubules, protein, nucleus, ER; ``CP`` nucleus
(DNA), ER, RNA, AGP (actin, Golgi, plasma membrane), mitochondria; mapped to the stain keys of
:func:`chammi_vocab` (the Cell Painting keys of
:func:`~chanformer.datasets.imaging.sim.cell_painting_vocab` plus ``stain/Membrane``,
``stain/Protein``, ``stain/Microtubules``), so the nucleus of all three sources is one channel.

Nothing is ever downloaded: a missing folder or file raises :class:`CHAMMIMissingError`; a CSV
whose columns differ from the above raises :class:`CHAMMIFormatError` naming the columns found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from chanformer.batch import ChannelSample
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError
from chanformer.datasets.base import stratified_split
from chanformer.datasets.imaging.datasets import ChannelNormalizer
from chanformer.datasets.imaging.microscopy import read_image, stain_key
from chanformer.datasets.imaging.public import LabelledImageDataset, PublicDataMissingError, PublicImageDataModule
from chanformer.datasets.imaging.sim import CELL_PAINTING_STAINS
from chanformer.spec import DataSpec

__all__ = [
    "CHAMMI_CHANNELS",
    "CHAMMI_SUBSETS",
    "CHAMMI_TASKS",
    "CHAMMI_URL",
    "CHAMMIDataModule",
    "CHAMMIDataset",
    "CHAMMIFormatError",
    "CHAMMIMissingError",
    "chammi_vocab",
    "fold_strip",
]

CHAMMI_URL = "https://zenodo.org/records/7988357"
#: The three sub-datasets (folder names), in the order their classes are numbered.
CHAMMI_SUBSETS: tuple[str, ...] = ("Allen", "HPA", "CP")
#: Channel keys of each sub-dataset, in strip order (left to right).
CHAMMI_CHANNELS: dict[str, tuple[str, ...]] = {
    "Allen": ("stain/DAPI", "stain/Membrane", "stain/Protein"),
    "HPA": ("stain/Microtubules", "stain/Protein", "stain/DAPI", "stain/ER"),
    "CP": ("stain/DAPI", "stain/ER", "stain/RNA", "stain/AGP", "stain/Mito"),
}
#: Test tasks of the benchmark per sub-dataset (``train_test_split`` values besides ``Train``).
CHAMMI_TASKS: dict[str, tuple[str, ...]] = {
    "Allen": ("Task_one", "Task_two"),
    "HPA": ("Task_one", "Task_two", "Task_three"),
    "CP": ("Task_one", "Task_two", "Task_three", "Task_four"),
}
REQUIRED_COLUMNS = ("file_path", "Label", "train_test_split")
_EXTRA_STAINS = {"stain/Membrane": "cell membrane (CellMask, WTC-11)",
                 "stain/Protein": "protein of interest (GFP-tagged in WTC-11, antibody in HPA)",
                 "stain/Microtubules": "microtubules (anti-tubulin, HPA)"}  # fmt: skip
_LAYOUT = (
    "expected the CHAMMI layout <root>/Allen/enriched_meta.csv, <root>/HPA/enriched_meta.csv, "
    "<root>/CP/enriched_meta.csv (columns file_path, Label, train_test_split, Task_* and channel_width) and the "
    "per-cell PNG strips they list under <root>/Allen/, <root>/HPA/, <root>/CP/; download CHAMMI.zip yourself from "
    f"{CHAMMI_URL} and unpack it; chanformer never downloads it"
)


class CHAMMIMissingError(PublicDataMissingError):
    """The CHAMMI folder, a metadata CSV or a listed image is missing."""


class CHAMMIFormatError(ValueError):
    """A CHAMMI metadata CSV or image is not what the published files hold (names the file and what differs)."""


def chammi_vocab() -> ChannelVocab:
    """Stain vocabulary of CHAMMI: the five Cell Painting keys (``stain/DAPI`` = nucleus,
    ``stain/ER``, ``stain/RNA``, ``stain/AGP``, ``stain/Mito``) plus ``stain/Membrane``,
    ``stain/Protein`` and ``stain/Microtubules``."""
    chans = [Channel(k, kind="stain", wavelength_nm=w) for k, w in CELL_PAINTING_STAINS.items()]
    chans += [Channel(k, kind="stain") for k in _EXTRA_STAINS]
    return ChannelVocab("chammi", chans)


def fold_strip(strip: np.ndarray, n_channels: int, channel_width: int | None = None, source: Any = "image") -> np.ndarray:
    """Cut a ``[H, C * W]`` strip (channels side by side) into ``[C, H, W]``.

    ``channel_width`` (``W``) defaults to the strip width divided by ``n_channels``; a width that
    does not match raises :class:`CHAMMIFormatError` naming ``source``.
    """
    if strip.ndim != 2:
        raise CHAMMIFormatError(f"{source}: expected a greyscale strip [H, C*W], got shape {strip.shape}")
    h, total = strip.shape
    w = total // n_channels if channel_width is None else int(channel_width)
    if w <= 0 or w * n_channels != total:
        raise CHAMMIFormatError(f"{source}: strip width {total} is not {n_channels} channels x channel_width {w}")
    return np.ascontiguousarray(strip.reshape(h, n_channels, w).transpose(1, 0, 2))


def chammi_folder(root: str | os.PathLike[str]) -> Path:
    """The folder holding ``Allen/``, ``HPA/``, ``CP/`` under ``root`` (``root`` itself or ``root/CHAMMI``)."""
    root = Path(root)
    if not root.is_dir():
        raise CHAMMIMissingError(f"CHAMMI root folder not found: {root}; {_LAYOUT}")
    for cand in (root, root / "CHAMMI"):
        if any((cand / s).is_dir() for s in CHAMMI_SUBSETS) or (cand / "enriched_meta.csv").is_file():
            return cand
    raise CHAMMIMissingError(f"no CHAMMI sub-dataset folders (Allen/, HPA/, CP/) under {root}; {_LAYOUT}")


def read_metadata(path: Path) -> pd.DataFrame:
    """One ``enriched_meta.csv`` (or merged CSV) with its columns checked; adds ``subset``."""
    if not path.is_file():
        raise CHAMMIMissingError(f"CHAMMI metadata file not found: {path}; {_LAYOUT}")
    df = pd.read_csv(path, low_memory=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CHAMMIFormatError(
            f"{path}: column(s) {', '.join(missing)} missing; columns found: {', '.join(map(str, df.columns))}; "
            f"expected the CHAMMI enriched_meta.csv columns {', '.join(REQUIRED_COLUMNS)} (+ Task_* booleans, "
            "channel_width, ID)"
        )
    df = df.copy()
    df["file_path"] = df["file_path"].astype(str).str.replace("\\", "/", regex=False).str.lstrip("./")
    df["subset"] = df["file_path"].str.split("/", n=1).str[0]
    odd = sorted(set(df["subset"]) - set(CHAMMI_SUBSETS))
    if odd:
        raise CHAMMIFormatError(f"{path}: file_path entries start with {', '.join(odd)}, expected one of "
                                f"{', '.join(CHAMMI_SUBSETS)} (paths relative to the CHAMMI root)")  # fmt: skip
    df["Label"] = df["Label"].astype(str)
    df["train_test_split"] = df["train_test_split"].astype(str)
    return df


def _as_bool(col: pd.Series) -> np.ndarray:
    if col.dtype == bool:
        return col.to_numpy()
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "1.0", "yes")).to_numpy()


class CHAMMIDataset(LabelledImageDataset):
    """CHAMMI single-cell images as :class:`~chanformer.batch.ChannelSample` s with ragged channel sets.

    Each item: values ``[C, H, W]`` float32 with ``C`` = 3 (Allen), 4 (HPA) or 5 (CP) (raw pixel
    values, 0-255 for the published 8-bit PNGs, unless a ``normalizer`` is given), channel ids of
    :data:`CHAMMI_CHANNELS` in :func:`chammi_vocab` (or the ``channels`` asked for), target = index of
    the ``label_column`` value into :attr:`classes`. With ``image_size`` the cell is scaled (aspect
    kept, bilinear, antialiased) so its longer side is ``image_size`` and zero-padded, centred, to
    ``[C, image_size, image_size]`` (the padding is added after normalisation, so it is 0 in
    normalised units); without it the native size is kept. :attr:`frame` holds the metadata rows
    (``subset``, ``ID``, ``file_path``, ...) in item order, :meth:`subset` the sub-dataset of an item.

    :attr:`classes`: the ``label_column`` values of the ``Train`` rows of the selected sub-datasets
    (sub-datasets in :data:`CHAMMI_SUBSETS` order, values sorted within each), followed by values
    found only in the selected split (the novel classes of ``Task_three``/``Task_four``, listed in
    :attr:`novel_classes`).

    Args:
        root: the CHAMMI folder (see the module docstring).
        split: ``"Train"`` (or ``"train"``), a test task (``"Task_one"`` ... ``"Task_four"``; rows where
            the task's boolean column is true, or whose ``train_test_split`` names it when the column is
            absent) or ``"all"``.
        subsets: sub-datasets to read (default all three).
        metadata_csv: one merged CSV instead of ``<root>/<subset>/enriched_meta.csv``.
        label_column: the target column (default ``Label``; e.g. ``cell_type``, ``Plate``).
        channels: stain keys or names to keep, in this order (each sub-dataset keeps those it has).
        image_size: common square size, or ``None`` for native sizes.
        indices: keep only these rows (after the split selection), e.g. a validation subset.
        vocab / normalizer / transform: see :class:`~chanformer.datasets.imaging.public.LabelledImageDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "Train",
        *,
        subsets: Sequence[str] | None = None,
        metadata_csv: str | os.PathLike[str] | None = None,
        label_column: str = "Label",
        channels: Iterable[str] | None = None,
        image_size: int | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        vocab: ChannelVocab | None = None,
        normalizer: ChannelNormalizer | None = None,
        transform: Any = None,
    ) -> None:
        self.root = Path(root)
        self.data_dir = chammi_folder(self.root)
        subsets = list(subsets or CHAMMI_SUBSETS)
        bad = [s for s in subsets if s not in CHAMMI_SUBSETS]
        if bad or not subsets:
            raise ValueError(f"CHAMMIDataset(subsets={subsets!r}): expected some of {', '.join(CHAMMI_SUBSETS)}")
        self.subsets = [s for s in CHAMMI_SUBSETS if s in subsets]
        self.image_size = image_size
        frame = self._load(metadata_csv)
        frame = frame[frame["subset"].isin(self.subsets)]
        if label_column not in frame.columns:
            raise CHAMMIFormatError(f"CHAMMIDataset(label_column={label_column!r}): no such column; columns found: "
                                    f"{', '.join(map(str, frame.columns))}")  # fmt: skip
        frame = frame.assign(_label=frame[label_column].astype(str))
        self.label_column = label_column
        is_train = frame["train_test_split"].str.lower() == "train"
        self.classes = [c for s in self.subsets for c in sorted(set(frame.loc[is_train & (frame["subset"] == s), "_label"]))]
        self.split = "Train" if split.lower() == "train" else split
        if self.split == "Train":
            keep = is_train.to_numpy()
        elif self.split == "all":
            keep = np.ones(len(frame), dtype=bool)
        else:
            tasks = sorted({t for s in self.subsets for t in CHAMMI_TASKS[s]} | set(frame["train_test_split"]) - {"Train"})
            if self.split not in tasks:
                raise ValueError(f"CHAMMIDataset(split={split!r}): expected 'Train', 'all' or one of {', '.join(tasks)}")
            keep = (_as_bool(frame[self.split]) if self.split in frame.columns
                    else (frame["train_test_split"] == self.split).to_numpy())  # fmt: skip
        rows = frame[keep].reset_index(drop=True)
        if indices is not None:
            rows = rows.iloc[np.asarray(indices, dtype=np.int64)].reset_index(drop=True)
        self.novel_classes = sorted(set(rows["_label"]) - set(self.classes))
        self.classes += self.novel_classes
        self.frame = rows
        self.labels = np.array([self.classes.index(v) for v in rows["_label"]], dtype=np.int64)
        self.files = [self.data_dir / p for p in rows["file_path"]]
        self.vocab, self.normalizer, self.transform = vocab or chammi_vocab(), normalizer, transform
        self.all_keys = [k for k in self.vocab.keys if any(k in CHAMMI_CHANNELS[s] for s in self.subsets)]
        self._select(channels)

    def _load(self, metadata_csv: str | os.PathLike[str] | None) -> pd.DataFrame:
        if metadata_csv is not None:
            return read_metadata(Path(metadata_csv))
        per_subset = [self.data_dir / s / "enriched_meta.csv" for s in self.subsets]
        if all(p.is_file() for p in per_subset):
            return pd.concat([read_metadata(p) for p in per_subset], ignore_index=True)
        merged = self.data_dir / "enriched_meta.csv"
        if merged.is_file():
            return read_metadata(merged)
        absent = [str(p) for p in per_subset if not p.is_file()]
        raise CHAMMIMissingError(f"CHAMMI metadata file(s) not found: {', '.join(absent)}; {_LAYOUT}")

    def _select(self, channels: Iterable[str] | None) -> None:
        """Per-sub-dataset strip indices and keys of the channels kept."""
        self.subset_index: dict[str, list[int]] = {}
        self.subset_keys: dict[str, list[str]] = {}
        wanted = None if channels is None else [stain_key(c) for c in channels]
        if wanted is not None:
            unknown = [k for k in wanted if k not in self.all_keys]
            if unknown:
                raise UnknownChannelError(unknown, f"CHAMMI channels of {', '.join(self.subsets)} ({', '.join(self.all_keys)})")
            if len(set(wanted)) != len(wanted) or not wanted:
                raise ValueError(f"CHAMMIDataset(channels={list(wanted)!r}): empty or listed twice")
        for s in self.subsets:
            keys = list(CHAMMI_CHANNELS[s]) if wanted is None else [k for k in wanted if k in CHAMMI_CHANNELS[s]]
            if not keys:
                raise ValueError(f"CHAMMIDataset: sub-dataset {s} has none of the channels {wanted} "
                                 f"(it has {', '.join(CHAMMI_CHANNELS[s])}); drop it with subsets=")  # fmt: skip
            self.subset_index[s] = [CHAMMI_CHANNELS[s].index(k) for k in keys]
            self.subset_keys[s] = keys
        self.channel_keys = [k for k in self.all_keys if any(k in v for v in self.subset_keys.values())]
        self.channel_index = [self.all_keys.index(k) for k in self.channel_keys]
        self.channel_ids = torch.tensor(self.vocab.ids(self.channel_keys), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, index: int) -> str:
        return str(self.frame.at[index, "subset"])

    def keys(self, index: int) -> list[str]:
        """Channel keys of item ``index`` (its sub-dataset's, after ``channels=``)."""
        return self.subset_keys[self.subset(index)]

    def read(self, index: int) -> np.ndarray:
        """All channels of item ``index`` at native size, ``[C_subset, H, W]`` (strip order)."""
        path, sub = self.files[index], self.subset(index)
        if not path.is_file():
            raise CHAMMIMissingError(f"CHAMMI image listed in the metadata not found: {path}; {_LAYOUT}")
        da = read_image(path)
        if da.shape[0] != 1:
            raise CHAMMIFormatError(f"{path}: expected a greyscale strip, the file has {da.shape[0]} channels")
        width = self.frame.at[index, "channel_width"] if "channel_width" in self.frame.columns else None
        width = None if width is None or pd.isna(width) else int(width)
        return fold_strip(np.asarray(da.values[0]), len(CHAMMI_CHANNELS[sub]), width, source=path)

    def raw(self, index: int) -> np.ndarray:
        """The kept channels of item ``index``, unnormalised, scaled to fit ``image_size`` (unpadded)."""
        values = self.read(index)[self.subset_index[self.subset(index)]]
        if self.image_size is None:
            return values
        h, w = values.shape[1:]
        scale = self.image_size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size == (h, w):
            return values
        x = torch.from_numpy(values.astype(np.float32))[None]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0].numpy()

    def target(self, index: int) -> Tensor:
        return torch.tensor(int(self.labels[index]), dtype=torch.long)

    def __getitem__(self, index: int) -> ChannelSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"CHAMMIDataset index {index} out of range for {len(self)} items")
        index = int(index) % len(self)
        keys = self.keys(index)
        values = self.raw(index)
        if self.normalizer is not None:
            out = self.normalizer(values, keys, source=f"CHAMMIDataset item {index} ({self.files[index]})")
        else:
            out = np.asarray(values, dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        if self.image_size is not None:
            h, w = x.shape[1:]
            top, left = (self.image_size - h) // 2, (self.image_size - w) // 2
            x = F.pad(x, (left, self.image_size - w - left, top, self.image_size - h - top))
        sample = ChannelSample(x, torch.tensor(self.vocab.ids(keys), dtype=torch.long), target=self.target(index))
        return self.transform(sample) if self.transform is not None else sample

    def fit_normalizer(self, max_items: int = 512) -> ChannelNormalizer:
        """Per-stain mean/std over up to ``max_items`` evenly strided items (a stain shared by several
        sub-datasets, such as ``stain/DAPI``, gets one statistic); sets :attr:`normalizer`."""
        step = max(1, len(self) // max(1, max_items))
        self.normalizer = ChannelNormalizer("meanstd").fit((self.raw(i), self.keys(i)) for i in range(0, len(self), step))
        return self.normalizer


class CHAMMIDataModule(PublicImageDataModule):
    """CHAMMI classification of the training labels: batches ``[B, C_max, S, S]`` with ragged
    channel sets (3, 4 or 5 stains, padded with ``mask=False``), :func:`chammi_vocab` ids.

    * **train**: the ``Train`` rows minus the validation draw;
    * **val**: ``val_fraction`` of the ``Train`` rows, stratified by class, drawn with ``seed``
      (the benchmark defines no validation split);
    * **test**: the rows of ``test_task`` (default ``Task_one``, same distribution as training;
      ``Task_two`` is out-of-distribution with known classes). Tasks whose labels are not training
      classes (``Task_three``, ``Task_four``: novel classes, evaluated in the benchmark by 1-NN on
      embeddings) raise ``ValueError``.

    Args:
        root: the CHAMMI folder (the one argument a user sets).
        subsets / metadata_csv / label_column / channels: see :class:`CHAMMIDataset`.
        image_size: common square size the cells are scaled and padded to.
        val_fraction / test_task: above.
        normalize / norm_items / flip_rot / hcs / hcs_min_channels / batch_size / num_workers / seed: see
            :class:`~chanformer.datasets.imaging.public.PublicImageDataModule`.
    """

    def __init__(
        self,
        root: str,
        subsets: list[str] | None = None,
        metadata_csv: str | None = None,
        label_column: str = "Label",
        channels: list[str] | None = None,
        image_size: int = 224,
        val_fraction: float = 0.1,
        test_task: str = "Task_one",
        normalize: bool = True,
        norm_items: int = 512,
        flip_rot: bool = False,
        hcs: bool = False,
        hcs_min_channels: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.subsets, self.metadata_csv, self.label_column = subsets, metadata_csv, label_column
        self.channels, self.image_size, self.val_fraction, self.test_task = channels, image_size, val_fraction, test_task
        self._split_idx: tuple[np.ndarray, np.ndarray] | None = None
        super().__init__(root, normalize=normalize, norm_items=norm_items, flip_rot=flip_rot, hcs=hcs,
                         hcs_min_channels=hcs_min_channels, batch_size=batch_size, num_workers=num_workers,
                         seed=seed)  # fmt: skip

    def build_vocab(self) -> ChannelVocab:
        return chammi_vocab()

    def _dataset(self, split: str, indices: np.ndarray | None = None) -> CHAMMIDataset:
        return CHAMMIDataset(self.root, split, subsets=self.subsets, metadata_csv=self.metadata_csv,
                             label_column=self.label_column, channels=self.channels, image_size=self.image_size,
                             indices=indices, vocab=self.vocab)  # fmt: skip

    def make_dataset(self, split: str) -> CHAMMIDataset:
        if self._split_idx is None:
            full = self._dataset("Train")
            self._split_idx = stratified_split(full.labels, self.val_fraction, self.seed)
        train_idx, val_idx = self._split_idx
        if split == "train":
            return self._dataset("Train", train_idx)
        if split == "val":
            return self._dataset("Train", val_idx)
        ds = self._dataset(self.test_task)
        if ds.novel_classes:
            raise ValueError(
                f"CHAMMIDataModule(test_task={self.test_task!r}): its labels {', '.join(ds.novel_classes)} are not "
                "training classes (a novel-class task, evaluated in the CHAMMI benchmark by 1-NN on embeddings); "
                "use test_task='Task_one' or 'Task_two'"
            )
        return ds

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.channel_keys = list(self.train_dataset.channel_keys)  # type: ignore[union-attr]

    @property
    def spec(self) -> DataSpec:
        n = self.num_classes
        channels = self.channel_keys if self.subsets is not None and len(self.subsets) == 1 else None
        return DataSpec(vocab=self.vocab, image_size=self.image_size, num_classes=n, class_names=list(self.classes or []),
                        channels=channels)  # fmt: skip
