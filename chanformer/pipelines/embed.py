"""From a raw recording, image or sound to embeddings in one call.

:class:`Pipeline` loads a pretrained folder (or Hugging Face Hub id) with its input contract
(:class:`~chanformer.contract.InputContract`: rate, filters, reference, windows, alignment,
normaliser statistics, tile size, aliases) and applies that preprocessing to what it is given:

* an mne ``Raw`` or ``Epochs``, or an EEG file mne reads (EDF/BDF, BrainVision, EEGLAB, FIF,
  Nihon Kohden, Persyst, ...);
* an image file (OME-TIFF/TIFF, PNG, OME-Zarr, GeoTIFF with the contract's ``sensor``), or a
  list of one-file-per-channel images with ``channel_names``;
* an audio file (WAV, FLAC, OGG);
* an ``xarray.DataArray`` (``("channel", "time")`` with ``attrs["sfreq"]``, or
  ``("channel", "y", "x")``), or a numpy array with ``channel_names`` (and ``sfreq`` for signals).

Channel names are resolved against the channels the model was trained on
(:meth:`~chanformer.channels.ChannelVocab.resolve`: EDF decorations and references, case,
PhysioNet's padding dots, T3/T7-style synonyms, the contract's aliases); channels that are not
EEG, not known or not usable are left out and listed in :attr:`EmbeddingResult.dropped` with
the reason, never silently and never as a failure (unless nothing is left).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from chanformer.batch import ChannelBatch, non_eeg_reason, resolve_mne_channels
from chanformer.channels import Channel, ChannelVocab
from chanformer.contract import InputContract
from chanformer.hub import load_pretrained, resolve_pretrained
from chanformer.spec import DataSpec

__all__ = ["AUDIO_SUFFIXES", "EEG_SUFFIXES", "IMAGE_SUFFIXES", "EmbeddingResult", "Pipeline", "input_kind"]

EEG_SUFFIXES = (".edf", ".bdf", ".gdf", ".vhdr", ".set", ".fif", ".lay", ".eeg", ".cnt", ".mff", ".nxe", ".fif.gz")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr", ".bmp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def input_kind(path: str | os.PathLike[str]) -> str | None:
    """``"eeg"``, ``"image"`` or ``"audio"`` from a file name (``None``: not a known format)."""
    name = Path(path).name.lower()
    for kind, suffixes in (("eeg", EEG_SUFFIXES), ("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES)):
        if any(name.endswith(s) for s in suffixes):
            return kind
    return None


@dataclass
class EmbeddingResult:
    """Embeddings of one input.

    Attributes:
        embeddings: ``[N, D]`` float32: one row per window (signals), tile (images) or
            utterance/window (audio).
        channels: vocabulary keys of the channels the model read, in input order.
        dropped: input channel name -> why it was left out (``"stim channel"``,
            ``"not EEG (name)"``, ``"not in vocabulary ..."``, ``"flat"``, ...).
        source: what was embedded (file name, or a description).
        positions: per row: ``{"onset_s": [...]}`` (signals, window start in seconds after
            resampling) or ``{"y": [...], "x": [...]}`` (image tiles, top-left pixel).
    """

    embeddings: np.ndarray
    channels: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    source: str = ""
    positions: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def summary(self) -> str:
        """One line: rows, dimension, channels used and left out."""
        dim = self.embeddings.shape[1]
        out = f"{self.source or 'input'}: {len(self)} x {dim} embeddings from {len(self.channels)} channel(s)"
        if self.dropped:
            shown = ", ".join(f"{n} ({why})" for n, why in list(self.dropped.items())[:6])
            more = f", +{len(self.dropped) - 6} more" if len(self.dropped) > 6 else ""
            out += f"; left out {len(self.dropped)}: {shown}{more}"
        return out


def _trained_vocab(vocab: ChannelVocab, contract: InputContract) -> ChannelVocab:
    """The part of ``vocab`` the model was trained on (the contract's channels), same ids order."""
    if not contract.channels:
        return vocab
    keep = set(contract.channels)
    return ChannelVocab(f"{vocab.name} (trained channels)", [c for c in vocab if c.key in keep])


def _data_vocab(vocab: ChannelVocab, contract: InputContract) -> ChannelVocab:
    """The vocabulary the model's input batches are indexed with: the model's own, unless its
    channels are not those of the data (an audio encoder's vocabulary names mel bins while its
    input holds microphones); then the contract's channels in order (as the datamodule built them)."""
    if contract.channels and not all(k in vocab for k in contract.channels):
        return ChannelVocab("input", [Channel(k) for k in contract.channels])
    if contract.modality == "audio" and not contract.channels and "mic/0" not in vocab:
        return ChannelVocab("mic", [Channel(f"mic/{i}", kind="mic") for i in range(8)])
    return vocab


class Pipeline:
    """A pretrained encoder plus the preprocessing it was trained with.

    Args:
        model: an encoder (``model(batch) -> [B, D]``).
        contract: its input contract (default: what the vocabulary tells).
        vocab: the vocabulary its channel ids index (default: ``model.vocab``).
        device: where the model runs.
        batch_size: windows/tiles per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        contract: InputContract | None = None,
        vocab: ChannelVocab | None = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        vocab = vocab if vocab is not None else getattr(model, "vocab", None)
        if vocab is None:
            raise ValueError("Pipeline: the model has no channel vocabulary; pass vocab=")
        self.vocab: ChannelVocab = vocab
        self.contract = contract or getattr(model, "input_contract", None) or InputContract.from_spec(DataSpec(vocab=vocab))
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if batch_size < 1:
            raise ValueError(f"Pipeline(batch_size={batch_size}): must be >= 1")
        self.batch_size = int(batch_size)
        self.data_vocab = _data_vocab(vocab, self.contract)
        self.trained = _trained_vocab(self.data_vocab, self.contract)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Pipeline:
        """Load a pretrained folder or Hugging Face Hub id (``owner/name``; ``HF_HUB_OFFLINE=1``
        reads only the local cache) with its input contract."""
        folder = resolve_pretrained(path_or_id, revision=revision, cache_dir=cache_dir)
        model = load_pretrained(folder, map_location="cpu")
        if getattr(model, "input_contract", None) is None:
            warnings.warn(
                f"{path_or_id}: the pretrained folder has no input contract (exported before chanformer stored "
                "one); inputs are only matched by channel name, not resampled, filtered or normalised",
                UserWarning,
                stacklevel=2,
            )
        return cls(model, device=device, batch_size=batch_size)

    # -- entry point ---------------------------------------------------------------------------
    def __call__(
        self,
        data: Any,
        channel_names: Sequence[str] | None = None,
        *,
        sfreq: float | None = None,
        channel_types: Sequence[str] | None = None,
    ) -> EmbeddingResult:
        """Embed ``data`` (see the module docstring for what it can be).

        ``channel_names`` name the channels of a numpy array (or override a file's names;
        for a list of per-channel image files, one name per file); ``sfreq`` is the sampling
        rate of a numpy signal; ``channel_types`` optionally types them (``"eeg"``, ``"ecg"``, ...).
        """
        import xarray as xr

        if isinstance(data, (str, os.PathLike)):
            return self._from_path(Path(data), channel_names)
        if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
            return self._from_channel_files([Path(d) for d in data], channel_names)
        if _is_mne(data):
            return self._from_mne(data, channel_names)
        if isinstance(data, xr.DataArray):
            return self._from_xarray(data, channel_names)
        if isinstance(data, (np.ndarray, torch.Tensor)):
            arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
            return self._from_array(arr, channel_names, sfreq=sfreq, channel_types=channel_types)
        raise TypeError(
            f"Pipeline(): cannot embed a {type(data).__name__}; give a file path, an mne Raw/Epochs, an "
            "xarray.DataArray, a list of per-channel image files, or a numpy array with channel_names="
        )

    embed = __call__

    # -- inputs --------------------------------------------------------------------------------
    def _modality(self, fallback: str) -> str:
        return self.contract.modality or fallback

    def _from_path(self, path: Path, names: Sequence[str] | None) -> EmbeddingResult:
        if not path.exists():
            raise FileNotFoundError(f"Pipeline(): no such file or folder: {path}")
        kind = input_kind(path)
        if kind is None and path.is_dir():
            kind = "image"  # an OME-Zarr group without the .zarr suffix
        if kind == "eeg" or (kind is None and self.contract.modality == "eeg"):
            from chanformer.datasets.eeg.readers import read_recording

            return self._from_mne(read_recording(path), names, source=str(path))
        if kind == "image":
            from chanformer.datasets.imaging.microscopy import read_image

            da = read_image(path, sensor=self.contract.sensor) if self.contract.sensor else read_image(path)
            return self._from_xarray(da, names, source=str(path))
        if kind == "audio":
            from chanformer.datasets.speech.audio import read_audio

            x, sr = read_audio(path, int(self.contract.sfreq) if self.contract.sfreq else None)
            keys = names or [f"mic/{i}" for i in range(x.shape[0])]
            return self._embed_signal(x, list(keys), None, float(sr), source=str(path), modality="audio")
        raise ValueError(
            f"Pipeline(): {path.name}: unknown file type; expected EEG ({', '.join(EEG_SUFFIXES)}), image "
            f"({', '.join(IMAGE_SUFFIXES)}) or audio ({', '.join(AUDIO_SUFFIXES)})"
        )

    def _from_channel_files(self, paths: list[Path], names: Sequence[str] | None) -> EmbeddingResult:
        """One image file per channel (as high-content screens store them), stacked."""
        from chanformer.datasets.imaging.microscopy import read_image

        if names is None or len(names) != len(paths):
            raise ValueError(f"Pipeline(): {len(paths)} per-channel image files need channel_names= with one name each")
        planes = []
        for p in paths:
            da = read_image(p)
            if da.shape[0] != 1:
                raise ValueError(f"Pipeline(): {p} has {da.shape[0]} channels; per-channel files must hold one each")
            planes.append(np.asarray(da.values)[0])
        shapes = {pl.shape for pl in planes}
        if len(shapes) > 1:
            raise ValueError(f"Pipeline(): per-channel files differ in size: {sorted(shapes)} ({', '.join(map(str, paths))})")
        source = f"{paths[0].parent}/{{{', '.join(p.name for p in paths)}}}"
        return self._embed_image(np.stack(planes), list(names), source=source)

    def _from_mne(self, inst: Any, names: Sequence[str] | None, source: str | None = None) -> EmbeddingResult:
        import mne

        src = source or _mne_source(inst)
        ch_names = list(names) if names is not None else list(inst.ch_names)
        if len(ch_names) != len(inst.ch_names):
            raise ValueError(f"Pipeline(): channel_names lists {len(ch_names)} names for {len(inst.ch_names)} channels")
        data = inst.get_data()
        epochs = isinstance(inst, mne.BaseEpochs)
        return self._embed_signal(data, ch_names, list(inst.get_channel_types()), float(inst.info["sfreq"]), source=src,
                                  epochs=epochs, modality="eeg")  # fmt: skip

    def _from_xarray(self, da: Any, names: Sequence[str] | None, source: str | None = None) -> EmbeddingResult:
        if "channel" not in da.dims:
            raise ValueError(f"Pipeline(): the DataArray needs a 'channel' dimension (dims: {da.dims})")
        ch = list(names) if names is not None else [str(k) for k in da.coords["channel"].values]
        src = source or str(da.attrs.get("source", da.name or "DataArray"))
        if {"y", "x"} <= set(da.dims):
            return self._embed_image(da.transpose("channel", "y", "x"), ch, source=src)
        other = [d for d in da.dims if d != "channel"]
        if len(other) != 1:
            raise ValueError(f"Pipeline(): a signal DataArray needs dims ('channel', time), got {da.dims}")
        sfreq = da.attrs.get("sfreq")
        if sfreq is None:
            raise ValueError("Pipeline(): the signal DataArray has no attrs['sfreq'] (sampling rate in Hz)")
        values = np.asarray(da.transpose("channel", other[0]).values)
        return self._embed_signal(values, ch, None, float(sfreq), source=src, modality=self._modality("series"))

    def _from_array(self, arr: np.ndarray, names: Sequence[str] | None, *, sfreq: float | None,
                    channel_types: Sequence[str] | None) -> EmbeddingResult:  # fmt: skip
        modality = self._modality("")
        if modality == "audio" and arr.ndim == 1:
            arr = arr[None]
        if names is None:
            if modality == "audio":
                names = [f"mic/{i}" for i in range(arr.shape[-2] if arr.ndim >= 2 else 1)]
            else:
                raise ValueError("Pipeline(): a numpy array needs channel_names= (one per channel)")
        if modality == "image" or (modality == "" and arr.ndim == 3 and sfreq is None):
            if arr.ndim != 3:
                raise ValueError(f"Pipeline(): an image array must be [C, H, W], got shape {arr.shape}")
            return self._embed_image(arr, list(names), source="array")
        if sfreq is None:
            if self.contract.sfreq is not None or self.contract.window_s is not None or modality not in ("", "series"):
                raise ValueError("Pipeline(): a signal array needs sfreq= (its sampling rate in Hz)")
        if arr.ndim not in (2, 3):
            raise ValueError(f"Pipeline(): a signal array must be [C, T] or [N, C, T], got shape {arr.shape}")
        rate = None if sfreq is None else float(sfreq)  # None: a series model without a rate (UEA cases)
        return self._embed_signal(arr, list(names), channel_types, rate, source="array", epochs=arr.ndim == 3,
                                  modality=modality or "series")  # fmt: skip

    # -- channel resolution ------------------------------------------------------------------------
    def _prefix(self, modality: str) -> str:
        if self.contract.key_prefix:
            return self.contract.key_prefix
        return {"eeg": "eeg/", "audio": "mic/", "series": "series/", "image": "stain/"}.get(modality, "")

    def resolve(self, names: Sequence[str], types: Sequence[str] | None = None,
                modality: str = "") -> tuple[list[int], list[str], dict[str, str]]:  # fmt: skip
        """``(kept indices, keys, {left-out name: reason})`` for input channel ``names``."""
        prefix = self._prefix(modality or self.contract.modality)
        aliases = self.contract.aliases
        if modality == "eeg":
            kept, keys, dropped = resolve_mne_channels(names, types, self.trained, prefix=prefix, aliases=aliases)
        else:
            kept, keys, dropped = [], [], {}
            sensor = None
            if self.contract.sensor:
                from chanformer.datasets.imaging.satellite import get_sensor

                sensor = get_sensor(self.contract.sensor)
            for i, name in enumerate(names):
                bare = name.split("/", 1)[1] if "/" in name else name
                key = self.trained.resolve(name, prefix, aliases) or self.trained.resolve(bare, prefix, aliases)
                band = sensor.canonical(bare) if sensor is not None and key is None else None
                if band is not None and sensor is not None and sensor.key(band) in self.trained:
                    key = sensor.key(band)  # band names: B4 / B04 / band_4 -> s2/B04
                if key is None:
                    dropped[name] = f"not in vocabulary {self.trained.name!r}"
                elif key in keys:
                    dropped[name] = f"duplicate of {names[kept[keys.index(key)]]!r} ({key})"
                else:
                    kept.append(i)
                    keys.append(key)
        for name, why in list(dropped.items()):
            if why.startswith("not in vocabulary"):
                known = self.vocab.resolve(name, prefix, aliases) if self.trained is not self.vocab else None
                if known is not None:
                    dropped[name] = f"{known} was not among the model's training channels"
                elif modality == "eeg" and non_eeg_reason(name):
                    dropped[name] = "not EEG (name)"
                else:
                    dropped[name] = f"unknown channel name (none of the model's {len(self.trained)} channels)"
        if not kept:
            listing = ", ".join(f"{n} ({w})" for n, w in list(dropped.items())[:10])
            raise ValueError(
                f"Pipeline(): no channel of the input matches the model's channels ({len(self.trained)} in "
                f"{self.trained.name!r}, e.g. {', '.join(self.trained.keys[:5])}); left out: {listing}"
            )
        return kept, keys, dropped

    # -- signals ---------------------------------------------------------------------------------
    def _embed_signal(self, data: np.ndarray, names: list[str], types: Sequence[str] | None, rate: float | None, *,
                      source: str, epochs: bool = False, modality: str = "eeg") -> EmbeddingResult:  # fmt: skip
        """``rate`` ``None``: a series without a sampling rate (lengths count samples; batches carry none)."""
        c = self.contract
        sfreq = 1.0 if rate is None else rate
        if len(names) != data.shape[-2]:
            raise ValueError(f"Pipeline(): {len(names)} channel names for {data.shape[-2]} channels ({source})")
        kept, keys, dropped = self.resolve(names, types, modality)
        key_names = {k: names[i] for k, i in zip(keys, kept)}
        x = np.asarray(data, dtype=np.float64)[..., kept, :]
        x, keys, bad = _drop_unusable(x, keys, [names[i] for i in kept])
        dropped.update(bad)
        if c.reference == "average":
            x = x - x.mean(axis=-2, keepdims=True)
        elif c.reference == "bipolar":
            raise NotImplementedError("Pipeline(): the model was trained on bipolar pairs; build them with "
                                      "chanformer.datasets.EEGWindowDataset(reference='bipolar') for now")  # fmt: skip
        if c.l_freq is not None or c.h_freq is not None:
            import mne

            x = mne.filter.filter_data(x, sfreq, c.l_freq, c.h_freq, verbose="error")
        if c.sfreq is not None and abs(c.sfreq - sfreq) > 1e-9:
            import mne

            x = mne.filter.resample(x, up=c.sfreq, down=sfreq, npad="auto", verbose="error")
            sfreq = c.sfreq
        if c.resample_to is not None and x.shape[-1] != c.resample_to:
            from chanformer.datasets.eeg.uea import resample_series

            sfreq = sfreq * c.resample_to / x.shape[-1]
            x = resample_series(x, c.resample_to)
        single = c.crop != "windows"  # one sample per input (or per epoch), cut after the normaliser
        if epochs or single:
            windows = x if x.ndim == 3 else x[None]
            onsets = np.full(windows.shape[0], np.nan if epochs else 0.0)
        else:
            windows, onsets = _windows(x, sfreq, c, source)
        if c.alignment == "euclidean":
            from chanformer.datasets.eeg.readers import euclidean_alignment

            windows = euclidean_alignment(windows.astype(np.float32))
        if c.scale is not None:
            windows = windows * c.scale
        windows, keys, norm_dropped = self._normalise(windows, keys, key_names)
        dropped.update(norm_dropped)
        if single:
            windows, starts = _fit_length(windows, _length(c, sfreq), c.crop, c.pad)
            if not epochs:
                onsets = starts / sfreq
        if c.loudness_db is not None:
            from chanformer.datasets.speech.augment import rms_normalize

            windows = np.stack([rms_normalize(w.astype(np.float32), c.loudness_db) for w in windows])
        if c.features.get("fbank") is not None:
            emb = self._run_fbank(windows.astype(np.float32), c.features)
        else:
            emb = self._run(windows.astype(np.float32), keys, sfreq=None if rate is None else sfreq)
        return EmbeddingResult(emb, keys, dropped, source, {"onset_s": onsets})

    # -- images ----------------------------------------------------------------------------------
    def _embed_image(self, arr: Any, names: list[str], *, source: str) -> EmbeddingResult:
        if len(names) != arr.shape[0]:
            raise ValueError(f"Pipeline(): {len(names)} channel names for {arr.shape[0]} channels ({source})")
        kept, keys, dropped = self.resolve(names, None, "image")
        c = self.contract
        h, w = int(arr.shape[-2]), int(arr.shape[-1])
        size = c.tile_size or c.image_size
        if size is None:
            starts = [(0, 0)]
            th = tw = None
        else:
            from chanformer.datasets.imaging.datasets import tile_grid

            if size > h or size > w:
                raise ValueError(f"Pipeline(): {source}: image {h}x{w} is smaller than the model's {size}x{size} tiles")
            starts = tile_grid((h, w), size)
            th = tw = size
        values = np.asarray(arr[kept] if not hasattr(arr, "isel") else arr.isel(channel=kept).values, dtype=np.float64)
        tiles = np.stack([values[:, y : y + (th or h), x : x + (tw or w)] for y, x in starts])
        tiles, keys, norm_dropped = self._normalise(tiles, keys, {k: names[i] for k, i in zip(keys, kept)})
        dropped.update(norm_dropped)
        emb = self._run(tiles.astype(np.float32), keys)
        pos = {"y": np.array([s[0] for s in starts]), "x": np.array([s[1] for s in starts])}
        return EmbeddingResult(emb, keys, dropped, source, pos)

    # -- shared ----------------------------------------------------------------------------------
    def _normalise(self, x: np.ndarray, keys: list[str],
                   names: dict[str, str]) -> tuple[np.ndarray, list[str], dict[str, str]]:  # fmt: skip
        """Apply the contract's per-channel statistics ``(x - offset) / scale`` to ``[N, C, ...]``;
        channels without statistics are left out (``names``: key -> input name, for the report)."""
        norm = self.contract.normalizer
        if not norm:
            return x, keys, {}
        stats = norm["stats"]
        have = [i for i, k in enumerate(keys) if k in stats]
        dropped = {names.get(k, k): f"no normaliser statistics for {k} in the model" for k in keys if k not in stats}
        if not have:
            raise ValueError(f"Pipeline(): none of the channels {keys} has normaliser statistics in the model")
        x = np.take(x, have, axis=1)
        keys = [keys[i] for i in have]
        shape = [1, len(keys)] + [1] * (x.ndim - 2)
        a = np.array([float(stats[k][0]) for k in keys]).reshape(shape)
        b = np.array([float(stats[k][1]) for k in keys]).reshape(shape)
        return (x - a) / np.where(b > 0, b, 1.0), keys, dropped

    @torch.inference_mode()
    def _run_fbank(self, x: np.ndarray, features: dict[str, Any]) -> np.ndarray:
        """Audio encoders that read log-mel features (ECAPA-TDNN): every present microphone of each
        window through the stored Fbank front end (``features["fbank"]``, the keyword arguments
        of :class:`~chanformer.transforms.audio.Fbank`) and per-utterance mean normalisation
        (unless ``features["normalise"]`` is ``"none"``), then the mean over microphones."""
        from chanformer.transforms.audio import Fbank, sentence_mean_norm

        to_batch = getattr(self.model, "batch_from_features", None)
        if not callable(to_batch):
            raise TypeError(f"Pipeline(): the contract names an Fbank front end but {type(self.model).__name__} "
                            "has no batch_from_features()")  # fmt: skip
        fbank = Fbank(**features["fbank"]).to(self.device)
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            chunk = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
            n, c, length = chunk.shape
            feats = fbank(chunk.reshape(n * c, length))
            if features.get("normalise", "sentence_mean") != "none":
                feats = sentence_mean_norm(feats)
            emb = self.model(to_batch(feats.transpose(1, 2)))
            outs.append(emb.reshape(n, c, -1).mean(1).float().cpu().numpy())
        return np.concatenate(outs)

    @torch.inference_mode()
    def _run(self, x: np.ndarray, keys: list[str], *, sfreq: float | None = None) -> np.ndarray:
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            batch = ChannelBatch.from_numpy(x[i : i + self.batch_size], keys, self.data_vocab, sfreq=sfreq).to(self.device)
            out = self.model(batch)
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise TypeError(f"Pipeline(): {type(self.model).__name__} returned {shape}, not embeddings [B, D]")
            outs.append(out.float().cpu().numpy())
        return np.concatenate(outs)


def _is_mne(obj: Any) -> bool:
    try:
        import mne
    except ImportError:  # pragma: no cover - mne is a dependency
        return False
    return isinstance(obj, (mne.io.BaseRaw, mne.BaseEpochs))


def _mne_source(inst: Any) -> str:
    files = [f for f in (getattr(inst, "filenames", None) or ()) if f is not None]
    return str(files[0]) if files else type(inst).__name__


def _drop_unusable(x: np.ndarray, keys: list[str], names: list[str]) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Leave out channels holding NaN/inf or constant over the recording (named)."""
    axes = tuple(i for i in range(x.ndim) if i != x.ndim - 2)
    finite = np.isfinite(x).all(axis=axes)
    safe = np.where(np.isfinite(x), x, 0.0)
    flat = (safe.max(axis=axes) - safe.min(axis=axes)) == 0
    bad = {names[i]: ("non-finite values" if not finite[i] else "flat (constant)") for i in range(len(keys))
           if not finite[i] or flat[i]}  # fmt: skip
    if not bad:
        return x, keys, {}
    good = [i for i in range(len(keys)) if finite[i] and not flat[i]]
    if not good:
        raise ValueError(f"Pipeline(): every channel is flat or non-finite: {bad}")
    return np.take(x, good, axis=-2), [keys[i] for i in good], bad


def _length(c: InputContract, sfreq: float) -> int | None:
    """Samples per model input: ``n_times``, else ``window_s`` at ``sfreq``, else ``None`` (any)."""
    if c.n_times is not None:
        return c.n_times
    return round(c.window_s * sfreq) if c.window_s is not None else None


def _pad(x: np.ndarray, n: int, pad: str) -> np.ndarray:
    """``x [..., T]`` completed to ``n`` samples: ``"edge"``, ``"zero"`` or ``"wrap"`` (tiled, as
    :func:`chanformer.datasets.speech.augment.random_crop`); ``"none"`` leaves it short."""
    t = x.shape[-1]
    if t >= n or pad == "none":
        return x
    if pad == "wrap":
        return np.concatenate([x] * (n // t + 1), axis=-1)[..., :n]
    width = [(0, 0)] * (x.ndim - 1) + [(0, n - t)]
    return np.pad(x, width, mode="edge") if pad == "edge" and t > 0 else np.pad(x, width)


def _fit_length(x: np.ndarray, n: int | None, crop: str, pad: str) -> tuple[np.ndarray, np.ndarray]:
    """One sample per row of ``x [N, C, T]`` cut to ``n`` samples as in training (``crop``:
    ``"start"`` keeps the first ``n``, ``"centre"`` the centre window) or completed by ``pad``;
    returns the samples and each one's start (in samples)."""
    if n is None:
        return x, np.zeros(x.shape[0])
    t = x.shape[-1]
    if t < n:
        return _pad(x, n, pad), np.zeros(x.shape[0])
    start = (t - n) // 2 if crop == "centre" else 0
    return x[..., start : start + n], np.full(x.shape[0], float(start))


def _windows(x: np.ndarray, sfreq: float, c: InputContract, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``[C, T]`` into ``[N, C, n]`` windows as in training: ``window_s``/``stride_s``, else
    ``n_times`` samples end to end, else the whole recording."""
    if c.window_s is not None:
        n = round(c.window_s * sfreq)
        step = round((c.stride_s or c.window_s) * sfreq)
    elif c.n_times is not None:
        n, step = c.n_times, c.n_times
    else:
        return x[None], np.zeros(1)
    if c.n_times is not None and n != c.n_times:
        n = c.n_times
    if x.shape[-1] < n and c.pad != "none":
        x = _pad(x, n, c.pad)
    total = x.shape[-1]
    if total < n:
        raise ValueError(
            f"Pipeline(): {source} holds {total} samples at {sfreq:g} Hz ({total / sfreq:.3g} s), shorter than one "
            f"{n}-sample window the model reads"
        )
    starts = np.arange(0, total - n + 1, step)
    return np.stack([x[:, s : s + n] for s in starts]), starts / sfreq
