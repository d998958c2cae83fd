"""Bags of instances from a flat table (CSV or Parquet), and a k-fold cross-validation datamodule.

A bag table holds one instance per row: a bag label column, a bag id column and the instance
feature columns. The classic multiple-instance benchmarks (Musk1/Musk2, Dietterich et al. 1997)
ship in this layout without a header: column 0 the bag label (1 positive, 0 or -1 negative),
column 1 the bag id, then 166 features; those positions are the defaults here.

:func:`read_bag_table` checks the table and groups its rows into :class:`~chanformer.datasets.wsi.store.Bag`
objects (``coords[:, 0]`` is the instance's row in the table, so attention can be traced back to
rows; ``coords[:, 1]`` is 0), which :meth:`chanformer.batch.BagBatch.collate` pads into batches.
:class:`BagTableDataModule` serves fold ``fold`` of a stratified ``n_folds``-fold split (drawn
with ``repeat`` as its seed) as the test set, the other folds as training (optionally minus a
stratified validation share), and standardises features with statistics of the training bags only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from chanformer.datasets.wsi.bags import BagLoaders
from chanformer.datasets.wsi.store import Bag
from chanformer.spec import DataSpec

__all__ = [
    "BagTable",
    "BagTableDataModule",
    "BagTableError",
    "ListBagDataset",
    "pooled_bag_features",
    "read_bag_table",
    "standardize_bags",
    "stratified_folds",
]

ColumnRef = int | str


class BagTableError(ValueError):
    """A bag table that cannot be used; the message names the file and the column, row or bag."""


@dataclass
class BagTable:
    """The bags of one table.

    Attributes:
        bags: one :class:`~chanformer.datasets.wsi.store.Bag` per bag id, in order of first appearance;
            ``label`` is the class index.
        class_names: name of each class index (``["negative", "positive"]`` for 0/1 or -1/1 labels).
        feature_names: the feature columns (names, or positions as strings for a table without header).
        source: the file read.
    """

    bags: list[Bag]
    class_names: list[str]
    feature_names: list[str]
    source: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([b.label for b in self.bags], dtype=np.int64)

    @property
    def feature_dim(self) -> int:
        return len(self.feature_names)

    @property
    def n_instances(self) -> int:
        return sum(len(b.features) for b in self.bags)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_has_header(path: Path, sep: str, skip: set[int]) -> bool:
    """A first row none of whose cells (outside the label and bag-id positions) reads as a number is a header."""
    try:
        first = pd.read_csv(path, header=None, nrows=1, dtype=str, sep=sep, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise BagTableError(f"bag table {path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BagTableError(f"bag table {path}: cannot be parsed as CSV ({e})") from e
    cells = [str(c).strip() for i, c in enumerate(first.iloc[0].tolist()) if i not in skip]
    return bool(cells) and not any(_is_number(c) for c in cells if c)


def _load_frame(path: Path, header: bool | None, refs: Sequence[ColumnRef]) -> tuple[pd.DataFrame, int]:
    """The table as a frame and the file line of its first data row (0 for Parquet: rows are reported as rows)."""
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            raise BagTableError(f"bag table {path}: cannot be read as Parquet ({type(e).__name__}: {e})") from e
        return frame, 0
    if not (path.suffix.lower() in (".csv", ".txt", ".tsv") or suffix in (".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")):
        raise BagTableError(f"bag table {path}: unknown format {path.suffix!r} (expected .csv, .tsv or .parquet)")
    named = any(isinstance(r, str) for r in refs)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    detected = header is None
    if header is None:
        header = _csv_has_header(path, sep, {r for r in refs if isinstance(r, int)})
    if not header and named:
        bad = next(r for r in refs if isinstance(r, str))
        why = "the file has no header row (cells of its first row are numbers)" if detected else "header=False"
        raise BagTableError(f"bag table {path}: column {bad!r} is named, but {why}; give columns by position instead")
    try:
        frame = pd.read_csv(path, header=0 if header else None, sep=sep, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BagTableError(f"bag table {path}: cannot be parsed as CSV ({e})") from e
    return frame, 2 if header else 1


def _column(frame: pd.DataFrame, ref: ColumnRef, role: str, path: Path) -> Any:
    """The frame column a position or a name refers to."""
    cols = list(frame.columns)
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise BagTableError(f"bag table {path}: {role} column {ref!r} must be a position (int) or a name (str)")
    if isinstance(ref, int):
        if not 0 <= ref < len(cols):
            raise BagTableError(f"bag table {path}: {role} column {ref} does not exist (the table has {len(cols)} columns, "
                                f"positions 0..{len(cols) - 1})")  # fmt: skip
        return cols[ref]
    if ref not in cols:
        shown = ", ".join(repr(str(c)) for c in cols[:8]) + (", ..." if len(cols) > 8 else "")
        raise BagTableError(f"bag table {path}: no {role} column named {ref!r} (columns: {shown})")
    return ref


def _where(path: Path, first_line: int, row: int) -> str:
    return f"line {first_line + row}" if first_line else f"row {row}"


def _numeric(frame: pd.DataFrame, col: Any, role: str, path: Path, first_line: int) -> np.ndarray:
    """Column ``col`` as float64; a cell that is not a number or is missing is an error naming it."""
    raw = frame[col]
    if pd.api.types.is_bool_dtype(raw):
        raise BagTableError(f"bag table {path}: {role} column {col!r} holds true/false values, not numbers")
    values = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
    if not pd.api.types.is_numeric_dtype(values):
        raise BagTableError(f"bag table {path}: {role} column {col!r} holds {values.dtype} values, not numbers")
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argmax(bad))
        cell = raw.iloc[row]
        what = "is empty" if pd.isna(cell) else (f"{cell!r} is not a number" if not _is_number(str(cell)) else f"is {cell}")
        n = int(bad.sum())
        raise BagTableError(f"bag table {path}: {role} column {col!r}, {_where(path, first_line, row)}: {what}"
                            + (f" ({n} such cells in this column)" if n > 1 else ""))  # fmt: skip
    return arr


def _class_indices(values: pd.Series, path: Path, col: Any, first_line: int) -> tuple[np.ndarray, list[str]]:
    """Bag labels -> class indices: -1/1 and 0/1 -> 0/1; other non-negative integers as they are;
    anything else (text, other numbers) -> the index of the sorted distinct value."""
    missing = values.isna().to_numpy()
    if missing.any():
        where = _where(path, first_line, int(np.argmax(missing)))
        raise BagTableError(f"bag table {path}: label column {col!r}, {where}: is empty")
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        arr = numeric.to_numpy(dtype=np.float64)
        distinct = set(np.unique(arr).tolist())
        if distinct <= {-1.0, 1.0} or distinct <= {0.0, 1.0}:
            return (arr > 0).astype(np.int64), ["negative", "positive"]
        if all(v >= 0 and float(v).is_integer() for v in distinct):
            return arr.astype(np.int64), [str(i) for i in range(int(max(distinct)) + 1)]
        names = sorted(distinct)
        return np.searchsorted(names, arr).astype(np.int64), [f"{v:g}" for v in names]
    text = values.astype(str).to_numpy()
    names = sorted(set(text.tolist()))
    return np.searchsorted(names, text).astype(np.int64), names


def read_bag_table(
    source: str | os.PathLike[str],
    label_column: ColumnRef = 0,
    bag_column: ColumnRef = 1,
    feature_columns: Sequence[ColumnRef] | None = None,
    header: bool | None = None,
) -> BagTable:
    """Read a bag table (CSV/TSV or Parquet; one instance per row) into bags.

    Args:
        source: the file (``.csv``, ``.tsv``, compressed ``.csv.gz``, ``.parquet``).
        label_column: bag label column, by position or name. Labels must agree within a bag;
            -1/1 and 0/1 become classes 0/1, other non-negative integers are used as class indices,
            anything else is numbered in sorted order.
        bag_column: bag id column (any values; bags are kept in order of first appearance).
        feature_columns: instance feature columns (default: every other column); numbers only.
        header: whether a CSV's first row names the columns; ``None`` decides from the file (a header
            is assumed when a column is given by name, or when no cell of the first row outside the
            label and bag positions reads as a number). Ignored for Parquet.

    Raises:
        FileNotFoundError: no such file.
        BagTableError: a missing column, a non-numeric, empty or infinite feature, a missing label
            or bag id, a bag whose rows carry different labels, or a table without instances
            (the message names the file and the column, line/row or bag).
    """
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"bag table {path}: no such file")
    refs: list[ColumnRef] = [label_column, bag_column, *(feature_columns or [])]
    frame, first_line = _load_frame(path, header, refs)
    if len(frame) == 0:
        raise BagTableError(f"bag table {path}: no rows")
    label_col = _column(frame, label_column, "label", path)
    bag_col = _column(frame, bag_column, "bag id", path)
    if label_col == bag_col:
        raise BagTableError(f"bag table {path}: label column and bag id column are the same column {label_col!r}")
    if feature_columns is None:
        feat_cols = [c for c in frame.columns if c not in (label_col, bag_col)]
    else:
        feat_cols = [_column(frame, r, "feature", path) for r in feature_columns]
        clash = [c for c in feat_cols if c in (label_col, bag_col)]
        if clash:
            raise BagTableError(f"bag table {path}: feature column {clash[0]!r} is also the label or bag id column")
        seen: set[Any] = set()
        for c in feat_cols:
            if c in seen:
                raise BagTableError(f"bag table {path}: feature column {c!r} is listed twice")
            seen.add(c)
    if not feat_cols:
        raise BagTableError(f"bag table {path}: no feature columns (the table has only its label and bag id columns)")
    feats = np.stack([_numeric(frame, c, "feature", path, first_line) for c in feat_cols], axis=1)
    labels, class_names = _class_indices(frame[label_col], path, label_col, first_line)
    ids = frame[bag_col]
    if ids.isna().any():
        row = int(np.argmax(ids.isna().to_numpy()))
        raise BagTableError(f"bag table {path}: bag id column {bag_col!r}, {_where(path, first_line, row)}: is empty")
    codes, names = pd.factorize(ids.astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(names) + 1))
    bags: list[Bag] = []
    for k, name in enumerate(names):
        rows = order[starts[k] : starts[k + 1]]
        bag_labels = np.unique(labels[rows])
        if len(bag_labels) > 1:
            firsts = sorted(int(rows[np.argmax(labels[rows] == v)]) for v in bag_labels)
            detail = ", ".join(f"{frame[label_col].iloc[r]} at {_where(path, first_line, r)}" for r in firsts)
            raise BagTableError(f"bag table {path}: bag {name!r} has rows with different labels ({detail}); "
                                "a bag has one label")  # fmt: skip
        coords = np.zeros((len(rows), 2), dtype=np.int64)
        coords[:, 0] = rows
        bags.append(Bag(torch.from_numpy(feats[rows].astype(np.float32)), torch.from_numpy(coords), int(bag_labels[0]),
                        str(name), {"source": str(path)}))  # fmt: skip
    return BagTable(bags, class_names, [str(c) for c in feat_cols], str(path))


# -- splits, standardisation, pooled features ------------------------------------------------------
def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of each of ``n_folds`` stratified folds (disjoint, covering every bag), shuffled with ``seed``.

    Raises:
        ValueError: ``n_folds`` below 2 or above the number of bags, or a class with fewer bags than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= len(labels):
        raise ValueError(f"n_folds={n_folds!r}: must be an integer in [2, {len(labels)}] (the number of bags)")
    values, counts = np.unique(labels, return_counts=True)
    if counts.min() < n_folds:
        raise ValueError(f"n_folds={n_folds}: class {values[np.argmin(counts)]} has only {counts.min()} bags, "
                         "fewer than the folds; lower n_folds")  # fmt: skip
    kf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [np.sort(test) for _, test in kf.split(np.zeros(len(labels)), labels)]


def standardize_bags(fit_on: Sequence[Bag], *others: Sequence[Bag]) -> tuple[list[list[Bag]], torch.Tensor, torch.Tensor]:
    """Standardise every feature with the mean and std of the instances of ``fit_on`` only.

    Returns ``([fit_on, *others] standardised, mean, std)``; a constant feature gets std 1.
    """
    if not fit_on:
        raise ValueError("standardize_bags: no bags to fit the statistics on")
    tiles = torch.cat([b.features for b in fit_on]).double()
    mean = tiles.mean(0)
    std = tiles.std(0, unbiased=False) if len(tiles) > 1 else torch.ones_like(mean)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    mean32, std32 = mean.float(), std.float()
    out = [
        [Bag((b.features - mean32) / std32, b.coords, b.label, b.slide, b.attrs) for b in group] for group in (fit_on, *others)
    ]
    return out, mean32, std32


def pooled_bag_features(bags: Sequence[Bag], pools: Sequence[str] = ("mean", "max", "min")) -> np.ndarray:
    """One row per bag: its instance features pooled with each of ``pools`` and concatenated ``[B, len(pools) * D]``."""
    fns = {"mean": lambda x: x.mean(0), "max": lambda x: x.max(0).values, "min": lambda x: x.min(0).values}
    unknown = [p for p in pools if p not in fns]
    if unknown:
        raise ValueError(f"pooled_bag_features(pools=...): unknown pooling {unknown[0]!r} (expected mean, max, min)")
    return np.stack([torch.cat([fns[p](b.features) for p in pools]).numpy() for b in bags]).astype(np.float64)


# -- dataset and datamodule -----------------------------------------------------------------------
class ListBagDataset(Dataset[Bag]):
    """Bags held in memory (``labels`` and ``feature_dim`` as :class:`~chanformer.datasets.wsi.bags.BagDataset` has)."""

    def __init__(self, bags: Sequence[Bag]) -> None:
        if not bags:
            raise ValueError("ListBagDataset: no bags")
        self.bags = list(bags)
        self.feature_dim = int(self.bags[0].features.shape[1])

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> Bag:
        return self.bags[i]

    @property
    def labels(self) -> np.ndarray:
        return np.array([b.label for b in self.bags], dtype=np.int64)


class BagTableDataModule(BagLoaders, L.LightningDataModule):
    """Cross-validation over the bags of one table: fold ``fold`` of ``n_folds`` is the test set.

    The folds are stratified by bag label and drawn with ``repeat`` as their seed, so
    ``repeat=0..4`` with ``fold=0..9`` is "10-fold cross-validation repeated 5 times". The other
    folds train the model; ``val_fraction`` of them (stratified) may be held out for validation.
    Features are standardised with the mean/std of the training instances only.

    Args:
        source: the bag table (see :func:`read_bag_table`).
        label_column / bag_column / feature_columns / header: its layout (defaults: Musk's
            label in column 0, bag id in column 1, features after).
        n_folds: number of folds.
        fold: which fold is the test set, ``0 <= fold < n_folds``.
        repeat: seed of the fold draw (one per repetition of the cross-validation).
        val_fraction: share of the training folds held out for validation (0: none).
        batch_size: bags per step (padded with a mask).
        normalize: standardise the features (statistics of the training bags).
        num_workers: data loader workers.
        seed: shuffling seed of the training bags (and of the validation draw, with ``repeat`` and ``fold``).
    """

    def __init__(
        self,
        source: str = "../shared/data/mil-classic/musk1.csv",
        label_column: int | str = 0,
        bag_column: int | str = 1,
        feature_columns: list[int | str] | None = None,
        header: bool | None = None,
        n_folds: int = 10,
        fold: int = 0,
        repeat: int = 0,
        val_fraction: float = 0.0,
        batch_size: int = 1,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
            raise ValueError(f"BagTableDataModule(fold={fold!r}): must be an integer in [0, n_folds={n_folds})")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"BagTableDataModule(val_fraction={val_fraction}): must be in [0, 1)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BagTableDataModule(batch_size={batch_size!r}): must be an integer >= 1")
        self.table = read_bag_table(source, label_column, bag_column, feature_columns, header)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        labels = self.table.labels
        if len(np.unique(labels)) < 2:
            raise BagTableError(f"bag table {source}: every bag has label {self.table.class_names[labels[0]]!r}; "
                                "classification needs at least two classes")  # fmt: skip
        try:
            folds = stratified_folds(labels, n_folds, repeat)
        except ValueError as e:
            raise ValueError(f"BagTableDataModule({source}): {e}") from None
        test = folds[fold]
        rest = np.setdiff1d(np.arange(len(labels)), test)
        if val_fraction > 0:
            from chanformer.datasets.base import stratified_split

            tr, va = stratified_split(labels[rest], val_fraction, seed + 1000 * repeat + fold)
            train, val = rest[tr], rest[va]
        else:
            train, val = rest, np.zeros(0, dtype=np.int64)
        parts = {"train": train, "val": val, "test": test}
        bags = self.table.bags
        sub = {k: [bags[i] for i in idx] for k, idx in parts.items()}
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        if normalize:
            (sub["train"], sub["val"], sub["test"]), self.mean, self.std = standardize_bags(sub["train"], sub["val"], sub["test"])
        self.splits = {k: [b.slide for b in v] for k, v in sub.items()}
        self.datasets: dict[str, ListBagDataset | None] = {k: ListBagDataset(v) if v else None for k, v in sub.items()}

    @property
    def num_classes(self) -> int:
        return len(self.table.class_names)

    @property
    def feature_dim(self) -> int:
        return self.table.feature_dim

    @property
    def spec(self) -> DataSpec:
        return DataSpec(num_classes=self.num_classes, class_names=list(self.table.class_names), feature_dim=self.feature_dim)

    def bags(self, split: str) -> list[Bag]:
        """The (standardised) bags of ``"train"``, ``"val"`` or ``"test"``."""
        ds = self.datasets[split]
        return [] if ds is None else list(ds.bags)

