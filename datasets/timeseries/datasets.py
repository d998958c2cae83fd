"""Time-series datasets emitting :class:`~chanformer.batch.ChannelSample`.

* :class:`UEADataset` / :func:`load_uea`: UEA/UCR classification archives in the ``.ts``
  format (parsed by :mod:`chanformer.datasets.timeseries.ts_format`), files shipped inside ``aeon``.
* :class:`ForecastingDataset`: long-horizon forecasting tables in the ETT/electricity layout
  (a ``date`` column plus one column per series), split and scaled like Time-Series-Library.
* :class:`ChannelStats`: per-channel mean/std fitted on a training split only.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.datasets.timeseries.sources import load_macrodata, load_uschange, read_series_table, uea_path
from chanformer.datasets.timeseries.ts_format import TsData, read_ts

__all__ = [
    "ChannelStats",
    "ForecastingDataset",
    "UEADataset",
    "load_macrodata",
    "load_uea",
    "load_uschange",
    "read_series_table",
    "split_borders",
    "time_features",
    "uea_path",
]

PathLike = str | os.PathLike[str]


# -- statistics -------------------------------------------------------------------------------
@dataclass
class ChannelStats:
    """Per-channel ``mean``/``std`` (``[C]``), StandardScaler-equivalent (``ddof=0``, std 0 -> 1)."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"ChannelStats: mean {self.mean.shape} and std {self.std.shape} differ in shape")
        self.check()

    def check(self, names: Sequence[str] | None = None, source: str = "ChannelStats") -> None:
        """Refuse non-finite means and non-finite or non-positive stds, naming the channel."""
        bad = ~np.isfinite(self.mean) | ~np.isfinite(self.std) | ~(self.std > 0)
        if bad.any():
            listing = ", ".join(
                f"{names[i] if names is not None and i < len(names) else f'channel {i}'} "
                f"(mean {self.mean[i]:g}, std {self.std[i]:g})"
                for i in np.flatnonzero(bad)[:5]
            )
            raise ValueError(
                f"{source}: normalisation statistics must be finite with std > 0; bad for {listing}"
                f"{f' and {int(bad.sum()) - 5} more' if bad.sum() > 5 else ''}"
            )

    @classmethod
    def fit(cls, arrays: Iterable[np.ndarray]) -> ChannelStats:
        """Statistics over arrays ``[C, T_i]`` concatenated along time, ignoring NaN."""
        x = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels
            mean, std = np.nanmean(x, axis=1), np.nanstd(x, axis=1)
        mean = np.nan_to_num(mean, nan=0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(mean, std)

    def __len__(self) -> int:
        return len(self.mean)

    def _shape(self, x: Any) -> tuple[Any, Any]:
        c = x.shape[-2]
        if c != len(self.mean):
            raise ValueError(f"expected {len(self.mean)} channels on axis -2, got shape {tuple(x.shape)}")
        if isinstance(x, Tensor):
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
            return mean[:, None], torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None]
        return self.mean[:, None].astype(x.dtype), self.std[:, None].astype(x.dtype)

    def transform(self, x: Any) -> Any:
        """``(x - mean) / std`` for ``x [..., C, T]`` (ndarray or tensor)."""
        mean, std = self._shape(x)
        return (x - mean) / std

    def inverse_transform(self, x: Any) -> Any:
        """``x * std + mean`` for ``x [..., C, T]`` (ndarray or tensor)."""
        mean, std = self._shape(x)
        return x * std + mean

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelStats:
        return cls(np.array(data["mean"], dtype=np.float64), np.array(data["std"], dtype=np.float64))


def _channel_ids(keys: list[str], vocab: ChannelVocab | None) -> tuple[ChannelVocab, Tensor]:
    if vocab is None:
        vocab = ChannelVocab("series", [])
        vocab.extend(keys)
    return vocab, torch.tensor(vocab.ids(keys), dtype=torch.long)


def _series_keys(names: Sequence[str]) -> list[str]:
    return [n if "/" in n else f"series/{n}" for n in names]


