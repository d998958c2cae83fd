"""Batched discrete wavelet decomposition in pure PyTorch (conv1d), for GPU-friendly segment encoders.

Only the Daubechies-4 wavelet (8 taps) in PyWavelets' ``"periodic"`` signal-extension mode is
implemented; it reproduces ``pywt.wavedec(x, "db4", mode="periodic")`` (and ``ptwt.wavedec``
with the same arguments) to float precision, without either package:

* one level: circular padding by 6 samples on the left and ``6 + (n mod 2)`` on the right, then
  correlation with the reversed decomposition filters at stride 2, giving
  ``floor((n + 7) / 2)`` approximation and detail coefficients;
* the default depth is ``pywt.dwt_max_level(n, 8)``: the largest ``L`` with ``7 * 2**L <= n``;
* the coefficients come back in PyWavelets' order ``[cA_L, cD_L, cD_{L-1}, ..., cD_1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DB4_DEC_LO", "db4_filters", "dwt_max_level", "wavedec", "wavedec_lengths"]

#: Daubechies-4 (8-tap, extremal phase) low-pass decomposition filter, PyWavelets' values.
DB4_DEC_LO: tuple[float, ...] = (
    -0.010597401785069032,
    0.0328830116668852,
    0.030841381835560764,
    -0.18703481171909309,
    -0.027983769416859854,
    0.6308807679298589,
    0.7148465705529157,
    0.2303778133088965,
)
_FILTER_LEN = len(DB4_DEC_LO)
_PAD = (2 * _FILTER_LEN - 3) // 2  # 6 samples each side (+1 on the right for odd lengths)


def db4_filters(device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Decomposition filters as a conv1d weight ``[2, 1, 8]``: row 0 low-pass, row 1 high-pass.

    The high-pass filter is the quadrature mirror ``hi[k] = (-1)**(k + 1) * lo[7 - k]``; both are
    reversed because ``conv1d`` computes a correlation.
    """
    lo = torch.tensor(DB4_DEC_LO, device=device, dtype=torch.float64)
    sign = torch.tensor([(-1.0) ** (k + 1) for k in range(_FILTER_LEN)], device=device, dtype=torch.float64)
    hi = sign * lo.flip(0)
    return torch.stack([lo.flip(0), hi.flip(0)]).unsqueeze(1).to(dtype)


def dwt_max_level(n: int, filter_len: int = _FILTER_LEN) -> int:
    """Deepest useful level for a signal of ``n`` samples (as ``pywt.dwt_max_level``)."""
    if n < 1:
        raise ValueError(f"dwt_max_level(n={n}): the signal length must be positive")
    level = 0
    while (filter_len - 1) * 2 ** (level + 1) <= n:
        level += 1
    return level


def wavedec_lengths(n: int, level: int | None = None) -> list[int]:
    """Lengths of ``[cA_L, cD_L, ..., cD_1]`` for an ``n``-sample signal (their sum is the output width)."""
    level = dwt_max_level(n) if level is None else level
    sizes = []
    for _ in range(level):
        n = (n + _FILTER_LEN - 1) // 2
        sizes.append(n)
    return [sizes[-1], *sizes[::-1]] if sizes else [n]


def wavedec(x: Tensor, level: int | None = None) -> list[Tensor]:
    """Multi-level db4 decomposition (periodic extension) along the last axis.

    Args:
        x: ``[..., n]`` real signal.
        level: number of levels; ``None`` = :func:`dwt_max_level` of ``n``.

    Returns:
        ``[cA_L, cD_L, ..., cD_1]``, each ``[..., n_j]`` with the lengths of :func:`wavedec_lengths`
        (``torch.cat(..., dim=-1)`` gives PyWavelets' concatenated coefficient vector).

    """
    n = x.shape[-1]
    max_level = dwt_max_level(n)
    level = max_level if level is None else int(level)
    if not 0 <= level <= max_level:
        raise ValueError(f"wavedec(level={level}): must be in [0, {max_level}] for a {n}-sample signal")
    lead = x.shape[:-1]
    approx = x.reshape(-1, 1, n)
    weight = db4_filters(x.device, x.dtype)
    details = []
    for _ in range(level):
        m = approx.shape[-1]
        padded = F.pad(approx, (_PAD, _PAD + m % 2), mode="circular")
        out = F.conv1d(padded, weight, stride=2)  # [N, 2, (m + 7) // 2]
        approx, detail = out[:, :1], out[:, 1:]
        details.append(detail)
    coeffs = [approx, *details[::-1]]
    return [c.reshape(*lead, c.shape[-1]) for c in coeffs]
