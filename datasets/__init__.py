"""Datasets and datamodules that emit :class:`~chanformer.batch.ChannelSample`.

Names are imported lazily (PEP 562), so ``import chanformer.datasets`` stays cheap and
optional heavy dependencies (lightning, xarray) load only when their classes are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # .ts format
    "TsData": "ts_format",
    "TsFormatError": "ts_format",
    "TsHeader": "ts_format",
    "read_ts": "ts_format",
    "read_ts_header": "ts_format",
    # offline sources
    "load_macrodata": "ts_sources",
    "load_uschange": "ts_sources",
    "read_series_table": "ts_sources",
    "uea_path": "ts_sources",
    # time-series datasets
    "ChannelStats": "timeseries",
    "ForecastingDataset": "timeseries",
    "UEADataset": "timeseries",
    "load_uea": "timeseries",
    "split_borders": "timeseries",
    "time_features": "timeseries",
    # xarray / zarr
    "XarrayDataset": "xarray_io",
    "save_zarr": "xarray_io",
    # datamodules
    "ChannelDataModule": "datamodule",
    "ForecastingDataModule": "datamodule",
    "UEADataModule": "datamodule",
    "stratified_split": "datamodule",
}

__all__ = [
    "ChannelDataModule",
    "ChannelStats",
    "ForecastingDataModule",
    "ForecastingDataset",
    "TsData",
    "TsFormatError",
    "TsHeader",
    "UEADataModule",
    "UEADataset",
    "XarrayDataset",
    "load_macrodata",
    "load_uea",
    "load_uschange",
    "read_series_table",
    "read_ts",
    "read_ts_header",
    "save_zarr",
    "split_borders",
    "stratified_split",
    "time_features",
    "uea_path",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from chanformer.datasets.datamodule import (
        ChannelDataModule,
        ForecastingDataModule,
        UEADataModule,
        stratified_split,
    )
    from chanformer.datasets.timeseries import (
        ChannelStats,
        ForecastingDataset,
        UEADataset,
        load_uea,
        split_borders,
        time_features,
    )
    from chanformer.datasets.ts_format import TsData, TsFormatError, TsHeader, read_ts, read_ts_header
    from chanformer.datasets.ts_sources import load_macrodata, load_uschange, read_series_table, uea_path
    from chanformer.datasets.xarray_io import XarrayDataset, save_zarr
