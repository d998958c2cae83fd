"""Audio front-ends written in plain PyTorch (no torchaudio): batched and differentiable.

* :class:`Fbank` -- log-mel filterbank features with SpeechBrain's ``Fbank`` conventions
  (25 ms Hamming window, 10 ms hop, zero-padded centred frames, power spectrum, triangular
  filters on the HTK mel scale, ``10 log10`` with ``amin`` and a per-utterance ``top_db`` floor).
  The ECAPA-TDNN speaker encoder consumes these features.
* :func:`sentence_mean_norm` -- per-utterance mean normalisation over the real frames.
* :func:`mag_phase_stft` / :func:`mag_phase_istft` and :class:`CompressedSTFT` -- the
  power-law compressed magnitude + phase STFT of MP-SENet/SEMamba/MambAttention (Hann window,
  centred frames with reflect padding) and its exact inverse.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CompressedSTFT",
    "Fbank",
    "amplitude_to_db",
    "hz_to_mel",
    "mag_phase_istft",
    "mag_phase_stft",
    "mel_filterbank",
    "mel_to_hz",
    "sentence_mean_norm",
]


def hz_to_mel(hz: Tensor | float) -> Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz) / 700.0)


def mel_to_hz(mel: Tensor | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: float, f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """Triangular mel filters ``[n_fft // 2 + 1, n_mels]`` (SpeechBrain's shape convention).

    ``n_mels + 2`` points are spaced evenly on the mel scale between ``f_min`` and ``f_max``
    (default Nyquist). Filter ``m`` peaks (value 1) at the ``m + 1``-th point and is a
    symmetric triangle in Hz whose half-width is the distance to the point on its left:
    ``max(0, 1 - |f - centre_m| / width_m)``. FFT bins sit at ``linspace(0, sr // 2, n_fft // 2 + 1)``.
    Computed in float32 like SpeechBrain (its rounding is part of the reference features).
    """
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"mel_filterbank(n_mels={n_mels}, n_fft={n_fft}): need n_mels >= 1 and n_fft >= 2")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max:
        raise ValueError(f"mel_filterbank(f_min={f_min}, f_max={f_max}): need 0 <= f_min < f_max")
    lo, hi = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    hz = mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float32))
    centre = hz[1:-1]
    width = (hz[1:] - hz[:-1])[:-1]
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float32)
    slope = (freqs[None, :] - centre[:, None]) / width[:, None]  # [n_mels, n_freq]
    tri = torch.minimum(slope + 1.0, 1.0 - slope).clamp_min(0.0)
    return tri.T.contiguous()


def amplitude_to_db(
    x: Tensor, multiplier: float = 10.0, amin: float = 1e-10, ref_value: float = 1.0, top_db: float | None = 80.0
) -> Tensor:
    """``multiplier * log10(max(x, amin) / max(ref_value, amin))``, floored ``top_db`` below each
    utterance's maximum (the maximum is taken over the last two axes, e.g. time x mel).
    """
    db = multiplier * torch.log10(x.clamp_min(amin)) - multiplier * math.log10(max(amin, ref_value))
    if top_db is not None:
        floor = db.amax(dim=(-2, -1), keepdim=True) - top_db
        db = torch.maximum(db, floor)
    return db


class Fbank(nn.Module):
    """Log-mel filterbank features, SpeechBrain ``Fbank`` defaults.

    Frames are ``win_length_ms`` long (Hamming window, periodic), every ``hop_length_ms``,
    centred (the signal is zero-padded by ``n_fft // 2`` on both sides), so an ``L``-sample
    signal gives ``T = 1 + L // hop`` frames. The power spectrum is projected on triangular
    mel filters (:func:`mel_filterbank`) and converted to dB with :func:`amplitude_to_db`
    (``amin`` 1e-10, ``top_db`` 80 per utterance).

    Args:
        sample_rate: sampling rate in Hz.
        n_fft: FFT size.
        n_mels: number of mel filters.
        win_length_ms: window length in milliseconds.
        hop_length_ms: hop in milliseconds.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz (default Nyquist).
        log_mel: return dB values (True) or the linear filterbank energies.
        amin: floor applied before the logarithm.
        top_db: dynamic range kept below each utterance's maximum (``None`` = no floor).

    Shapes:
        ``wav [B, L]`` (or ``[L]``) -> ``[B, T, n_mels]`` (time before mel bins, as SpeechBrain).
        Transpose to ``[B, n_mels, T]`` for :class:`chanformer.encoders.ecapa_tdnn.ECAPA_TDNN`.
    """

    window: Tensor
    filters: Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        n_mels: int = 40,
        win_length_ms: float = 25.0,
        hop_length_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_mel: bool = True,
        amin: float = 1e-10,
        top_db: float | None = 80.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"Fbank(sample_rate={sample_rate}): must be positive")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.win_length = int(round(sample_rate / 1000.0 * win_length_ms))
        self.hop_length = int(round(sample_rate / 1000.0 * hop_length_ms))
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"Fbank(win_length_ms={win_length_ms}): window of {self.win_length} samples must fit n_fft={n_fft}")
        if self.hop_length < 1:
            raise ValueError(f"Fbank(hop_length_ms={hop_length_ms}): hop must be at least one sample")
        self.log_mel = log_mel
        self.amin = amin
        self.top_db = top_db
        self.win_length_ms, self.hop_length_ms = float(win_length_ms), float(hop_length_ms)
        self.f_min, self.f_max = float(f_min), None if f_max is None else float(f_max)
        dt = dtype or torch.float32
        self.register_buffer("window", torch.hamming_window(self.win_length).to(device, dt), persistent=False)
        filters = mel_filterbank(self.n_mels, self.n_fft, sample_rate, f_min, f_max)
        self.register_buffer("filters", filters.to(device, dt), persistent=False)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this front end (JSON-able; an input contract's
        ``features["fbank"]``)."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "n_mels": self.n_mels,
                "win_length_ms": self.win_length_ms, "hop_length_ms": self.hop_length_ms, "f_min": self.f_min,
                "f_max": self.f_max, "log_mel": bool(self.log_mel), "amin": float(self.amin),
                "top_db": None if self.top_db is None else float(self.top_db)}  # fmt: skip

    def power_spectrum(self, wav: Tensor) -> Tensor:
        """``wav [B, L]`` -> power spectrum ``[B, T, n_fft // 2 + 1]``."""
        spec = torch.stft(
            wav,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(wav.dtype),
            center=True,
            pad_mode="constant",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return torch.view_as_real(spec).pow(2).sum(-1).transpose(1, 2)

    def forward(self, wav: Tensor) -> Tensor:
        """``wav [B, L]`` (or ``[L]``) -> features ``[B, T, n_mels]``."""
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2:
            raise ValueError(f"Fbank expects wav [B, L] or [L], got shape {tuple(wav.shape)}")
        fb = self.power_spectrum(wav) @ self.filters.to(wav.dtype)
        if self.log_mel:
            fb = amplitude_to_db(fb, 10.0, self.amin, 1.0, self.top_db)
        return fb


def _relative_to_frames(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape [B]=[{batch}], got {tuple(lengths.shape)}")
    if bool(((lengths <= 0) | (lengths > 1)).any()):
        raise ValueError(f"lengths must be relative lengths in (0, 1], got {lengths.tolist()}")
    return torch.round(lengths.to(torch.float64) * steps).long().clamp(1, steps)


def sentence_mean_norm(feats: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Subtract each utterance's mean over its real frames (SpeechBrain ``sentence`` norm, no std).

    Args:
        feats: ``[B, T, F]`` features (time before features).
        lengths: optional ``[B]`` relative lengths in (0, 1]; utterance ``b`` has
            ``round(lengths[b] * T)`` real frames. Padding frames are shifted by the same mean.

    Returns:
        ``[B, T, F]`` normalised features.
    """
    if feats.ndim != 3:
        raise ValueError(f"sentence_mean_norm(feats=...) expects [B, T, F], got {tuple(feats.shape)}")
    b, t, _ = feats.shape
    n = _relative_to_frames(lengths, b, t, feats.device)
    m = (torch.arange(t, device=feats.device)[None] < n[:, None]).to(feats.dtype)[..., None]
    mean = (feats * m).sum(1, keepdim=True) / n.to(feats.dtype)[:, None, None]
    return feats - mean


# -- compressed magnitude/phase STFT (MP-SENet / SEMamba / MambAttention) ----------------------
def mag_phase_stft(
    wav: Tensor,
    n_fft: int = 400,
    hop_length: int = 100,
    win_length: int = 400,
    compress_factor: float = 0.3,
    center: bool = True,
    add_eps: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Compressed magnitude, phase and compressed complex spectrum of ``wav``.

    Hann window (periodic), centred frames with reflect padding, unnormalised FFT.
    The magnitude is raised to ``compress_factor``.

    Args:
        wav: ``[B, L]`` (or ``[L]``) waveform.
        add_eps: add 1e-10 inside the square root and to both atan2 arguments (the
            originals' training-time variant); the default uses ``|X|`` and ``angle(X)``.

    Returns:
        ``mag [B, F, T]``, ``pha [B, F, T]``, ``com [B, F, T, 2]`` with ``F = n_fft // 2 + 1``,
        ``T = 1 + L // hop_length`` and ``com = mag * (cos pha, sin pha)``.
    """
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2:
        raise ValueError(f"mag_phase_stft(wav=...) expects [B, L] or [L], got {tuple(wav.shape)}")
    window = torch.hann_window(win_length, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(
        wav,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode="reflect",
        normalized=False,
        return_complex=True,
    )
    if add_eps:
        eps = 1e-10
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + eps)
        pha = torch.atan2(spec.imag + eps, spec.real + eps)
    else:
        mag = spec.abs()
        pha = spec.angle()
    mag = mag.pow(compress_factor)
    com = torch.stack((mag * torch.cos(pha), mag * torch.sin(pha)), dim=-1)
    return mag, pha, com


def mag_phase_istft(
    mag: Tensor,
    pha: Tensor,
    n_fft: int = 400,
    hop_length: int = 100,
    win_length: int = 400,
    compress_factor: float = 0.3,
    center: bool = True,
    length: int | None = None,
) -> Tensor:
    """Inverse of :func:`mag_phase_stft`: decompress ``mag [B, F, T]``, combine with
    ``pha [B, F, T]`` and overlap-add (Hann window). Returns ``[B, L]``; ``L = length`` when
    given, else ``hop_length * (T - 1)``.
    """
    mag = mag.pow(1.0 / compress_factor)
    spec = torch.complex(mag * torch.cos(pha), mag * torch.sin(pha))
    window = torch.hann_window(win_length, device=mag.device, dtype=mag.dtype)
    return torch.istft(spec, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, length=length)


class CompressedSTFT(nn.Module):
    """Configured pair :func:`mag_phase_stft` (``forward``) / :func:`mag_phase_istft` (``inverse``).

    Defaults are MambAttention's: ``n_fft`` 400, hop 100, window 400, compression 0.3.
    """

    def __init__(self, n_fft: int = 400, hop_length: int = 100, win_length: int = 400, compress_factor: float = 0.3) -> None:
        super().__init__()
        if not 0 < win_length <= n_fft:
            raise ValueError(f"CompressedSTFT(win_length={win_length}): must be in (0, n_fft={n_fft}]")
        if not 0 < hop_length <= win_length:
            raise ValueError(f"CompressedSTFT(hop_length={hop_length}): must be in (0, win_length={win_length}]")
        if compress_factor <= 0:
            raise ValueError(f"CompressedSTFT(compress_factor={compress_factor}): must be positive")
        self.n_fft, self.hop_length, self.win_length = int(n_fft), int(hop_length), int(win_length)
        self.compress_factor = float(compress_factor)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``wav [B, L]`` -> ``mag [B, F, T]``, ``pha [B, F, T]``, ``com [B, F, T, 2]``."""
        return mag_phase_stft(wav, self.n_fft, self.hop_length, self.win_length, self.compress_factor)

    def inverse(self, mag: Tensor, pha: Tensor, length: int | None = None) -> Tensor:
        """``mag, pha [B, F, T]`` -> ``wav [B, L]``."""
        return mag_phase_istft(mag, pha, self.n_fft, self.hop_length, self.win_length, self.compress_factor, True, length)
