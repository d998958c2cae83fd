"""A segment-mean series embedding: one token per channel from the means of a few time segments.

SOFTS embeds a channel's whole series with one linear layer ``T -> D``, one weight per sample and
token dimension. On short, noisy recordings with a few hundred training cases (EEG trials) most
of those weights fit noise, while what separates the classes is often a slow level change (slow
cortical potentials, readiness potentials). Averaging the series over ``P`` equal segments first
(piecewise aggregate approximation) is the same linear embedding constrained to weights that are
constant within each segment: ``P x D`` parameters instead of ``T x D``, and a low-pass filter
in front of them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegmentMeanEmbedding"]


class SegmentMeanEmbedding(nn.Module):
    """Means over ``segments`` equal time segments, then a linear layer: ``[B, C, T] -> [B, C, D]``.

    Segment boundaries are those of :func:`torch.nn.functional.adaptive_avg_pool1d` (segment ``i``
    covers samples ``floor(i T / P)`` to ``ceil((i + 1) T / P)``), so any ``T >= 1`` works; with
    ``T < P`` samples are repeated. Each channel is embedded on its own.

    Args:
        d_model: token width ``D``.
        segments: number of segments ``P``.
    """

    def __init__(
        self, d_model: int, segments: int = 8, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if segments < 1:
            raise ValueError(f"SegmentMeanEmbedding(segments={segments}): must be a positive integer")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.segments = int(segments)
        self.proj = nn.Linear(self.segments, d_model, **kw)

    def forward(self, series: Tensor) -> Tensor:
        """``series [B, C, T]`` -> tokens ``[B, C, D]``."""
        return self.proj(F.adaptive_avg_pool1d(series, self.segments))
