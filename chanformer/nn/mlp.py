"""The position-wise feed-forward block shared by the transformer-style families."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Mlp"]

ACTIVATIONS = ("gelu", "relu")


class Mlp(nn.Module):
    """``drop(fc2(drop(act(fc1(x)))))``; ``[..., D] -> [..., D]``.

    The feed-forward of the ViT-style blocks (:class:`~chanformer.nn.transformer.MaskedTransformerBlock`),
    of the GAT layer and of SOFTS' STAR layer. ``act`` is exact (erf) GELU or ReLU.

    Args:
        dim: input and output width ``D``.
        hidden: hidden width.
        activation: ``"gelu"`` or ``"relu"``.
        drop: dropout after the activation and after ``fc2`` (training only).

    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        activation: str = "gelu",
        drop: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Mlp(activation={activation!r}): expected 'gelu' or 'relu'")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(dim, hidden, **kw)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim, **kw)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
