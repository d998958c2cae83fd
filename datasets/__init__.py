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
    "UEA_EEG_ELECTRODES": "uea_eeg",
    "UEAJointDataModule": "uea_eeg",
    "resample_series": "uea_eeg",
    "uea_eeg_keys": "uea_eeg",
    "uea_eeg_vocab": "uea_eeg",
    "ChannelStats": "timeseries",
    "ForecastingDataset": "timeseries",
    "UEADataset": "timeseries",
    "load_uea": "timeseries",
    "split_borders": "timeseries",
    "time_features": "timeseries",
    # xarray / zarr
    "XarrayDataset": "xarray_io",
    "save_zarr": "xarray_io",
    # EEG / iEEG recordings
    "EEGDataModule": "eeg_windows",
    "EEGWindowDataset": "eeg",
    "bipolar_pairs": "eeg",
    "CachedWindowDataset": "eeg_cache",
    "cache_windows": "eeg_cache",
    "channel_keys": "eeg",
    "channel_map": "eeg",
    "euclidean_alignment": "eeg",
    "read_recording": "eeg",
    "SeizureWindowDataset": "eeg_sim",
    "SimulatedIEEGDataModule": "eeg_sim",
    "SimulatedMIDataModule": "eeg_sim",
    "simulate_ieeg_seizures": "eeg_sim",
    "simulate_motor_imagery": "eeg_sim",
    # images (microscopy, satellite)
    "ChannelNormalizer": "imaging",
    "ImageAugment": "imaging",
    "ImageManifestDataset": "imaging",
    "channel_shuffle": "imaging",
    "random_channel_drop": "imaging",
    "random_flip_rot": "imaging",
    "tile_grid": "imaging",
    "CELL_PAINTING_STAINS": "imaging_sim",
    "SyntheticImageDataset": "imaging_sim",
    "cell_painting_vocab": "imaging_sim",
    "ImageDataModule": "image_datamodule",
    "cellprofiler_manifest": "image_datamodule",
    "ImageReadError": "microscopy",
    "read_image": "microscopy",
    "read_tile": "microscopy",
    "stain_key": "microscopy",
    "SENSORS": "satellite",
    "read_geotiff": "satellite",
    "sensor_vocab": "satellite",
    # whole-slide images and feature bags
    "Slide": "wsi",
    "SlideReadError": "wsi",
    "TileGrid": "wsi",
    "make_synthetic_slides": "wsi",
    "tile_slide": "wsi",
    "tissue_mask": "wsi",
    "BagDataModule": "bags",
    "BagDataset": "bags",
    "BagStore": "bags",
    # speech
    "AudioReadError": "speech",
    "EnhancementDataModule": "speech",
    "NoisyCleanDataset": "speech",
    "SpeakerFolderDataset": "speech",
    "SpeakerVerificationDataModule": "speech",
    "UtteranceDataset": "speech",
    "VerificationTrials": "speech",
    "babble": "speech",
    "coloured_noise": "speech",
    "espeak_available": "speech",
    "generate_espeak_corpus": "speech",
    "make_noisy_clean_pairs": "speech",
    "mic_vocab": "speech",
    "mix_at_snr": "speech",
    "random_crop": "speech",
    "read_audio": "speech",
    "resample": "speech",
    "rms_normalize": "speech",
    "speed_perturb": "speech",
    "volume_perturb": "speech",
    # datamodules
    "ChannelDataModule": "datamodule",
    "ForecastingDataModule": "datamodule",
    "UEADataModule": "datamodule",
    "stratified_split": "datamodule",
}

