"""Per-sample, per-channel normalisation over time, with its inverse (for forecasting)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InstanceNorm(nn.Module):
    """Normalise ``x [B, C, T]`` per (sample, channel) over ``T``; remember the statistics.

    ``std = sqrt(var_biased + eps)``, the convention of the Time-Series-Library models
    (SOFTS, iTransformer), so that converted checkpoints give the same forecasts.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [B, C, T] -> (normalised [B, C, T], (mean [B, C, 1], std [B, C, 1]))``."""
        mean = x.mean(-1, keepdim=True).detach()
        std = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps).detach()
        return (x - mean) / std, (mean, std)

    @staticmethod
    def inverse(y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Undo :meth:`forward` on ``y [B, C, H]`` with the stored statistics."""
        mean, std = stats
        return y * std + mean
