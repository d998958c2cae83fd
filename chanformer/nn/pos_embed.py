"""Resampling of learned 2-D positional embeddings to another patch grid."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

__all__ = ["resample_pos_embed_2d"]


def resample_pos_embed_2d(pos: Tensor, grid: tuple[int, int], method: str = "scale_factor") -> Tensor:
    """Bicubically resample a square grid of positional embeddings.

    Args:
        pos: ``[N, D]`` patch positional embeddings of a square ``sqrt(N) x sqrt(N)`` grid,
            row-major (no CLS row).
        grid: target patch grid ``(h, w)``.
        method: ``"scale_factor"`` = the DINO / ChannelViT / ChAda-ViT convention:
            ``F.interpolate(scale_factor=((h + 0.1) / sqrt(N), (w + 0.1) / sqrt(N)))``, whose
            sampling positions come from the scale factor, so even ``h = w = sqrt(N)`` is NOT the
            identity; ``"size"`` = ``F.interpolate(size=(h, w))`` (identity at the native grid).

    Returns:
        ``[h * w, D]`` row-major.

    """
    if pos.ndim != 2:
        raise ValueError(f"resample_pos_embed_2d(pos=...): expected [N, D], got shape {tuple(pos.shape)}")
    n, dim = pos.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"resample_pos_embed_2d(pos=...): N={n} patch positions do not form a square grid")
    h, w = (int(g) for g in grid)
    if h < 1 or w < 1:
        raise ValueError(f"resample_pos_embed_2d(grid={grid}): grid sides must be positive")
    img = pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if method == "scale_factor":
        scale = ((h + 0.1) / math.sqrt(n), (w + 0.1) / math.sqrt(n))
        out = F.interpolate(img, scale_factor=scale, mode="bicubic", align_corners=False)
        if out.shape[-2:] != (h, w):  # pragma: no cover - guarded by the +0.1 offset
            raise RuntimeError(f"pos embedding resampled to {tuple(out.shape[-2:])}, expected {(h, w)}")
    elif method == "size":
        out = F.interpolate(img, size=(h, w), mode="bicubic", align_corners=False)
    else:
        raise ValueError(f"resample_pos_embed_2d(method={method!r}): expected 'scale_factor' or 'size'")
    return out.permute(0, 2, 3, 1).reshape(h * w, dim)
