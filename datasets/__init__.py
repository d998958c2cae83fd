"""Datasets and datamodules that emit :class:`~chanformer.batch.ChannelSample`, by field.

Subpackages: :mod:`~chanformer.datasets.timeseries`, :mod:`~chanformer.datasets.eeg`,
:mod:`~chanformer.datasets.imaging`, :mod:`~chanformer.datasets.speech`,
:mod:`~chanformer.datasets.wsi`; the generic datamodule base is :mod:`chanformer.datasets.base`.

Every public name is listed once, in ``_MODULES`` (defining submodule -> names); ``__all__`` and
the lazy (PEP 562) ``__getattr__`` are both built from it, so ``import chanformer.datasets``
stays cheap and optional heavy dependencies (lightning, xarray, mne) load only when their
classes are used. Type-checked code imports from the defining submodule.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, tuple[str, ...]] = {
    # generic datamodule base
    "base": ("ChannelDataModule", "stratified_split"),
    # xarray / zarr storage (any field)
    "xarray_io": ("XarrayDataset", "save_zarr"),
    # time series
    "timeseries.ts_format": ("TsData", "TsFormatError", "TsHeader", "read_ts", "read_ts_header"),
    "timeseries.sources": ("UEAMissingError", "list_uea_archives", "load_macrodata", "load_uschange", "read_series_table",
                           "uea_path"),
    "timeseries.datasets": ("ChannelStats", "ForecastingDataset", "UEADataset", "load_uea", "split_borders",
                            "time_features"),
    "timeseries.datamodules": ("ForecastingDataModule", "UEADataModule"),
    "timeseries.tslib": ("TSLibForecastingDataModule", "TSLibForecastingDataset", "TSLibMissingError"),
    # EEG / iEEG recordings
    "eeg.readers": ("EEGWindowDataset", "bipolar_pairs", "channel_keys", "channel_map", "euclidean_alignment",
            "read_recording", "scalp_bipolar_key"),
    "eeg.cache": ("CachedWindowDataset", "cache_windows"),
    "eeg.windows": ("EEGDataModule",),
    "eeg.sim": ("SeizureWindowDataset", "SimulatedIEEGDataModule", "SimulatedMIDataModule", "simulate_ieeg_seizures",
                "simulate_motor_imagery"),
    "eeg.uea": ("UEA_EEG_ELECTRODES", "UEAJointDataModule", "resample_series", "uea_eeg_keys", "uea_eeg_vocab"),
    "eeg.bci_iv": ("BCIIV2aDataset", "BCIIV2bDataset", "BCIIVDataModule", "BCIIVDataset", "BCIIVMissingError"),
    "eeg.chbmit": ("CHBMITDataModule", "CHBMITDataset", "CHBMITMissingError", "parse_chbmit_summary"),
    "eeg.tusz": ("TUSZDataModule", "TUSZDataset", "TUSZMissingError", "read_csv_bi"),
    "eeg.bids": ("BIDSEEGDataModule", "BIDSEEGDataset", "BIDSMissingError"),
    "eeg.physionet_mmi": ("PhysionetMMIDataModule", "PhysionetMMIDataset", "PhysionetMMIMissingError"),
    # images (microscopy, satellite)
    "imaging.datasets": ("ChannelNormalizer", "ImageAugment", "ImageManifestDataset", "channel_shuffle", "random_channel_drop",
                "random_flip_rot", "tile_grid"),
    "imaging.sim": ("CELL_PAINTING_STAINS", "SyntheticImageDataset", "cell_painting_vocab"),
    "imaging.datamodules": ("ImageDataModule", "cellprofiler_manifest"),
    "imaging.microscopy": ("ImageReadError", "read_image", "read_tile", "stain_key"),
    "imaging.satellite": ("SENSORS", "read_geotiff", "sensor_vocab"),
    "imaging.public": ("PublicDataMissingError",),
    "imaging.eurosat": ("EuroSATDataModule", "EuroSATDataset", "EuroSATMissingError"),
    "imaging.so2sat": ("So2SatDataModule", "So2SatDataset", "So2SatFormatError", "So2SatMissingError"),
    "imaging.bigearthnet": ("BigEarthNetDataModule", "BigEarthNetDataset", "BigEarthNetFormatError", "BigEarthNetMissingError"),
    "imaging.chammi": ("CHAMMIDataModule", "CHAMMIDataset", "CHAMMIFormatError", "CHAMMIMissingError"),
    "imaging.cellpainting": ("CellPaintingDataModule", "CellPaintingDataset", "CellPaintingFormatError",
                             "CellPaintingMissingError"),
    # whole-slide images and feature bags
    "wsi.slides": ("Slide", "SlideReadError", "TileGrid", "make_synthetic_slides", "tile_slide", "tissue_mask"),
    "wsi.store": ("BagStore",),
    "wsi.bags": ("BagDataModule", "BagDataset"),
    "wsi.public": ("WSIDataMissingError",),
    "wsi.clam": ("CLAMFeatureDataset", "CLAMFeaturesDataModule", "CLAMFeaturesMissingError", "read_clam_slide_table",
                 "read_clam_splits"),
    "wsi.camelyon16": ("Camelyon16BagDataset", "Camelyon16DataModule", "Camelyon16MissingError", "Camelyon16Slides",
                       "read_asap_xml", "tile_tumor_fraction"),
    # speech
    "speech.audio": ("AudioReadError", "mic_vocab", "read_audio", "resample"),
    "speech.augment": ("babble", "coloured_noise", "mix_at_snr", "random_crop", "rms_normalize", "speed_perturb",
                       "volume_perturb"),
    "speech.datasets": ("NoisyCleanDataset", "SpeakerFolderDataset", "UtteranceDataset"),
    "speech.trials": ("VerificationTrials",),
    "speech.synth": ("espeak_available", "generate_espeak_corpus", "make_noisy_clean_pairs"),
    "speech.datamodules": ("EnhancementDataModule", "SpeakerVerificationDataModule"),
    "speech.corpora": ("DNSChallengeDataModule", "DNSMixingDataset", "SpeechCorpusMissingError", "VoiceBankDEMANDDataModule",
                       "VoxCelebDataModule", "VoxCelebDataset"),
}  # fmt: skip

_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