# -- UEA / UCR classification -----------------------------------------------------------------
class UEADataset(Dataset[ChannelSample]):
    """UEA/UCR ``.ts`` classification (or regression) cases as ``ChannelSample``s.

    Each sample holds ``values [C, T]`` (float32), ``channel_ids [C]`` and ``target`` (class
    index, long; float for ``@targetLabel`` files). Processing order: normalise (NaN kept),
    fill missing values, then crop to / pad up to ``length``.

    Args:
        source: path of a ``.ts`` file, or already parsed :class:`TsData`.
        vocab: vocabulary holding the channel keys; default: a fresh one with just them.
        channel_names: one name per dimension (default ``dim_0 ...``); keys are ``series/<name>``
            unless a name already contains ``/``.
        length: output length ``T``; longer cases keep their first ``length`` steps. Default:
            the longest selected case.
        pad: ``"edge"`` repeats the last value, ``"zero"`` pads zeros, ``"none"`` leaves short
            cases short (then batches need equal lengths).
        fill_missing: ``"interpolate"`` (linear, constant at the ends; all-missing -> 0),
            ``"zero"``, or ``"error"`` (raise naming case and channel). Infinite values are
            never filled: they raise naming file, line and channel (the ``.ts`` reader already
            refuses them; this covers :class:`TsData` built in memory and ``stats`` that overflow).
        normalize: ``"dataset"`` standardises each channel with ``stats``, or with statistics
            fitted on this dataset when ``stats`` is None (do this for TRAIN only, then pass
            ``train.stats`` to val/test); ``None`` keeps raw values.
        stats: statistics from the training split.
        classes: class order (default: the header's ``@classLabel`` list).
        indices: cases to keep (e.g. a train/val split of the official TRAIN file).

    """

    def __init__(
        self,
        source: PathLike | TsData,
        *,
        vocab: ChannelVocab | None = None,
        channel_names: Sequence[str] | None = None,
        length: int | None = None,
        pad: Literal["edge", "zero", "none"] = "edge",
        fill_missing: Literal["interpolate", "zero", "error"] = "interpolate",
        normalize: Literal["dataset"] | None = None,
        stats: ChannelStats | None = None,
        classes: Sequence[str] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if pad not in ("edge", "zero", "none"):
            raise ValueError(f"pad must be 'edge', 'zero' or 'none', got {pad!r}")
        if fill_missing not in ("interpolate", "zero", "error"):
            raise ValueError(f"fill_missing must be 'interpolate', 'zero' or 'error', got {fill_missing!r}")
        if normalize not in (None, "dataset"):
            raise ValueError(f"normalize must be None or 'dataset', got {normalize!r}")
        if normalize is None and stats is not None:
            raise ValueError("stats= given but normalize=None; pass normalize='dataset' to apply them")
        self.pad, self.fill_missing = pad, fill_missing
        self.data = source if isinstance(source, TsData) else read_ts(source)
        path = self.data.path
        self.indices = np.arange(len(self.data)) if indices is None else np.asarray(indices, dtype=np.int64)
        c = self.data.n_channels
        names = list(channel_names) if channel_names is not None else [f"dim_{i}" for i in range(c)]
        if len(names) != c:
            raise ValueError(f"{path} has {c} dimensions but channel_names lists {len(names)}")
        self.channel_keys = _series_keys(names)
        self.vocab, self.channel_ids = _channel_ids(self.channel_keys, vocab)
        self.classes = list(classes) if classes is not None else self.data.classes
        self.targets = self._targets()
        raw = [self.data.series[i] for i in self.indices]
        self.lengths = np.array([r.shape[1] for r in raw], dtype=np.int64)
        self.stats = None
        if normalize == "dataset":
            if stats is None and "TEST" in path.name.upper():
                warnings.warn(
                    f"fitting normalisation stats on {path.name}; pass the train's stats=", stacklevel=2
                )
            self.stats = stats if stats is not None else ChannelStats.fit(raw)
            if len(self.stats) != c:
                raise ValueError(f"stats have {len(self.stats)} channels, {path} has {c}")
            self.stats.check(self.channel_keys, f"stats for {path}")
        self.length = int(length) if length is not None else int(self.lengths.max(initial=0))
        self._values = [self._process(x, i) for x, i in zip(raw, self.indices)]

    def _targets(self) -> Tensor:
        if self.data.targets is not None:
            return torch.from_numpy(self.data.targets[self.indices].astype(np.float32))
        if self.data.labels is None:
            raise ValueError(f"{self.data.path} has no labels (@classLabel false, no @targetLabel)")
        index = {c: k for k, c in enumerate(self.classes)}
        labels = [self.data.labels[i] for i in self.indices]
        unknown = sorted({lab for lab in labels if lab not in index})
        if unknown:
            raise ValueError(f"{self.data.path}: labels {unknown} are not in classes {self.classes}")
        return torch.tensor([index[lab] for lab in labels], dtype=torch.long)

    def _process(self, x: np.ndarray, case: int) -> Tensor:
        self._check_inf(x, case, "")
        if self.stats is not None:
            with np.errstate(over="ignore"):
                x = self.stats.transform(x)
            self._check_inf(x, case, " after normalisation (std too small for float32?)")
        missing = np.isnan(x)
        if missing.any():
            if self.fill_missing == "error":
                ch = self.channel_keys[int(np.nonzero(missing.any(1))[0][0])]
                raise ValueError(
                    f"{self.data.path}: case {case} (line {self.data.lines[case]}), channel {ch} has "
                    "missing values; use fill_missing='interpolate' or 'zero'"
                )
            x = _interpolate(x) if self.fill_missing == "interpolate" else np.nan_to_num(x, nan=0.0)
        t = x.shape[1]
        if t > self.length:
            x = x[:, : self.length]
        elif t < self.length and self.pad != "none":
            width = ((0, 0), (0, self.length - t))
            x = np.pad(x, width, mode="edge") if self.pad == "edge" and t > 0 else np.pad(x, width)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def _check_inf(self, x: np.ndarray, case: int, when: str) -> None:
        inf = np.isinf(x)
        if inf.any():
            c, t = (int(i) for i in np.argwhere(inf)[0])
            raise ValueError(
                f"{self.data.path}: case {case} (line {self.data.lines[case]}), channel {self.channel_keys[c]}, "
                f"step {t}: value {x[c, t]} is infinite{when}; only finite values (NaN = missing) are accepted"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n_channels(self) -> int:
        return len(self.channel_keys)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> ChannelSample:
        return ChannelSample(values=self._values[i], channel_ids=self.channel_ids, target=self.targets[i])


def _interpolate(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    grid = np.arange(x.shape[1])
    for row in x:
        ok = ~np.isnan(row)
        if not ok.any():
            row[:] = 0.0
        elif not ok.all():
            row[~ok] = np.interp(grid[~ok], grid[ok], row[ok])
    return x


def load_uea(name: str, split: str = "train", *, root: PathLike | None = None, **kwargs: Any) -> UEADataset:
    """:class:`UEADataset` of the archive ``name`` (e.g. ``"BasicMotions"``), see :func:`uea_path`."""
    return UEADataset(uea_path(name, split, root), **kwargs)


# -- forecasting tables -----------------------------------------------------------------------
_FREQ_FEATURES = {
    "y": [], "q": ["month"], "m": ["month"], "w": ["day", "week"], "d": ["weekday", "day", "yearday"],
    "h": ["hour", "weekday", "day", "yearday"], "t": ["minute", "hour", "weekday", "day", "yearday"],
    "s": ["second", "minute", "hour", "weekday", "day", "yearday"],
}  # fmt: skip
_FREQ_ALIASES = {
    "a": "y",
    "ye": "y",
    "ys": "y",
    "qe": "q",
    "qs": "q",
    "me": "m",
    "ms": "m",
    "b": "d",
    "min": "t",
}


def _freq_code(freq: str) -> str:
    code = re.sub(r"^\d+", "", freq.strip()).lower()
    code = _FREQ_ALIASES.get(code, code)
    if code not in _FREQ_FEATURES:
        raise ValueError(f"unsupported freq {freq!r}; use one of s, t/min, h, d, b, w, m, q, y")
    return code


def time_features(dates: Sequence[Any] | pd.DatetimeIndex, freq: str = "h") -> np.ndarray:
    """Calendar features ``[K, N]`` in ``[-0.5, 0.5]``, as Time-Series-Library's ``timeenc=1``.

    ``freq='h'``: hour/23, weekday/6, (day-1)/30, (dayofyear-1)/365, each minus 0.5;
    ``'t'`` (minutes) prepends minute/59; ``'d'`` drops the hour; ``'m'``/``'q'`` use
    (month-1)/11; ``'w'`` (day-1)/30 and (week-1)/52; ``'y'`` has none (``K = 0``).
    """
    idx = pd.DatetimeIndex(dates)
    feats = {
        "second": lambda: idx.second / 59.0, "minute": lambda: idx.minute / 59.0,
        "hour": lambda: idx.hour / 23.0,
        "weekday": lambda: idx.dayofweek / 6.0, "day": lambda: (idx.day - 1) / 30.0,
        "yearday": lambda: (idx.dayofyear - 1) / 365.0, "month": lambda: (idx.month - 1) / 11.0,
        "week": lambda: (idx.isocalendar().week.to_numpy() - 1) / 52.0,
    }  # fmt: skip
    rows = [np.asarray(feats[name](), dtype=np.float64) - 0.5 for name in _FREQ_FEATURES[_freq_code(freq)]]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, len(idx)), dtype=np.float32)


def split_borders(
    n_rows: int, seq_len: int, scheme: str = "ratio", ratios: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, tuple[int, int]]:
    """Row ranges ``[b1, b2)`` per split; val/test start ``seq_len`` rows before their border.

    ``"ett_hour"``/``"ett_minute"``: 12/4/4 months of 30 days (x24 hours, x4 for 15 minutes);
    ``"ratio"``: ``int(n*r_train)`` train, ``int(n*r_test)`` test, the rest val (TSLib custom).
    """
    if scheme in ("ett_hour", "ett_minute"):
        month = 30 * 24 * (4 if scheme == "ett_minute" else 1)
        n_train, n_val, n_test = 12 * month, 4 * month, 4 * month
    elif scheme == "ratio":
        if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(f"ratios must be three fractions summing to 1, got {tuple(ratios)}")
        n_train, n_test = int(n_rows * ratios[0]), int(n_rows * ratios[2])
        n_val = n_rows - n_train - n_test
    else:
        raise ValueError(f"split_scheme must be 'ett_hour', 'ett_minute' or 'ratio', got {scheme!r}")
    return {
        "train": (0, n_train),
        "val": (max(n_train - seq_len, 0), n_train + n_val),
        "test": (max(n_train + n_val - seq_len, 0), n_train + n_val + n_test),
    }


def _borders_ok(n_rows: int, seq_len: int, horizon: int, scheme: str, ratios: Sequence[float]) -> bool:
    b = split_borders(n_rows, seq_len, scheme, ratios)
    return b["test"][1] <= n_rows and all(b2 - b1 >= seq_len + horizon for b1, b2 in b.values())


def _rows_needed(seq_len: int, horizon: int, scheme: str, ratios: Sequence[float]) -> int:
    if scheme != "ratio":
        return split_borders(0, seq_len, scheme)["test"][1]
    n = seq_len + horizon
    while not _borders_ok(n, seq_len, horizon, scheme, ratios) and n < 10**9:
        n += 1
    return n


def _validate_frame(
    df: pd.DataFrame, date_col: str, columns: Sequence[str] | None, name: str
) -> pd.DataFrame:
    if date_col not in df.columns:
        raise ValueError(f"{name} has no {date_col!r} column (columns: {list(df.columns)})")
    cols = list(columns) if columns is not None else [c for c in df.columns if c != date_col]
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(f"{name} has no column(s) {absent}")
    non_numeric = [str(c) for c in cols if not pd.api.types.is_numeric_dtype(df[c]) or df[c].dtype == bool]
    if non_numeric:
        raise ValueError(f"{name}: non-numeric column(s) {non_numeric}; drop them or pass columns=")
    nan = df[cols].isna().to_numpy()
    if nan.any():
        r, c = (int(i) for i in np.argwhere(nan)[0])
        raise ValueError(
            f"{name}: NaN in column {cols[c]!r} at row {r} ({date_col}={df[date_col].iloc[r]}); "
            f"{int(nan.sum())} missing value(s) in all, fill or drop them first"
        )
    values = df[cols].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > np.finfo(np.float32).max
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        v = values[r, c]
        what = "is infinite" if np.isinf(v) else "overflows float32 (|x| > 3.4e38)"
        raise ValueError(
            f"{name}: value {v:g} in column {cols[c]!r} at row {r} ({date_col}={df[date_col].iloc[r]}) {what}; "
            f"{int(bad.sum())} such value(s) in all; only finite float32 values are accepted"
        )
    try:
        dates = pd.to_datetime(df[date_col])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot parse column {date_col!r} as dates: {e}") from None
    out = df[cols].astype(np.float64)
    out.insert(0, date_col, dates)
    return out.reset_index(drop=True)


class ForecastingDataset(Dataset[ChannelSample]):
    """Sliding windows over a multivariate table, split chronologically like Time-Series-Library.

    Sample ``i`` starts at row ``b1 + i*stride`` of the split: ``values [C, seq_len]``,
    ``target [C, horizon]`` (the rows that follow), ``covariates [K, seq_len]`` (calendar
    features of the input rows, see :func:`time_features`). With ``scale=True`` values and
    targets are standardised with statistics fitted on the TRAIN rows only (``stats``);
    :meth:`inverse_transform` maps predictions back.

    Args:
        source: CSV/Parquet path or a DataFrame with ``date_col`` plus one numeric column per series.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seq_len / horizon / stride: window input length, forecast length, step between windows.
        split_scheme: ``"ett_hour"``, ``"ett_minute"`` (12/4/4 months) or ``"ratio"``.
        ratios: train/val/test fractions for ``"ratio"``.
        freq: time-feature frequency (``"h"``, ``"t"``, ``"d"``, ``"q"``, ...).
        columns: series to use (default: every column but the date).
        vocab: vocabulary holding ``series/<column>`` keys (default: built from the columns).
        scale: standardise with train statistics; ``stats`` overrides the fitted ones.

    """

    def __init__(
        self,
        source: PathLike | pd.DataFrame,
        *,
        split: Literal["train", "val", "test"] = "train",
        seq_len: int = 96,
        horizon: int = 96,
        stride: int = 1,
        split_scheme: Literal["ratio", "ett_hour", "ett_minute"] = "ratio",
        ratios: Sequence[float] = (0.7, 0.1, 0.2),
        freq: str = "h",
        date_col: str = "date",
        columns: Sequence[str] | None = None,
        vocab: ChannelVocab | None = None,
        scale: bool = True,
        stats: ChannelStats | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if seq_len < 1 or horizon < 1 or stride < 1:
            raise ValueError(f"seq_len, horizon and stride must be >= 1, got {seq_len}, {horizon}, {stride}")
        name = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
        df = source if isinstance(source, pd.DataFrame) else read_series_table(source)
        df = _validate_frame(df, date_col, columns, name)
        self.split, self.seq_len, self.horizon, self.stride, self.freq = split, seq_len, horizon, stride, freq
        self.columns = [str(c) for c in df.columns[1:]]
        self.channel_keys = _series_keys(self.columns)
        self.vocab, self.channel_ids = _channel_ids(self.channel_keys, vocab)
        n = len(df)
        borders = split_borders(n, seq_len, split_scheme, ratios)
        if not _borders_ok(n, seq_len, horizon, split_scheme, ratios):
            b1, b2 = borders[split]
            need = _rows_needed(seq_len, horizon, split_scheme, ratios)
            raise ValueError(
                f"{name} has {n} rows; seq_len + horizon = {seq_len + horizon} rows are needed in each split "
                f"(split {split!r} spans rows {b1}..{min(b2, n)}), so split_scheme={split_scheme!r} needs at "
                f"least {need} rows; shorten seq_len/horizon or use more data"
            )
        self.borders = borders[split]
        values = df.iloc[:, 1:].to_numpy(np.float64).T  # [C, N]
        train_end = borders["train"][1]
        self.stats = (
            (stats if stats is not None else ChannelStats.fit([values[:, :train_end]])) if scale else None
        )
        b1, b2 = self.borders
        part = values[:, b1:b2]
        if self.stats is not None:
            self.stats.check(self.channel_keys, f"stats for {name}")
            part = self.stats.transform(part)
            big = ~(np.abs(part) <= np.finfo(np.float32).max)
            if big.any():
                c, r = (int(i) for i in np.argwhere(big)[0])
                raise ValueError(
                    f"{name}: column {self.columns[c]!r}, row {b1 + r}: scaled value {part[c, r]:g} does not fit "
                    "float32 (std of the scaling statistics too small?)"
                )
        self.data = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))
        self.dates = pd.DatetimeIndex(df[date_col].iloc[b1:b2])
        self.covariates = torch.from_numpy(time_features(self.dates, freq))

    @property
    def n_channels(self) -> int:
        return len(self.columns)

    @property
    def n_covariates(self) -> int:
        return self.covariates.shape[0]

    def __len__(self) -> int:
        return (self.data.shape[1] - self.seq_len - self.horizon) // self.stride + 1

    def __getitem__(self, i: int) -> ChannelSample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        s = (i % len(self)) * self.stride
        e = s + self.seq_len
        return ChannelSample(
            values=self.data[:, s:e],
            channel_ids=self.channel_ids,
            target=self.data[:, e : e + self.horizon],
            covariates=self.covariates[:, s:e],
        )

    def inverse_transform(self, values: Any) -> Any:
        """Undo the train-split scaling of ``values [..., C, H]`` (identity when ``scale=False``)."""
        return values if self.stats is None else self.stats.inverse_transform(values)
