"""Time-Series-Library (TSLib) long-horizon forecasting files, read from the folder users download.

The benchmark tables of Autoformer / Informer / iTransformer / SOFTS papers, in the layout of
the ``all_six_datasets`` archive (Autoformer's Google Drive) and TSLib's ``./dataset/`` folder::

    <root>/ETT-small/ETTh1.csv        date + HUFL HULL MUFL MULL LUFL LULL OT, hourly, 17420 rows
    <root>/ETT-small/ETTh2.csv        (same columns)
    <root>/ETT-small/ETTm1.csv        (same columns), every 15 minutes, 69680 rows
    <root>/ETT-small/ETTm2.csv
    <root>/electricity/electricity.csv  date + 0 .. 319 + OT (321 clients), hourly, 26304 rows
    <root>/weather/weather.csv        date + 20 meteorological series + OT, every 10 minutes, 52696 rows
    <root>/traffic/traffic.csv        date + 0 .. 860 + OT (862 sensors), hourly, 17544 rows
    <root>/exchange_rate/exchange_rate.csv  date + 0 .. 6 + OT (8 currencies), daily, 7588 rows
    <root>/Solar/solar_AL.txt         no header, no dates: 137 comma-separated columns,
                                      every 10 minutes of 2006, 52560 rows (LSTNet's file)

``<root>`` may also be the folder that holds the file itself (``<root>/ETTh1.csv``, as
``../shared/data/ett`` does) or a TSLib checkout's parent of ``dataset/``. ``Solar`` may be
spelt ``solar`` or ``solar-energy`` (LSTNet's repository name).

Splits (exactly TSLib's ``data_provider``):

* ETT hourly (``Dataset_ETT_hour``): 12/4/4 months of 30 days = rows ``[0, 8640)``,
  ``[8640, 11520)``, ``[11520, 14400)``; the minute files (``Dataset_ETT_minute``) x4
  (34560/11520/11520). The rows after 20 months are not used, as in TSLib.
* the others (``Dataset_Custom``, ``Dataset_Solar``): ``int(0.7 n)`` train, ``int(0.2 n)`` test,
  the rest val, chronologically.
* val/test windows start ``seq_len`` rows before their border, so their first input overlaps the
  previous split by the lookback; the scaler is fitted on the train rows only.

The target column ``OT`` is moved last (TSLib's column order ``date, others..., OT``). Solar has
no dates; its rows get the 10-minute timestamps of 2006 (``2006-01-01 00:00`` on), from which the
calendar covariates are computed (TSLib feeds zeros there instead).

Nothing is downloaded: a missing folder or file raises :class:`TSLibMissingError` naming the
expected path and where to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from chanformer.datasets.timeseries.datamodules import _REPO_ROOT, ForecastingDataModule
from chanformer.datasets.timeseries.datasets import ForecastingDataset
from chanformer.datasets.timeseries.sources import read_series_table

__all__ = [
    "TSLIB_DATASETS",
    "TSLIB_URL",
    "TSLibFile",
    "TSLibForecastingDataModule",
    "TSLibForecastingDataset",
    "TSLibMissingError",
    "read_tslib_table",
    "tslib_path",
]

PathLike = str | os.PathLike[str]
TSLIB_URL = "https://github.com/thuml/Time-Series-Library (README: the datasets archive on Google Drive)"
ETT_URL = "https://github.com/zhouhaoyi/ETDataset"
SOLAR_URL = "https://github.com/laiguokun/multivariate-time-series-data (solar-energy/solar_AL.txt.gz)"


@dataclass(frozen=True)
class TSLibFile:
    """Where a TSLib table lives and how TSLib splits it.

    Attributes:
        name: the key of :data:`TSLIB_DATASETS` (TSLib's ``--data_path`` without the suffix).
        folders: folder names under the root, the usual one first.
        file: file name.
        split_scheme: ``"ett_hour"``, ``"ett_minute"`` or ``"ratio"`` (70/10/20).
        freq: sampling frequency (TSLib's ``--freq``; for the calendar covariates).
        n_series: number of series (columns besides the date).
        n_rows: rows of the published file.
        header: whether the file has a header row with a ``date`` column (all but Solar).
        start: first timestamp of a file without dates.
    """

    name: str
    folders: tuple[str, ...]
    file: str
    split_scheme: Literal["ratio", "ett_hour", "ett_minute"]
    freq: str
    n_series: int
    n_rows: int
    header: bool = True
    start: str | None = None


#: Every TSLib forecasting table by name.
TSLIB_DATASETS: dict[str, TSLibFile] = {
    "ETTh1": TSLibFile("ETTh1", ("ETT-small",), "ETTh1.csv", "ett_hour", "h", 7, 17420),
    "ETTh2": TSLibFile("ETTh2", ("ETT-small",), "ETTh2.csv", "ett_hour", "h", 7, 17420),
    "ETTm1": TSLibFile("ETTm1", ("ETT-small",), "ETTm1.csv", "ett_minute", "15min", 7, 69680),
    "ETTm2": TSLibFile("ETTm2", ("ETT-small",), "ETTm2.csv", "ett_minute", "15min", 7, 69680),
    "electricity": TSLibFile("electricity", ("electricity",), "electricity.csv", "ratio", "h", 321, 26304),
    "weather": TSLibFile("weather", ("weather",), "weather.csv", "ratio", "10min", 21, 52696),
    "traffic": TSLibFile("traffic", ("traffic",), "traffic.csv", "ratio", "h", 862, 17544),
    "exchange_rate": TSLibFile("exchange_rate", ("exchange_rate",), "exchange_rate.csv", "ratio", "d", 8, 7588),
    "solar": TSLibFile("solar", ("Solar", "solar", "solar-energy"), "solar_AL.txt", "ratio", "10min", 137, 52560,
                       header=False, start="2006-01-01 00:00:00"),
}  # fmt: skip
_ALIASES = {"ecl": "electricity", "exchange": "exchange_rate", "solar_al": "solar"}
TARGET = "OT"


class TSLibMissingError(FileNotFoundError):
    """A TSLib folder or table is missing; the message names the expected path and the source."""


def tslib_entry(name: str) -> TSLibFile:
    """The :class:`TSLibFile` of ``name`` (case-insensitive; ``ECL`` = electricity, ``exchange``)."""
    key = {k.lower(): k for k in TSLIB_DATASETS}.get(name.strip().lower())
    key = key or _ALIASES.get(name.strip().lower())
    if key is None:
        raise ValueError(f"unknown TSLib dataset {name!r}; choose among {sorted(TSLIB_DATASETS)}")
    return TSLIB_DATASETS[key]


def _where(entry: TSLibFile) -> str:
    url = ETT_URL if entry.name.startswith("ETT") else SOLAR_URL if entry.name == "solar" else TSLIB_URL
    return (
        f"expected <root>/{entry.folders[0]}/{entry.file} (or <root>/{entry.file}, or "
        f"<root>/dataset/{entry.folders[0]}/{entry.file}); get it from {url}; chanformer never downloads it"
    )


def tslib_path(root: PathLike, name: str) -> Path:
    """The file of TSLib dataset ``name`` under ``root``; :class:`TSLibMissingError` if absent."""
    entry = tslib_entry(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TSLibMissingError(f"TSLib data root not found: {root}; {_where(entry)}")
    cands = [root / f / entry.file for f in entry.folders] + [root / entry.file]
    cands += [root / "dataset" / f / entry.file for f in entry.folders]
    for cand in cands:
        if cand.is_file():
            return cand
    raise TSLibMissingError(
        f"{entry.name}: {entry.file} not found under {root} (tried {', '.join(str(c) for c in cands)}); {_where(entry)}"
    )


def read_tslib_table(root: PathLike, name: str) -> pd.DataFrame:
    """The table of ``name`` as TSLib orders it: ``date``, the other series, then ``OT`` (Solar:
    synthetic 10-minute dates + columns ``0`` .. ``136``). Values as float64."""
    entry = tslib_entry(name)
    path = tslib_path(root, name)
    if entry.header:
        df = read_series_table(path)
        if "date" not in df.columns:
            raise ValueError(f"{path}: no 'date' column (columns: {list(df.columns)[:8]}...); not a TSLib table")
        others = [c for c in df.columns if c not in ("date", TARGET)]
        return df[["date", *others, *([TARGET] if TARGET in df.columns else [])]]
    try:
        values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"cannot read {path} as comma-separated numbers without a header: {e}") from e
    df = pd.DataFrame(values, columns=[str(i) for i in range(values.shape[1])])
    df.insert(0, "date", pd.date_range(entry.start, periods=len(df), freq=entry.freq))
    return df


class TSLibForecastingDataset(ForecastingDataset):
    """One split of a TSLib table: :class:`ForecastingDataset` with the file's path, split and
    frequency looked up by ``name``.

    Args:
        root: folder holding ``ETT-small/``, ``electricity/``, ... (see the module docstring).
        name: a key of :data:`TSLIB_DATASETS` (``"ETTh1"``, ``"weather"``, ``"solar"``, ...).
        split / seq_len / horizon: as for :class:`ForecastingDataset`.
        **kwargs: ``stride``, ``columns``, ``vocab``, ``scale`` or ``stats``, as for
            :class:`ForecastingDataset` (``columns=["OT"]`` is TSLib's univariate ``features=S``).

    Samples: ``values [C, seq_len]``, ``target [C, horizon]``, ``covariates [K, seq_len]``.
    """

    def __init__(self, root: PathLike, name: str = "ETTh1", *, split: Literal["train", "val", "test"] = "train",
                 seq_len: int = 96, horizon: int = 96, **kwargs: Any) -> None:  # fmt: skip
        for k in ("split_scheme", "ratios", "freq", "date_col"):
            if k in kwargs:
                raise TypeError(f"TSLibForecastingDataset sets {k!r} from the dataset name")
        self.entry = tslib_entry(name)
        self.path = tslib_path(root, name)
        super().__init__(
            read_tslib_table(root, name), split=split, seq_len=seq_len, horizon=horizon,
            split_scheme=self.entry.split_scheme, freq=self.entry.freq, **kwargs,
        )  # fmt: skip


class TSLibForecastingDataModule(ForecastingDataModule):
    """:class:`ForecastingDataModule` over a TSLib table found by ``name`` under ``root``.

    Args:
        root: the downloaded folder (``<root>/ETT-small/ETTh1.csv``, ``<root>/weather/weather.csv``, ...).
        name: a key of :data:`TSLIB_DATASETS`; its split (12/4/4 months or 70/10/20) and frequency
            come with it.
        seq_len / horizon / stride / batch_size / columns / scale / num_workers / seed / vocab_path:
            as for :class:`ForecastingDataModule`.
    """

    def __init__(
        self,
        root: str = "../shared/data/ett",
        name: str = "ETTh1",
        seq_len: int = 96,
        horizon: int = 96,
        stride: int = 1,
        batch_size: int = 32,
        columns: list[str] | None = None,
        scale: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        vocab_path: str | None = None,
    ) -> None:
        given = Path(root).expanduser()
        if not given.is_absolute() and not given.is_dir() and (_REPO_ROOT / given).is_dir():
            given = _REPO_ROOT / given
        self.root, self.entry = given, tslib_entry(name)
        self.name = self.entry.name
        path = tslib_path(given, name)
        super().__init__(
            source=str(path), seq_len=seq_len, horizon=horizon, stride=stride, batch_size=batch_size,
            split_scheme=self.entry.split_scheme, freq=self.entry.freq, columns=columns, scale=scale,
            num_workers=num_workers, seed=seed, vocab_path=vocab_path,
        )  # fmt: skip

    def _columns(self) -> list[str]:
        if self.entry.header:  # the header only; OT last, as TSLib orders them
            cols = super()._columns()
            return [c for c in cols if c not in ("date", TARGET)] + ([TARGET] if TARGET in cols else [])
        return list(self._frame.columns)

    @cached_property
    def _frame(self) -> pd.DataFrame:
        return read_tslib_table(self.root, self.entry.name)