__all__ = [
    "AudioReadError",
    "EnhancementDataModule",
    "NoisyCleanDataset",
    "SpeakerFolderDataset",
    "SpeakerVerificationDataModule",
    "UtteranceDataset",
    "VerificationTrials",
    "babble",
    "coloured_noise",
    "espeak_available",
    "generate_espeak_corpus",
    "make_noisy_clean_pairs",
    "mic_vocab",
    "mix_at_snr",
    "random_crop",
    "read_audio",
    "resample",
    "rms_normalize",
    "speed_perturb",
    "volume_perturb",
    "BagDataModule",
    "BagDataset",
    "BagStore",
    "Slide",
    "SlideReadError",
    "TileGrid",
    "make_synthetic_slides",
    "tile_slide",
    "tissue_mask",
    "CELL_PAINTING_STAINS",
    "ImageDataModule",
    "SyntheticImageDataset",
    "cell_painting_vocab",
    "cellprofiler_manifest",
    "ChannelDataModule",
    "ChannelNormalizer",
    "ChannelStats",
    "EEGDataModule",
    "EEGWindowDataset",
    "CachedWindowDataset",
    "ForecastingDataModule",
    "ForecastingDataset",
    "ImageAugment",
    "ImageManifestDataset",
    "ImageReadError",
    "SENSORS",
    "SeizureWindowDataset",
    "SimulatedIEEGDataModule",
    "SimulatedMIDataModule",
    "TsData",
    "TsFormatError",
    "TsHeader",
    "UEADataModule",
    "UEADataset",
    "UEAJointDataModule",
    "UEA_EEG_ELECTRODES",
    "XarrayDataset",
    "bipolar_pairs",
    "cache_windows",
    "channel_keys",
    "channel_map",
    "channel_shuffle",
    "euclidean_alignment",
    "load_macrodata",
    "load_uea",
    "load_uschange",
    "random_channel_drop",
    "random_flip_rot",
    "read_geotiff",
    "read_image",
    "read_recording",
    "read_series_table",
    "read_tile",
    "read_ts",
    "read_ts_header",
    "save_zarr",
    "sensor_vocab",
    "simulate_ieeg_seizures",
    "simulate_motor_imagery",
    "split_borders",
    "stain_key",
    "stratified_split",
    "tile_grid",
    "time_features",
    "uea_eeg_keys",
    "uea_eeg_vocab",
    "uea_path",
    "resample_series",
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
    from chanformer.datasets.bags import BagDataModule, BagDataset, BagStore
    from chanformer.datasets.datamodule import (
        ChannelDataModule,
        ForecastingDataModule,
        UEADataModule,
        stratified_split,
    )
    from chanformer.datasets.eeg import (
        EEGWindowDataset,
        bipolar_pairs,
        channel_keys,
        channel_map,
        euclidean_alignment,
        read_recording,
    )
    from chanformer.datasets.eeg_cache import CachedWindowDataset, cache_windows
    from chanformer.datasets.eeg_sim import (
        SeizureWindowDataset,
        SimulatedIEEGDataModule,
        SimulatedMIDataModule,
        simulate_ieeg_seizures,
        simulate_motor_imagery,
    )
    from chanformer.datasets.eeg_windows import EEGDataModule
    from chanformer.datasets.image_datamodule import ImageDataModule, cellprofiler_manifest
    from chanformer.datasets.imaging import (
        ChannelNormalizer,
        ImageAugment,
        ImageManifestDataset,
        channel_shuffle,
        random_channel_drop,
        random_flip_rot,
        tile_grid,
    )
    from chanformer.datasets.imaging_sim import CELL_PAINTING_STAINS, SyntheticImageDataset, cell_painting_vocab
    from chanformer.datasets.microscopy import ImageReadError, read_image, read_tile, stain_key
    from chanformer.datasets.satellite import SENSORS, read_geotiff, sensor_vocab
    from chanformer.datasets.speech import (
        AudioReadError,
        EnhancementDataModule,
        NoisyCleanDataset,
        SpeakerFolderDataset,
        SpeakerVerificationDataModule,
        UtteranceDataset,
        VerificationTrials,
        babble,
        coloured_noise,
        espeak_available,
        generate_espeak_corpus,
        make_noisy_clean_pairs,
        mic_vocab,
        mix_at_snr,
        random_crop,
        read_audio,
        resample,
        rms_normalize,
        speed_perturb,
        volume_perturb,
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
    from chanformer.datasets.wsi import Slide, SlideReadError, TileGrid, make_synthetic_slides, tile_slide, tissue_mask
    from chanformer.datasets.xarray_io import XarrayDataset, save_zarr
