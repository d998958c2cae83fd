"""Ragged attention on Triton: the launchers ``ragged_attention_fwd`` / ``ragged_attention_bwd``, the
autograd Function built from them, and :func:`ragged_attention_triton` (that Function without dispatch).

The kernels (:mod:`chanformer.kernels.ragged_attention.triton`, imported on the first launch) are a
flash-attention forward and a FlashAttention-2 style backward that skip key blocks made only of
padding. Queries with no real key get a zero output and zero gradient (SDPA gives NaN there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from chanformer.kernels.config import interpreting
from chanformer.kernels.ragged_attention.reference import check_inputs

__all__ = ["RaggedAttentionFunction", "ragged_attention_bwd", "ragged_attention_fwd", "ragged_attention_triton"]


def _config(q: Tensor, key_mask: Tensor) -> tuple[int, int, int, Tensor]:
    import triton

    b, _, length, hd = q.shape
    block_hd = max(16, triton.next_power_of_2(hd))
    block = 64 if interpreting() else (64 if block_hd <= 64 else 32)  # untuned: no GPU yet
    nb = -(-length // block)
    padded = F.pad(key_mask, (0, nb * block - length)) if nb * block != length else key_mask
    blk = padded.view(b, nb, block).any(-1).to(torch.int8).contiguous()  # key block holds a real token
    return block, block_hd, nb, blk


def _prec(q: Tensor) -> str:
    return "ieee" if q.dtype == torch.float32 else "tf32"


def ragged_attention_fwd(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel on contiguous ``[B, H, L, hd]`` inputs; ``key_mask [B, L]`` bool.

    Returns the output and the per-query log-sum-exp ``[B, H, L]`` (float32) for the backward pass.
    """
    from chanformer.kernels.ragged_attention.triton import _ragged_attn_fwd_kernel

    b, h, length, hd = q.shape
    block, block_hd, nb, blk = _config(q, key_mask)
    o = torch.empty_like(q)
    lse = q.new_empty(b, h, length, dtype=torch.float32)
    _ragged_attn_fwd_kernel[(-(-length // block), b * h)](
        q, k, v, key_mask.to(torch.int8).contiguous(), blk, o, lse, h, length, hd, nb, scale,
        BLOCK_M=block, BLOCK_N=block, BLOCK_HD=block_hd, PREC=_prec(q), UPCAST=interpreting(),
    )
    return o, lse


def ragged_attention_bwd(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, o: Tensor, lse: Tensor, do: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the backward kernels; returns ``dq, dk, dv``."""
    from chanformer.kernels.ragged_attention.triton import _ragged_attn_bwd_dkdv_kernel, _ragged_attn_bwd_dq_kernel

    b, h, length, hd = q.shape
    block, block_hd, nb, blk = _config(q, key_mask)
    do = do.contiguous()
    delta = (o.float() * do.float()).sum(-1).contiguous()  # [B, H, L]
    mask8 = key_mask.to(torch.int8).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    meta = dict(BLOCK_M=block, BLOCK_N=block, BLOCK_HD=block_hd, PREC=_prec(q), UPCAST=interpreting())
    _ragged_attn_bwd_dkdv_kernel[(nb, b * h)](q, k, v, mask8, blk, do, lse, delta, dk, dv, h, length, hd, nb, scale, **meta)
    grid = (-(-length // block), b * h)
    _ragged_attn_bwd_dq_kernel[grid](q, k, v, mask8, blk, do, lse, delta, dq, h, length, hd, nb, scale, **meta)
    return dq, dk, dv


class RaggedAttentionFunction(torch.autograd.Function):
    """Autograd over :func:`ragged_attention_fwd` / :func:`ragged_attention_bwd`."""

    @staticmethod
    def forward(ctx, q, k, v, key_mask, scale):  # type: ignore[no-untyped-def]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        o, lse = ragged_attention_fwd(q, k, v, key_mask, scale)
        ctx.save_for_backward(q, k, v, key_mask, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):  # type: ignore[no-untyped-def]
        q, k, v, key_mask, o, lse = ctx.saved_tensors
        dq, dk, dv = ragged_attention_bwd(q, k, v, key_mask, o, lse, do, ctx.scale)
        return dq, dk, dv, None, None


def ragged_attention_triton(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, scale: float | None = None) -> Tensor:
    """The Triton path without dispatch (CUDA, or CPU under ``TRITON_INTERPRET=1``); ``key_mask=None``
    means every token is real."""
    check_inputs(q, k, v, key_mask)
    if key_mask is None:
        key_mask = torch.ones(q.shape[0], q.shape[2], dtype=torch.bool, device=q.device)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return RaggedAttentionFunction.apply(q, k, v, key_mask, scale)

