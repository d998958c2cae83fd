"""Time-series datamodules: UEA/UCR classification archives and forecasting tables.

:class:`UEADataModule` and :class:`ForecastingDataModule` build their datasets from a name or a
path with typed, recipe-friendly arguments (the generic base is
:class:`~chanformer.datasets.base.ChannelDataModule`). Facts models need (``vocab``,
``n_channels``, ``num_classes``, ``seq_len``, ``horizon``, ``spec``) are available right after
``__init__`` for ``link_arguments``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule, stratified_split
from chanformer.datasets.timeseries.datasets import (
    ChannelStats,
    ForecastingDataset,
    UEADataset,
    _channel_ids,
    _series_keys,
    time_features,
)
from chanformer.datasets.timeseries.sources import load_macrodata, load_uschange, read_series_table, uea_path
from chanformer.datasets.timeseries.ts_format import TsData, read_ts, read_ts_header
from chanformer.spec import DataSpec
from chanformer.transforms.timeseries import RandomShiftScale

__all__ = ["ForecastingDataModule", "UEADataModule"]


def _series_contract(keys: list[str], stats: ChannelStats | None, **kw: Any) -> InputContract:
    """A ``series`` contract over channel ``keys`` with the train-part ``stats`` as a mean/std
    normaliser keyed by channel."""
    normalizer = None
    if stats is not None:
        normalizer = {"method": "meanstd",
                      "stats": {k: [float(m), float(sd)] for k, m, sd in zip(keys, stats.mean, stats.std)}}  # fmt: skip
    prefixes = {k.split("/", 1)[0] for k in keys if "/" in k}
    prefix = f"{prefixes.pop()}/" if len(prefixes) == 1 else ""
    return InputContract(modality="series", channels=list(keys), key_prefix=prefix, normalizer=normalizer,
                         units="normalised" if normalizer else "", **kw)  # fmt: skip


_UNIT_S = {"s": 1.0, "t": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _period_seconds(freq: str) -> float | None:
    """Seconds between rows of a fixed pandas-style frequency (``"h"``, ``"15min"``, ``"d"``);
    ``None`` for calendar ones (months, quarters, business days)."""
    m = re.fullmatch(r"(\d*)\s*(min|s|t|h|d|w)", freq.strip().lower())
    return None if m is None else float(m.group(1) or 1) * _UNIT_S[m.group(2)]


def _load_vocab(path: str | None, keys: list[str]) -> ChannelVocab:
    return _channel_ids(keys, ChannelVocab.load(path) if path else None)[0]


class UEADataModule(ChannelDataModule):
    """A UEA/UCR archive found offline (see :func:`uea_path`).

    The official TRAIN is split into train/val (stratified by class with ``seed``); the
    official TEST is the test set.

    Args:
        name: archive name, e.g. ``"BasicMotions"`` or ``"JapaneseVowels"``.
        length: series length ``T`` (default: the longest case in TRAIN and TEST).
        val_fraction: share of each class of TRAIN held out for validation.
        normalize: ``"dataset"`` (per-channel statistics of the train part) or ``None``.
        root: extra folder to search for ``<name>_TRAIN.ts``.
        vocab_path: JSON vocabulary to index channels with (default: ``series/dim_<i>`` keys).
        channel_names: names of the dimensions (default ``dim_0 ...``).
        augment_shift / augment_scale / augment_noise / augment_channel_drop: training-time
            augmentation on device (:class:`~chanformer.transforms.timeseries.RandomShiftScale`;
            channel dropout hides each channel with that probability); 0 = off.
        montage: ``"eeg_1005"`` names the channels of the UEA EEG archives by electrode
            (:data:`chanformer.datasets.eeg.uea.UEA_EEG_ELECTRODES`) and indexes them with
            :func:`~chanformer.datasets.eeg.uea.uea_eeg_vocab` (10-05 + the unnamed ones), the same
            vocabulary for every archive; ``None`` keeps ``series/dim_<i>`` keys.
        resample_to: resample every case to this many samples (polyphase,
            :func:`~chanformer.datasets.eeg.uea.resample_series`) before normalising; one fixed
            length for archives of different rates and durations.
        holdout_fraction: share of each class of the official TRAIN set aside (drawn with
            ``holdout_seed``) and used as the test set instead of the official TEST, so that
            choices between recipes or protocols can be scored without touching TEST; the
            train/val split is then drawn from the rest. 0 (default): the official TEST.
        holdout_seed: seed of that draw (kept apart from ``seed``, so that runs with different
            training seeds can share one held-out set).

    A relative ``root`` not found from the working directory is tried from the repository root.
    """

    # mypy checks this file by its path (datasets.timeseries.*) and cannot follow the installed
    # chanformer.datasets.base, so the base's attribute is declared again for it.
    train_dataset: Dataset[ChannelSample] | None

    def __init__(
        self,
        name: str = "BasicMotions",
        length: int | None = None,
        batch_size: int = 16,
        val_fraction: float = 0.2,
        seed: int = 0,
        normalize: Literal["dataset"] | None = "dataset",
        pad: Literal["edge", "zero", "none"] = "edge",
        fill_missing: Literal["interpolate", "zero", "error"] = "interpolate",
        num_workers: int = 0,
        root: str | None = None,
        vocab_path: str | None = None,
        channel_names: list[str] | None = None,
        augment_shift: float = 0.0,
        augment_scale: float = 0.0,
        augment_noise: float = 0.0,
        augment_channel_drop: float = 0.0,
        montage: Literal["eeg_1005"] | None = None,
        resample_to: int | None = None,
        holdout_fraction: float = 0.0,
        holdout_seed: int = 0,
    ) -> None:
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        if root is not None and not Path(root).is_absolute() and not Path(root).exists():
            if (_REPO_ROOT / root).exists():
                root = str(_REPO_ROOT / root)
        self.paths = {s: uea_path(name, s, root) for s in ("train", "test")}
        self.header = read_ts_header(self.paths["train"])
        if not self.header.class_label:
            raise ValueError(
                f"{self.paths['train']}: @classLabel is not true, but UEADataModule needs a classification "
                "archive (class labels listed by @classLabel true ...); use UEADataset for other files"
            )
        n = self.header.n_dims or 0
        if montage is not None:
            from chanformer.datasets.eeg.uea import uea_eeg_keys, uea_eeg_vocab

            if montage != "eeg_1005":
                raise ValueError(f"montage must be None or 'eeg_1005', got {montage!r}")
            if channel_names is not None:
                raise ValueError("give montage= or channel_names=, not both")
            channel_names = uea_eeg_keys(name)
        names = channel_names or [f"dim_{i}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"{name} has {n} dimensions but channel_names lists {len(names)}")
        self.channel_keys = _series_keys(names)
        if montage is not None and vocab_path is None:
            vocab = _channel_ids(self.channel_keys, uea_eeg_vocab())[0]
        else:
            vocab = _load_vocab(vocab_path, self.channel_keys)
        if resample_to is not None and resample_to < 1:
            raise ValueError(f"resample_to must be >= 1, got {resample_to}")
        super().__init__(vocab=vocab, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.name, self._length, self.val_fraction, self.channel_names = (
            name,
            length,
            val_fraction,
            channel_names,
        )
        self.normalize, self.pad, self.fill_missing = normalize, pad, fill_missing
        self.montage, self.resample_to = montage, resample_to
        self.holdout_fraction, self.holdout_seed = holdout_fraction, holdout_seed
        self.stats: ChannelStats | None = None
        if augment_shift or augment_scale or augment_noise or augment_channel_drop:
            self.augment = RandomShiftScale(augment_shift, augment_scale, augment_noise, augment_channel_drop)

    @cached_property
    def _data(self) -> dict[str, TsData]:
        data = {s: read_ts(p) for s, p in self.paths.items()}
        if self.resample_to is None:
            return data
        from chanformer.datasets.eeg.uea import resample_series

        return {s: replace(d, series=[resample_series(x, self.resample_to) for x in d.series]) for s, d in data.items()}

    @property
    def classes(self) -> list[str]:
        return list(self.header.class_labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n_channels(self) -> int:
        return len(self.channel_keys)

    @property
    def length(self) -> int:
        """Series length of every sample: the longest case in TRAIN and TEST (reads both files;
        a header's ``@seriesLength`` is not trusted alone, real archives carry slips).
        """
        if self._length is not None:
            return self._length
        return int(max(d.lengths.max() for d in self._data.values()))

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            vocab=self.vocab,
            n_times=self.length,
            num_classes=self.num_classes,
            class_names=self.classes,
            channels=list(self.channel_keys),
        )

    def input_contract(self) -> InputContract:
        """What a model trained here reads: the channel keys, each case resampled to
        ``resample_to`` samples (when set), standardised with the train part's per-channel
        mean/std (``normalize="dataset"``), then its first ``length`` steps kept and shorter
        cases completed by ``pad``. UEA archives carry no sampling rate (``sfreq`` unset: a
        pipeline takes arrays without one)."""
        if self.normalize == "dataset" and self.stats is None:
            self.setup("fit")
        stats = self.stats if self.normalize == "dataset" else None
        return _series_contract(self.channel_keys, stats, n_times=self.length, resample_to=self.resample_to,
                                crop="start", pad=self.pad,
                                extra={"archive": self.name, "fill_missing": self.fill_missing})  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        train = self._data["train"]
        kw: dict[str, Any] = dict(vocab=self.vocab, channel_names=self.channel_keys, length=self.length)
        kw |= dict(
            pad=self.pad, fill_missing=self.fill_missing, classes=self.classes, normalize=self.normalize
        )
        labels = train.class_indices()
        rest, held = stratified_split(labels, self.holdout_fraction, self.holdout_seed)
        tr_rel, va_rel = stratified_split(labels[rest], self.val_fraction, self.seed)
        tr_idx, va_idx = rest[tr_rel], rest[va_rel]
        train_ds = UEADataset(train, indices=tr_idx, **kw)
        self.train_dataset, self.stats = train_ds, train_ds.stats
        self.val_dataset = UEADataset(train, indices=va_idx, stats=self.stats, **kw) if len(va_idx) else None
        if len(held):  # the held-out part of TRAIN replaces the official TEST
            self.test_dataset = UEADataset(train, indices=held, stats=self.stats, **kw)
        else:
            self.test_dataset = UEADataset(self._data["test"], stats=self.stats, **kw)

    def val_dataloader(self) -> DataLoader | list:  # type: ignore[override]
        return [] if self.train_dataset is not None and self.val_dataset is None else super().val_dataloader()


_BUILTIN = {"macrodata": load_macrodata, "uschange": load_uschange}
#: Relative table paths not found from the working directory are tried from here (``../shared/data``).
_REPO_ROOT = Path(__file__).resolve().parents[2]


class ForecastingDataModule(ChannelDataModule):
    """Long-horizon forecasting windows from ``"macrodata"``, ``"uschange"`` or a CSV/Parquet path.

    Args:
        source: built-in name or a path of a table with a ``date`` column + one column per series;
            a relative path is tried from the working directory, then from the repository root.
        seq_len / horizon / stride: input window, forecast length, step between windows.
        split_scheme: ``"ratio"`` (70/10/20), ``"ett_hour"`` or ``"ett_minute"`` (12/4/4 months).
        freq: time-feature frequency (default ``"q"`` for the built-ins, else ``"h"``).
        columns: series to use (default: all but the date).
        scale: standardise with train-part statistics.
        vocab_path: JSON vocabulary to index channels with (default: ``series/<column>`` keys).

    """

    # mypy checks this file by its path (datasets.timeseries.*) and cannot follow the installed
    # chanformer.datasets.base, so the base's attribute is declared again for it.
    train_dataset: Dataset[ChannelSample] | None

    def __init__(
        self,
        source: str = "macrodata",
        seq_len: int = 24,
        horizon: int = 8,
        stride: int = 1,
        batch_size: int = 32,
        split_scheme: Literal["ratio", "ett_hour", "ett_minute"] = "ratio",
        freq: str | None = None,
        columns: list[str] | None = None,
        scale: bool = True,
        date_col: str = "date",
        num_workers: int = 0,
        seed: int = 0,
        vocab_path: str | None = None,
    ) -> None:
        self.source, self.date_col = source, date_col
        builtin = source.lower() in _BUILTIN
        self.freq = freq or ("q" if builtin else "h")
        names = [str(c) for c in (columns or self._columns()) if c != date_col]
        self.columns, self.channel_keys = names, _series_keys(names)
        vocab = _load_vocab(vocab_path, self.channel_keys)
        super().__init__(vocab=vocab, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.seq_len, self.horizon, self.stride = seq_len, horizon, stride
        self.split_scheme, self.scale = split_scheme, scale
        self.n_covariates = time_features(pd.DatetimeIndex([]), self.freq).shape[0]

    @cached_property
    def _path(self) -> Path:
        """The table's path: ``source`` as given, else relative to the repository root."""
        given = Path(self.source).expanduser()
        for path in (given, _REPO_ROOT / given):
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"forecasting table not found: {self.source!r} (tried {given.resolve()} and "
            f"{(_REPO_ROOT / given).resolve()}); pass --data.init_args.source=/path/to/table.csv "
            "or a built-in name ('macrodata', 'uschange')"
        )

    def _columns(self) -> list[str]:
        if self.source.lower() in _BUILTIN:
            return list(self._frame.columns)
        path = self._path
        try:
            if path.suffix.lower() in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                return list(pq.read_schema(path).names)
            return list(pd.read_csv(path, nrows=0).columns)
        except Exception as e:
            raise ValueError(f"cannot read the header of forecasting table {path}: {e}") from e

    @cached_property
    def _frame(self) -> pd.DataFrame:
        loader = _BUILTIN.get(self.source.lower())
        return loader() if loader else read_series_table(self._path)

    @property
    def n_channels(self) -> int:
        return len(self.columns)

    def _dataset(self, split: Literal["train", "val", "test"]) -> ForecastingDataset:
        return ForecastingDataset(
            self._frame, split=split, seq_len=self.seq_len, horizon=self.horizon, stride=self.stride,
            split_scheme=self.split_scheme, freq=self.freq, date_col=self.date_col, columns=self.columns,
            vocab=self.vocab, scale=self.scale,
        )  # fmt: skip

    @property
    def stats(self) -> ChannelStats | None:
        """Train-part scaler statistics (loads the table when ``setup`` has not run)."""
        if self.train_dataset is None:
            self.setup("fit")
        return self.train_dataset.stats  # type: ignore[union-attr]

    @property
    def spec(self) -> DataSpec:
        mean = std = None
        if self.stats is not None:
            ids = self.vocab.ids(self.channel_keys)
            mean, std = [0.0] * len(self.vocab), [1.0] * len(self.vocab)
            for k, i in enumerate(ids):
                mean[i], std[i] = float(self.stats.mean[k]), float(self.stats.std[k])
        return DataSpec(
            vocab=self.vocab, n_times=self.seq_len, horizon=self.horizon, channel_mean=mean, channel_std=std
        )

    def input_contract(self) -> InputContract:
        """What a forecaster trained here reads: ``seq_len``-step windows of the channel keys,
        standardised with the train rows' per-channel mean/std (``scale``), the calendar
        frequency ``freq`` and ``horizon`` recorded in ``extra``."""
        stats = self.stats if self.scale else None
        extra: dict[str, Any] = {"horizon": self.horizon, "freq": self.freq, "stride": self.stride}
        period = _period_seconds(self.freq)
        if period is not None:
            extra["period_s"] = period
        return _series_contract(self.channel_keys, stats, n_times=self.seq_len, extra=extra)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset, self.test_dataset = (
                self._dataset(s) for s in ("train", "val", "test")
            )  # type: ignore[assignment]
