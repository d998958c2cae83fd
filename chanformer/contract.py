"""The input contract: what a model expects of its input, saved beside its weights.

A pretrained folder holds weights, a channel vocabulary and, in ``config.json`` under
``"input_contract"``, an :class:`InputContract`: the sampling rate, filters, reference,
windowing, alignment, units, per-channel normaliser statistics (keyed by channel key), image
tile size, spectral front-end parameters and channel aliases the model was trained with. A
datamodule that knows its preprocessing answers ``input_contract()``; tasks write it at export;
:class:`chanformer.pipelines.Pipeline` reads it back and applies it to a new recording, so a
user never has to find these values in a recipe.

This module is part of the core layer (datasets build contracts; hub saves them; pipelines
apply them), and holds only plain, JSON-round-trippable data.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from chanformer.spec import DataSpec

__all__ = ["CONTRACT_VERSION", "MODALITIES", "InputContract"]

CONTRACT_VERSION = 1
#: What a model reads: electrophysiology, images (microscopy, satellite), audio, generic series.
MODALITIES = ("", "eeg", "image", "audio", "series")
_REFERENCES = ("none", "average", "bipolar")
_ALIGNMENTS = ("none", "euclidean")
_CROPS = ("windows", "start", "centre")
_PADS = ("none", "edge", "zero", "wrap")


def _opt_float(name: str, value: Any, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"InputContract.{name} must be a number or None, got {value!r}") from None
    if not math.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"InputContract.{name} must be a finite{' positive' if positive else ''} number, got {value!r}")
    return out


@dataclass
class InputContract:
    """Preprocessing a model was trained with, in plain JSON-able fields.

    Attributes:
        modality: ``"eeg"``, ``"image"``, ``"audio"``, ``"series"`` (``""`` = unknown).
        channels: vocabulary keys the model was trained on (in vocabulary order); names of a
            new recording are resolved against these first, so ``T3`` finds ``eeg/T7`` when the
            model knows T7.
        key_prefix: namespace of bare channel names (``"eeg/"``, ``"stain/"``, ``"mic/"``,
            ``"series/"``): ``C3`` is looked up as ``eeg/C3``.
        sfreq: sampling rate in Hz the model expects (signals and audio are resampled to it).
        l_freq / h_freq: band-pass edges in Hz (``None`` = that edge unfiltered).
        reference: ``"none"`` (as recorded), ``"average"`` (common average) or ``"bipolar"``.
        window_s / stride_s: window length and step in seconds cut from a continuous recording
            (``None``: the whole recording is one sample).
        n_times: samples per window the model was built for (``window_s * sfreq`` usually).
        resample_to: every input (each case) resampled to this many samples, whatever its rate
            (polyphase, :func:`chanformer.datasets.eeg.uea.resample_series`), before the rest;
            for archives whose cases differ in rate or duration (UEA ``resample_to``).
        crop: how an input is cut to the model's length (``n_times``, else ``window_s``):
            ``"windows"`` (sliding windows of ``window_s``/``stride_s``), ``"start"`` (one
            sample: the first ``n_times`` steps, as UEA archives) or ``"centre"`` (one sample:
            the centre window, as speech evaluation).
        pad: how an input shorter than that length is completed: ``"none"`` (refused when
            cutting windows, left short otherwise), ``"edge"`` (last value repeated),
            ``"zero"`` (zeros, after the normaliser) or ``"wrap"`` (the input tiled).
        loudness_db: each sample scaled to this RMS level in dB full scale over all its
            channels (speech: -25), after cropping; ``None`` = no loudness normalisation.
        alignment: ``"none"`` or ``"euclidean"`` (each recording's windows whitened by their
            mean spatial covariance, as in training).
        scale: factor the values were multiplied by after alignment (e.g. ``1e5``: volts to
            units of 10 microvolts); ``None`` = 1.
        units: units of the values the model saw: ``"V"`` (EEG in volts), ``"full scale"``
            (audio in [-1, 1]), ``"normalised"`` (after the normaliser), ...
        normalizer: per-channel statistics applied as ``(x - offset) / scale`` after the steps
            above: ``{"method": ..., "stats": {channel key: [offset, scale]}}`` (the JSON of
            :class:`chanformer.datasets.imaging.datasets.ChannelNormalizer`).
        tile_size: square tile side in pixels cut from an image (``None``: the whole image).
        image_size: side of the images the model was built for, when fixed.
        sensor: satellite sensor whose band names resolve GeoTIFF bands (``"sentinel2"``, ...).
        features: spectral front end. ``{"fbank": {...}}`` (keyword arguments of
            :class:`~chanformer.transforms.audio.Fbank`, with ``"normalise"``:
            ``"sentence_mean"`` or ``"none"``) is applied by the pipeline for encoders that read
            log-mel features (ECAPA-TDNN); ``{"stft": {...}}`` records the STFT a model computes
            itself (MambAttention), for people to read.
        aliases: extra channel names -> vocabulary key (``{"Hoechst": "stain/DNA"}``), tried
            before the built-in rules (case-insensitive).
        picks: channel types kept from an mne recording (``["eeg"]``; iEEG adds ``seeg``/``ecog``).
        extra: anything else a datamodule wants to record (kept as is).
    """

    modality: str = ""
    channels: list[str] = field(default_factory=list)
    key_prefix: str = ""
    sfreq: float | None = None
    l_freq: float | None = None
    h_freq: float | None = None
    reference: str = "none"
    window_s: float | None = None
    stride_s: float | None = None
    n_times: int | None = None
    resample_to: int | None = None
    crop: str = "windows"
    pad: str = "none"
    loudness_db: float | None = None
    alignment: str = "none"
    scale: float | None = None
    units: str = ""
    normalizer: dict[str, Any] | None = None
    tile_size: int | None = None
    image_size: int | None = None
    sensor: str | None = None
    features: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    picks: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"InputContract.modality must be one of {MODALITIES[1:]} (or ''), got {self.modality!r}")
        if self.reference not in _REFERENCES:
            raise ValueError(f"InputContract.reference must be one of {_REFERENCES}, got {self.reference!r}")
        if self.alignment not in _ALIGNMENTS:
            raise ValueError(f"InputContract.alignment must be one of {_ALIGNMENTS}, got {self.alignment!r}")
        if self.crop not in _CROPS:
            raise ValueError(f"InputContract.crop must be one of {_CROPS}, got {self.crop!r}")
        if self.pad not in _PADS:
            raise ValueError(f"InputContract.pad must be one of {_PADS}, got {self.pad!r}")
        self.loudness_db = _opt_float("loudness_db", self.loudness_db)
        self.sfreq = _opt_float("sfreq", self.sfreq, positive=True)
        self.l_freq = _opt_float("l_freq", self.l_freq)
        self.h_freq = _opt_float("h_freq", self.h_freq, positive=True)
        self.window_s = _opt_float("window_s", self.window_s, positive=True)
        self.stride_s = _opt_float("stride_s", self.stride_s, positive=True)
        self.scale = _opt_float("scale", self.scale)
        for name in ("n_times", "resample_to", "tile_size", "image_size"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or int(value) != value or int(value) < 1:
                    raise ValueError(f"InputContract.{name} must be a positive integer or None, got {value!r}")
                setattr(self, name, int(value))
        if self.l_freq is not None and self.h_freq is not None and not self.l_freq < self.h_freq:
            raise ValueError(f"InputContract: l_freq ({self.l_freq}) must be below h_freq ({self.h_freq})")
        self.channels = [str(c) for c in self.channels]
        self.aliases = {str(k): str(v) for k, v in self.aliases.items()}
        self.picks = [str(p) for p in self.picks]
        if self.normalizer is not None:
            stats = self.normalizer.get("stats")
            if not isinstance(stats, dict):
                raise ValueError("InputContract.normalizer needs a 'stats' mapping {channel key: [offset, scale]}")
            bad = [k for k, v in stats.items() if len(v) != 2 or not all(math.isfinite(float(x)) for x in v)]
            if bad:
                raise ValueError(f"InputContract.normalizer: non-finite or malformed statistics for channel(s) {bad}")

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain dict (``json.dumps``-able); fields at their default are left out."""
        out: dict[str, Any] = {"version": CONTRACT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value != default:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputContract:
        """Inverse of :meth:`to_json`; fields this version does not know are kept in ``extra``
        with a warning (a newer chanformer wrote them), never dropped silently."""
        if not isinstance(data, dict):
            raise ValueError(f"input contract must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", CONTRACT_VERSION)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = {k: data.pop(k) for k in list(data) if k not in known}
        if unknown:
            warnings.warn(
                f"input contract (version {version}) has field(s) this chanformer does not apply: {sorted(unknown)}; "
                "they are kept in contract.extra",
                UserWarning,
                stacklevel=2,
            )
            data["extra"] = {**data.get("extra", {}), **unknown}
        return cls(**data)

    # -- derived -------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: DataSpec, **overrides: Any) -> InputContract:
        """A contract from what a :class:`~chanformer.spec.DataSpec` knows (channels, rate, length,
        image size, per-id scaler statistics): the fallback for datamodules that have no
        ``input_contract()``."""
        keys = list(spec.vocab.keys)
        kw: dict[str, Any] = {"channels": keys, "sfreq": spec.sfreq, "n_times": spec.n_times,
                              "image_size": spec.image_size}  # fmt: skip
        if spec.channel_mean is not None and spec.channel_std is not None and len(spec.channel_mean) == len(keys):
            kw["normalizer"] = {
                "method": "meanstd",
                "stats": {k: [float(m), float(s)] for k, m, s in zip(keys, spec.channel_mean, spec.channel_std)},
            }
        prefixes = {k.split("/", 1)[0] for k in keys if "/" in k}
        if len(prefixes) == 1:
            prefix = prefixes.pop()
            kw["key_prefix"] = prefix + "/"
            kw["modality"] = {"eeg": "eeg", "mic": "audio", "series": "series", "stain": "image"}.get(prefix, "")
            if prefix in ("s2", "l8", "wv2", "wv3"):
                kw["modality"] = "image"
        kw.update(overrides)
        return cls(**kw)

    def merged(self, **changes: Any) -> InputContract:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line per set field, for reports and model cards."""
        lines = []
        for name, value in self.to_json().items():
            if name in ("version", "channels", "normalizer", "aliases"):
                continue
            lines.append(f"{name}: {value}")
        if self.channels:
            more = ", ..." if len(self.channels) > 8 else ""
            lines.append(f"channels: {len(self.channels)} ({', '.join(self.channels[:8])}{more})")
        if self.normalizer:
            method, n_stats = self.normalizer.get("method", "?"), len(self.normalizer["stats"])
            lines.append(f"normalizer: {method} statistics for {n_stats} channel(s)")
        if self.aliases:
            lines.append(f"aliases: {len(self.aliases)}")
        return "\n".join(lines)
