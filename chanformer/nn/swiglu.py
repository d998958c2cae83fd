"""SwiGLU feed-forward (LLaMA-style gated MLP)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwiGLU"]


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``: ``[..., D] -> [..., D]``.

    Args:
        dim: input/output width ``D``.
        hidden: inner width.
        bias: biases on the three projections (LLaMA and MVPFormer use none).

    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        bias: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"SwiGLU(dim={dim}, hidden={hidden}): both must be positive")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.gate = nn.Linear(dim, hidden, bias=bias, **kw)
        self.up = nn.Linear(dim, hidden, bias=bias, **kw)
        self.down = nn.Linear(hidden, dim, bias=bias, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))
