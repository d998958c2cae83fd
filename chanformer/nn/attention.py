"""Multi-head dot-product attention, written once for every family.

The attention itself is the one dispatch function
:func:`chanformer.kernels.ragged_attention.ragged_attention` (SDPA with a boolean key-padding mask
``[B, 1, 1, L]``, True = the key takes part, or the Triton kernel when it is forced); this module
only holds the projections and the head layout around it:

* :func:`split_heads` / :func:`merge_heads`: ``[B, L, n * D]`` packed projections <-> per-head
  ``[B, H, L, D / H]`` tensors (heads contiguous inside each of the ``n`` parts);
* :class:`MultiHeadSelfAttention`: packed ``qkv`` projection -> attention -> ``proj``. It is the
  attention of the ViT-style blocks (ChannelViT, ChAda-ViT, DBConformer through
  :class:`~chanformer.nn.transformer.MaskedTransformerBlock`) and of MambAttention's axis attention.

Families whose queries, keys and values come from different inputs (GAT: values from the
GAAM-reweighted tokens) project them themselves and call the same helpers and dispatch. GAAM and
MVPA are other operations (:mod:`chanformer.nn.gaam`, :mod:`chanformer.nn.mvpa`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from chanformer.kernels.ragged_attention import ragged_attention

__all__ = ["MultiHeadSelfAttention", "merge_heads", "split_heads"]


def split_heads(packed: Tensor, num_heads: int, parts: int = 1) -> Tensor:
    """``[B, L, parts * D]`` -> ``[parts, B, H, L, D / H]`` (a view; index 0 for ``parts=1``).

    ``packed`` holds ``parts`` projections side by side (``[q | k | v]`` for ``parts=3``), each with
    its ``H`` heads contiguous: the layout of timm/DINO ``Attention.qkv`` and of
    ``nn.MultiheadAttention.in_proj_weight``.
    """
    b, n, width = packed.shape
    if width % (parts * num_heads):
        raise ValueError(f"split_heads(): width {width} is not {parts} parts of {num_heads} heads")
    return packed.reshape(b, n, parts, num_heads, width // (parts * num_heads)).permute(2, 0, 3, 1, 4)


def merge_heads(heads: Tensor) -> Tensor:
    """``[B, H, L, hd]`` -> ``[B, L, H * hd]`` (heads side by side, the inverse of :func:`split_heads`)."""
    b, h, n, hd = heads.shape
    return heads.transpose(1, 2).reshape(b, n, h * hd)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a packed ``qkv`` projection: ``[B, L, D] -> [B, L, D]``.

    ``qkv.weight`` is ``[3D, D]`` with rows ``[q; k; v]`` and heads contiguous inside each, the
    layout of both the DINO/timm ``Attention.qkv`` and ``nn.MultiheadAttention.in_proj_weight``
    (``proj`` = ``out_proj``), so either kind of checkpoint maps onto it by renaming keys.

    Args:
        dim: token width ``D``.
        num_heads: heads ``H`` (``D`` divisible by ``H``).
        qkv_bias: bias on the ``qkv`` projection.
        qk_scale: attention scale; ``None`` = ``head_dim ** -0.5`` (the DINO/timm value; pass
            ``1 / math.sqrt(head_dim)`` for ``nn.MultiheadAttention``'s, which differs from it in
            the last bit of some float64 results).
        attn_drop: dropout on attention probabilities (training only).
        proj_drop: dropout after the output projection.

    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"MultiHeadSelfAttention(num_heads={num_heads}): must divide dim={dim}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = float(qk_scale) if qk_scale is not None else self.head_dim**-0.5
        self.attn_drop = float(attn_drop)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **kw)
        self.proj = nn.Linear(dim, dim, **kw)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``x [B, L, D]``, ``key_mask [B, L]`` (bool, True = real token, or None) -> ``[B, L, D]``."""
        q, k, v = split_heads(self.qkv(x), self.num_heads, 3)
        dropout_p = self.attn_drop if self.training else 0.0
        out = ragged_attention(q, k, v, key_mask, self.scale, dropout_p)
        return self.proj_drop(self.proj(merge_heads(out)))
