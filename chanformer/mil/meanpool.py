"""Bag-mean baseline for MIL: every instance counts equally (no attention)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.mil.acmil import _check_bags, _positive_int
from chanformer.mil.base import MILHead
from chanformer.registry import register_model, register_spec

__all__ = ["MeanPoolMIL", "MeanPoolOutput"]


class MeanPoolOutput(NamedTuple):
    """``logits [B, n_classes]`` and uniform attention logits ``[B, N]`` (0; padded: ``-inf``)."""

    logits: Tensor
    attention: Tensor


class MeanPoolMIL(MILHead):
    """``h = ReLU(W x)``; ``logits = classifier(masked mean of h)``: the bag-mean baseline.

    Args:
        in_dim: instance feature width ``D``.
        n_classes: number of classes.
        embed_dim: width after the dimension reduction.
        dropout: dropout before the classifier.
    """

    def __init__(self, in_dim: int, n_classes: int, embed_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        for arg, val in (("in_dim", in_dim), ("n_classes", n_classes), ("embed_dim", embed_dim)):
            _positive_int(f"MeanPoolMIL({arg})", val)
        self.in_dim, self.n_classes, self.embed_dim, self.dropout_p = in_dim, n_classes, embed_dim, dropout
        self.reduce = nn.Linear(in_dim, embed_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, n_classes)

    def pretrained_spec(self) -> dict[str, Any]:
        return {"kind": "meanpool_mil", "kwargs": {"in_dim": self.in_dim, "n_classes": self.n_classes,
                                                   "embed_dim": self.embed_dim, "dropout": self.dropout_p}}  # fmt: skip

    def forward_tensors(self, x: Tensor, mask: Tensor | None = None) -> MeanPoolOutput:  # type: ignore[override]
        """``x [B, N, D]`` (or ``[N, D]``), ``mask [B, N]`` -> logits ``[B, C]``."""
        x, mask = _check_bags(x, mask, self.in_dim, "MeanPoolMIL")
        h = F.relu(self.reduce(x))
        w = torch.ones(x.shape[:2], device=x.device, dtype=h.dtype) if mask is None else mask.to(h.dtype)
        pooled = (w.unsqueeze(-1) * h).sum(1) / w.sum(1, keepdim=True)
        attn = torch.zeros_like(w) if mask is None else torch.zeros_like(w).masked_fill(~mask, float("-inf"))
        return MeanPoolOutput(self.classifier(self.dropout(pooled)), attn)


@register_model("mil", name="mean")
def meanpool_mil(**kwargs: Any) -> MeanPoolMIL:
    """The bag-mean baseline (registered as ``"mean"``)."""
    return MeanPoolMIL(**kwargs)


@register_spec("meanpool_mil")
def _build_meanpool(spec: dict[str, Any]) -> nn.Module:
    return MeanPoolMIL(**spec["kwargs"])
