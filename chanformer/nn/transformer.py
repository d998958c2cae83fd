"""Transformer blocks over variable token sets, masked with boolean key-padding masks.

A block is :class:`~chanformer.nn.attention.MultiHeadSelfAttention` (which runs the one dispatch
function :func:`chanformer.kernels.ragged_attention.ragged_attention`: SDPA with a boolean mask
``[B, 1, 1, L]``, never a materialised float ``[B, H, L, L]`` mask, or the Triton kernel when it is
forced) plus :class:`~chanformer.nn.mlp.Mlp`; padded tokens are never attended to, so they cannot
change the real tokens' outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from chanformer.nn.attention import MultiHeadSelfAttention
from chanformer.nn.mlp import Mlp

__all__ = ["DropPath", "MaskedSelfAttention", "MaskedTransformerBlock", "Mlp", "run_blocks"]

#: The block's attention under its earlier name (:class:`chanformer.nn.attention.MultiHeadSelfAttention`).
MaskedSelfAttention = MultiHeadSelfAttention

NORM_STYLES = ("pre", "post", "prepost")


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath(p={p}): must be in [0, 1)")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * noise / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaskedTransformerBlock(nn.Module):
    """Attention + MLP block with a boolean key-padding mask; ``[B, L, D] -> [B, L, D]``.

    Norm styles:

    * ``"pre"`` (ViT/DINO): ``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``.
    * ``"post"`` (classic Transformer): ``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``.
    * ``"prepost"`` (ChAda-ViT's layer): ``x = norm1(x + attn(norm1(x))); x = norm2(x + mlp(x))``:
      the same ``norm1`` before attention and after the residual.

    Args:
        dim: token width ``D``.
        num_heads: attention heads.
        mlp_hidden: hidden width of the MLP.
        qkv_bias: bias on the ``qkv`` projection.
        qk_scale: attention scale (``None`` = ``head_dim ** -0.5``).
        activation: ``"gelu"`` (exact erf) or ``"relu"``.
        norm_style: ``"pre"``, ``"post"`` or ``"prepost"`` (above).
        norm_eps: LayerNorm epsilon.
        drop: dropout after attention/MLP outputs and inside the MLP.
        attn_drop: dropout on attention probabilities.
        drop_path: stochastic-depth probability of both residual branches.

    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        activation: str = "gelu",
        norm_style: str = "pre",
        norm_eps: float = 1e-6,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if norm_style not in NORM_STYLES:
            raise ValueError(f"MaskedTransformerBlock(norm_style={norm_style!r}): expected {NORM_STYLES}")
        if mlp_hidden < 1:
            raise ValueError(f"MaskedTransformerBlock(mlp_hidden={mlp_hidden}): must be positive")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.norm_style = norm_style
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **kw)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, **kw)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **kw)
        self.mlp = Mlp(dim, mlp_hidden, activation, drop, **kw)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``x [B, L, D]``, ``key_mask [B, L]`` (True = real token) -> ``[B, L, D]``."""
        if self.norm_style == "pre":
            x = x + self.drop_path(self.attn(self.norm1(x), key_mask))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        attn_in = self.norm1(x) if self.norm_style == "prepost" else x
        x = self.norm1(x + self.drop_path(self.attn(attn_in, key_mask)))
        return self.norm2(x + self.drop_path(self.mlp(x)))


def run_blocks(
    blocks: Iterable[nn.Module], x: Tensor, key_mask: Tensor | None, grad_checkpointing: bool = False
) -> Tensor:
    """Apply ``blocks`` to ``x [B, L, D]`` in order.

    With ``grad_checkpointing`` (and grad enabled) each block's
    activations are recomputed in the backward pass instead of stored.

    ``key_mask`` may be ``None`` when every token is real (lets SDPA pick its fastest kernel).
    """
    use_ckpt = grad_checkpointing and torch.is_grad_enabled()
    for blk in blocks:
        x = checkpoint(blk, x, key_mask, use_reentrant=False) if use_ckpt else blk(x, key_mask)
    return x
