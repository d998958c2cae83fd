"""Lightning datamodule over :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Subset

from chanformer.channels import ChannelVocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.eeg.cache import CachedWindowDataset, cache_key, cache_windows, is_complete
from chanformer.datasets.eeg.readers import DATA_TYPES, EEGWindowDataset
from chanformer.spec import DataSpec

__all__ = ["EEGDataModule"]


class EEGDataModule(ChannelDataModule):
    """:class:`EEGWindowDataset` over ``paths``, split into train/val/test.

    ``split_by="recording"`` keeps every window of a recording in one split (no leakage
    between splits); ``"window"`` splits windows at random. The recordings are read when
    ``setup``, ``vocab`` or ``spec`` is first used (iEEG keys join the vocabulary then).
    Other arguments are those of :class:`EEGWindowDataset`.

    ``cache_dir``: cut the windows once into a Zarr store ``<cache_dir>/eeg-<hash>.zarr``
    (:func:`~chanformer.datasets.eeg.cache.cache_windows`) and read them lazily from it
    (:class:`~chanformer.datasets.eeg.cache.CachedWindowDataset`) from then on. The hash covers
    the dataset arguments and each file's path, size and mtime, so changing either rebuilds it.
    """

    def __init__(
        self,
        paths: list[str],
        mode: Literal["events", "windows"] = "windows",
        label_map: dict[str, int] | None = None,
        tmin: float = 0.0,
        tmax: float = 1.0,
        window_s: float = 2.0,
        stride_s: float | None = None,
        resample: float | None = None,
        l_freq: float | None = None,
        h_freq: float | None = None,
        euclidean_alignment: bool = False,
        picks: list[str] | None = None,
        ch_types: dict[str, str] | None = None,
        on_unknown: Literal["raise", "drop"] = "raise",
        bad_channels: Literal["raise", "drop"] = "raise",
        reference: Literal["none", "average", "bipolar"] = "none",
        cache_dir: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_by: Literal["recording", "window"] = "recording",
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if split_by not in ("recording", "window"):
            raise ValueError(f"split_by must be 'recording' or 'window', got {split_by!r}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"need val_fraction, test_fraction >= 0 summing to < 1, got {val_fraction}, {test_fraction}")
        self.save_hyperparameters()
        self.paths, self.split_by = list(paths), split_by
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._picks = tuple(picks or DATA_TYPES)
        self._kw = dict(
            mode=mode, label_map=label_map, tmin=tmin, tmax=tmax, window_s=window_s, stride_s=stride_s,
            resample=resample, l_freq=l_freq, h_freq=h_freq, euclidean_alignment=euclidean_alignment,
            picks=self._picks, ch_types=ch_types, on_unknown=on_unknown,
            bad_channels=bad_channels, reference=reference,
        )  # fmt: skip
        self.cache_dir = cache_dir
        self._dataset: EEGWindowDataset | CachedWindowDataset | None = None

    @property
    def cache_path(self) -> Path | None:
        """Zarr store of the windows for the current arguments and files (``None`` without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"eeg-{cache_key(self.paths, self._kw)}.zarr"

    @property
    def dataset(self) -> EEGWindowDataset | CachedWindowDataset:
        if self._dataset is None:
            path = self.cache_path
            if path is None:
                self._dataset = EEGWindowDataset(self.paths, **self._kw)  # type: ignore[arg-type]
            else:
                if not is_complete(path):
                    source = EEGWindowDataset(self.paths, **self._kw)  # type: ignore[arg-type]
                    cache_windows(source, path, overwrite=True)
                self._dataset = CachedWindowDataset(path)
        return self._dataset

    @property
    def vocab(self) -> ChannelVocab:
        return self.dataset.vocab

    @property
    def spec(self) -> DataSpec:
        ds = self.dataset
        return DataSpec(vocab=ds.vocab, n_times=ds.n_times, sfreq=ds.sfreq, num_classes=ds.num_classes)

    def input_contract(self) -> InputContract:
        """The preprocessing of these windows, for the pretrained export (rate, band-pass,
        reference, window or trial span, alignment, units volts, the channels seen)."""
        ds, kw = self.dataset, self._kw
        used = {k for keys in getattr(ds, "channel_keys", []) for k in keys}
        channels = [k for k in ds.vocab.keys if k in used] if used else list(ds.vocab.keys)
        events = kw["mode"] == "events"
        window = float(kw["tmax"]) - float(kw["tmin"]) if events else float(kw["window_s"])  # type: ignore[arg-type]
        stride = None if events else kw["stride_s"]
        extra = {"mode": kw["mode"]} | ({"tmin": kw["tmin"], "tmax": kw["tmax"], "label_map": kw["label_map"]} if events else {})
        picks = list(self._picks)
        return InputContract(
            modality="eeg", channels=channels, key_prefix="eeg/", sfreq=ds.sfreq, l_freq=kw["l_freq"],  # type: ignore[arg-type]
            h_freq=kw["h_freq"], reference=str(kw["reference"]), window_s=window, stride_s=stride,  # type: ignore[arg-type]
            n_times=ds.n_times or None, alignment="euclidean" if kw["euclidean_alignment"] else "none", units="V",
            picks=picks, extra=extra,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds, rng = self.dataset, np.random.default_rng(self.seed)
        n_units = len(ds.sources) if self.split_by == "recording" else len(ds)
        order = rng.permutation(n_units)
        n_test = round(self.test_fraction * n_units)
        n_val = round(self.val_fraction * n_units)
        if n_units - n_test - n_val < 1:
            raise ValueError(f"{n_units} {self.split_by}(s) leave none to train on after the val/test split")
        parts = np.split(order, [n_units - n_val - n_test, n_units - n_test])
        if self.split_by == "recording":
            parts = [np.flatnonzero(np.isin(ds.recording_of, p)) for p in parts]
        train, val, test = (Subset(ds, np.sort(p).tolist()) if len(p) else None for p in parts)
        self.train_dataset, self.val_dataset, self.test_dataset = train, val, test
