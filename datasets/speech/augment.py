"""Signal helpers and augmentation on waveforms ``[..., L]``.

:func:`rms_normalize`, :func:`random_crop`, :func:`mix_at_snr` (exact SNR),
:func:`speed_perturb`, :func:`volume_perturb`, :func:`coloured_noise`, :func:`babble`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from chanformer.datasets.speech.audio import _rms

__all__ = ["babble", "coloured_noise", "mix_at_snr", "random_crop", "rms_normalize", "speed_perturb", "volume_perturb"]


def rms_normalize(x: np.ndarray, target_db: float = -25.0, eps: float = 1e-12) -> np.ndarray:
    """Scale so the RMS over all channels is ``10^(target_db / 20)`` (full scale = 1)."""
    return (x * (10 ** (target_db / 20) / max(_rms(x), eps))).astype(x.dtype, copy=False)


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A random ``length``-sample window of ``x [..., L]``; shorter signals are tiled (wrapped)
    to ``length``. ``rng=None`` takes the centre window (deterministic evaluation)."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("random_crop: empty signal")
    if n < length:
        x = np.concatenate([x] * (length // n + 1), axis=-1)
        n = x.shape[-1]
        start = 0
    else:
        start = (n - length) // 2 if rng is None else int(rng.integers(0, n - length + 1))
    return x[..., start : start + length]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``(clean + g * noise, g * noise)`` with ``g`` chosen so that
    ``10 log10(sum clean^2 / sum (g noise)^2) == snr_db`` exactly (up to float rounding).

    ``noise`` is tiled or centre-cropped to the length of ``clean`` first.
    """
    length = clean.shape[-1]
    noise = random_crop(noise, length) if noise.shape[-1] != length else noise
    pc, pn = float(np.sum(np.square(clean, dtype=np.float64))), float(np.sum(np.square(noise, dtype=np.float64)))
    if pc <= 0 or pn <= 0:
        raise ValueError("mix_at_snr: clean and noise must both have non-zero energy")
    gain = math.sqrt(pc / (pn * 10 ** (snr_db / 10)))
    scaled = (noise.astype(np.float64) * gain).astype(clean.dtype)
    return clean + scaled, scaled


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch shifts too, as Kaldi/SpeechBrain speed perturbation):
    resample by ``1 / factor`` and keep the sample rate."""
    if factor <= 0:
        raise ValueError(f"speed_perturb(factor={factor}): must be positive")
    frac = Fraction(factor).limit_denominator(100)
    if frac == 1:
        return x
    from scipy.signal import resample_poly

    return resample_poly(x, frac.denominator, frac.numerator, axis=-1).astype(x.dtype, copy=False)


def volume_perturb(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by ``10^(gain_db / 20)``."""
    return (x * 10 ** (gain_db / 20)).astype(x.dtype, copy=False)


def coloured_noise(n: int, exponent: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Unit-RMS noise with power spectrum ``~ 1 / f^exponent`` (0 white, 1 pink, 2 brown), ``float32 [n]``."""
    rng = rng or np.random.default_rng()
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / max(_rms(x), 1e-12)).astype(np.float32)


def babble(voices: Sequence[np.ndarray], n: int, n_talkers: int = 4, rng: np.random.Generator | None = None) -> np.ndarray:
    """Unit-RMS babble ``float32 [n]``: the sum of ``n_talkers`` random crops of random ``voices``
    (1-D waveforms), each RMS-normalised first."""
    rng = rng or np.random.default_rng()
    if not voices:
        raise ValueError("babble: no voices given")
    out = np.zeros(n, dtype=np.float64)
    for _ in range(n_talkers):
        v = np.asarray(voices[int(rng.integers(len(voices)))], dtype=np.float64)
        out += rms_normalize(random_crop(v, n, rng), 0.0)
    return (out / max(_rms(out), 1e-12)).astype(np.float32)
