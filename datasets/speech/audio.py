"""Audio I/O: reading WAV/FLAC/OGG files as ``float32 [C, L]`` and resampling.

Microphones are channels (vocabulary keys ``mic/0 ... mic/{n-1}``, :func:`mic_vocab`); a
multi-channel file keeps its channels. :func:`read_audio` reads through ``soundfile``, resamples
(``resample_poly``) and names the file at fault (:class:`AudioReadError`): empty, silent or
non-finite audio, a sample-rate mismatch when resampling is off, a channel-count mismatch (mono
expected, stereo found and the reverse). Clipped audio (more than ``clip_fraction`` of samples at
full scale) warns by default (``on_clip="warn"``), or raises (``"error"``), or passes
(``"ignore"``): clipped recordings are common in the wild and still useful for training, but they
bias enhancement metrics, so evaluation code should use ``"error"``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from chanformer.channels import Channel, ChannelVocab

__all__ = ["AUDIO_SUFFIXES", "AudioReadError", "mic_vocab", "read_audio", "resample"]


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioReadError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def mic_vocab(n: int = 1) -> ChannelVocab:
    """Vocabulary ``mic/0 ... mic/{n-1}`` (id ``i`` is microphone ``i``)."""
    return ChannelVocab(f"mic{n}", [Channel(f"mic/{i}", kind="mic") for i in range(n)])


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly``)."""
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(x, int(target_sr) // g, int(orig_sr) // g, axis=-1).astype(x.dtype, copy=False)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    resample_to_rate: bool = True,
    channels: int | None = None,
    on_clip: Literal["warn", "error", "ignore"] = "warn",
    clip_fraction: float = 1e-3,
    silence_rms: float = 1e-5,
) -> tuple[np.ndarray, int]:
    """Read an audio file as ``float32 [C, L]`` (channels kept) and its sample rate.

    Args:
        path: WAV, FLAC or OGG file.
        sample_rate: wanted rate; ``None`` keeps the file's.
        resample_to_rate: resample to ``sample_rate`` (True) or raise on a mismatch (False).
        channels: expected channel count (1 = mono); ``None`` accepts any.
        on_clip: what to do when more than ``clip_fraction`` of the samples sit at full scale
            (``|x| >= 0.999``): ``"warn"``, ``"error"`` or ``"ignore"``.
        silence_rms: audio whose RMS is below this is "silent" and raises.

    Raises:
        AudioReadError: naming the file, for unreadable, empty, silent, non-finite or clipped
            (``on_clip="error"``) audio, a rate mismatch, or a channel-count mismatch.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioReadError(f"cannot read audio file {path}: {e}") from e
    x = np.ascontiguousarray(data.T)  # [C, L]
    if x.shape[1] == 0:
        raise AudioReadError(f"audio file {path} is empty (0 samples)")
    if not np.isfinite(x).all():
        raise AudioReadError(f"audio file {path} holds non-finite samples (NaN/Inf)")
    if channels is not None and x.shape[0] != channels:
        def kind(c: int) -> str:
            return {1: "mono", 2: "stereo"}.get(c, f"{c}-channel")
        raise AudioReadError(f"audio file {path} is {kind(x.shape[0])} but {kind(channels)} audio was expected "
                             f"({x.shape[0]} channels, expected {channels})")
    if _rms(x) < silence_rms:
        raise AudioReadError(f"audio file {path} is silent (RMS {_rms(x):.2e} < {silence_rms:g})")
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if on_clip != "ignore" and clipped > clip_fraction:
        msg = f"audio file {path} is clipped: {clipped:.2%} of samples at full scale (> {clip_fraction:.2%})"
        if on_clip == "error":
            raise AudioReadError(msg)
        warnings.warn(msg, stacklevel=2)
    if sample_rate is not None and sr != sample_rate:
        if not resample_to_rate:
            raise AudioReadError(f"audio file {path} has sample rate {sr} Hz, expected {sample_rate} Hz")
        x, sr = resample(x, sr, sample_rate), sample_rate
    return x, int(sr)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
