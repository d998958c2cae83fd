"""A convolutional series embedding: one token per channel from dilated 1-D convolutions.

SOFTS (and iTransformer) embed a channel's whole series with one linear layer ``T -> D``: each
time step has its own weights, so an event that moves by one sample meets different weights,
and a long series (896 samples) costs ``896 x D`` parameters per token width. For
classification of short, noisy recordings (EEG trials) a shift-invariant embedding is the usual
choice (InceptionTime, ROCKET): this one runs the same small stack of dilated convolutions over
every channel on its own and pools over time, so it takes any length and any number of channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SeriesConvEmbedding"]


class SeriesConvEmbedding(nn.Module):
    """Per-channel dilated convolutions + mean/max pooling over time: ``[B, C, T] -> [B, C, D]``.

    A first convolution lifts each channel's series to ``width`` feature maps; each further layer
    adds ``gelu(conv_dilated(x))`` to them (residual), with dilations ``dilations`` so that the
    receptive field grows geometrically (kernel 7 and dilations 1, 2, 4, 8: 91 samples). The
    maps are pooled over time (mean and max) and projected to ``d_model``. There is no
    normalisation inside: the level of a channel can carry its class (slow cortical potentials),
    and the input's scaling is the data module's choice.

    Args:
        d_model: token width ``D``.
        width: feature maps per channel.
        kernel_size: odd temporal kernel size of every convolution.
        dilations: dilation of each residual layer (after the first, undilated convolution).
    """

    def __init__(
        self,
        d_model: int,
        width: int = 32,
        kernel_size: int = 7,
        dilations: Sequence[int] = (1, 2, 4, 8),
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SeriesConvEmbedding(kernel_size={kernel_size}): must be a positive odd integer")
        if width < 1:
            raise ValueError(f"SeriesConvEmbedding(width={width}): must be a positive integer")
        if any(int(d) < 1 for d in dilations):
            raise ValueError(f"SeriesConvEmbedding(dilations={tuple(dilations)}): each must be a positive integer")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        half = kernel_size // 2
        self.stem = nn.Conv1d(1, width, kernel_size, padding=half, **kw)
        self.layers = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, dilation=int(d), padding=int(d) * half, **kw) for d in dilations
        )
        self.proj = nn.Linear(2 * width, d_model, **kw)

    def forward(self, series: Tensor) -> Tensor:
        """``series [B, C, T]`` -> tokens ``[B, C, D]`` (each channel convolved on its own)."""
        b, c, t = series.shape
        x = self.stem(series.reshape(b * c, 1, t))
        for conv in self.layers:
            x = x + F.gelu(conv(x))
        pooled = torch.cat([x.mean(-1), x.amax(-1)], dim=-1)  # [B*C, 2W]
        return self.proj(pooled).view(b, c, -1)
