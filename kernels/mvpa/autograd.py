"""MVPA on Triton: the launchers ``mvpa_fwd`` / ``mvpa_bwd``, the autograd Function built from them,
and :func:`mvpa_triton` (that Function without dispatch).

The kernels (:mod:`chanformer.kernels.mvpa.triton`, imported on the first launch so that
``TRITON_INTERPRET`` is read then) compute the relative terms in-kernel from the ``[T, hd]``/``[R, hd]``
tables and never form an ``[N, N]`` tensor; the backward folds the logit gradients back onto the
table rows. They have no attention dropout: :func:`chanformer.kernels.mvpa.mvpa` runs the reference
when ``dropout_p > 0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from chanformer.kernels.config import interpreting
from chanformer.kernels.mvpa.reference import check_inputs

__all__ = ["MvpaFunction", "mvpa_bwd", "mvpa_fwd", "mvpa_triton"]


def _meta(q: Tensor, r: int, content: bool, window: int | None, masked: bool, group: int) -> dict[str, Any]:
    """Launch constants. ``group``: query heads per key head rounded up to a power of two; a program
    holds ``group * BLOCK_M`` query rows (its key head's query heads) so each K/V tile is loaded once."""
    import triton

    t, hd = q.shape[2], q.shape[4]
    block = 64 if interpreting() else 32  # untuned: no GPU yet
    return dict(
        HAS_CONTENT=content, HAS_WINDOW=window is not None, HAS_MASK=masked, BLOCK_M=block // group, BLOCK_N=block,
        BLOCK_HD=max(16, triton.next_power_of_2(hd)), BLOCK_T=max(16, triton.next_power_of_2(t)),
        BLOCK_R=max(16, triton.next_power_of_2(r)), PREC="ieee" if q.dtype == torch.float32 else "tf32",
    )


def _group(h: int, h_kv: int) -> int:
    import triton

    return int(triton.next_power_of_2(h // h_kv))


def mvpa_fwd(
    q: Tensor, k: Tensor, v: Tensor, time_keys: Tensor, chan_keys: Tensor, chan_index: Tensor, key_mask: Tensor | None,
    content_bias: Tensor | None, time_bias: Tensor, chan_bias: Tensor, window: int | None, scale: float,
) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel (contiguous inputs, ``chan_index`` int32, ``key_mask`` int8).

    Returns the output ``[B, H, T, C, hd]`` and the per-query log-sum-exp ``[B, H, T * C]`` (float32).
    """
    from chanformer.kernels.mvpa.triton import _mvpa_fwd_kernel

    b, h, t, c, hd = q.shape
    r = chan_keys.shape[1]
    group = _group(h, k.shape[1])
    meta = _meta(q, r, content_bias is not None, window, key_mask is not None, group)
    out = torch.empty_like(q)
    lse = q.new_empty(b, h, t * c, dtype=torch.float32)
    grid = (-(-(t * c) // meta["BLOCK_M"]), b * k.shape[1])
    _mvpa_fwd_kernel[grid](
        q, k, v, time_keys, chan_keys, chan_index, key_mask if key_mask is not None else q,
        content_bias if content_bias is not None else q, time_bias, chan_bias, out, lse,
        h, h // k.shape[1], t, c, r, hd, window if window is not None else 0, scale, **meta, GROUP=group,
    )
    return out, lse


def mvpa_bwd(
    q: Tensor, k: Tensor, v: Tensor, time_keys: Tensor, chan_keys: Tensor, chan_index: Tensor, key_mask: Tensor | None,
    content_bias: Tensor | None, time_bias: Tensor, chan_bias: Tensor, window: int | None, scale: float,
    out: Tensor, lse: Tensor, do: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor]:
    """Launch the backward kernels; returns the gradients of
    ``q, k, v, time_keys, chan_keys, content_bias, time_bias, chan_bias``.
    """
    import triton

    from chanformer.kernels.mvpa.triton import _mvpa_bwd_dkdv_kernel, _mvpa_bwd_dq_kernel

    b, h, t, c, hd = q.shape
    h_kv, r, n = k.shape[1], chan_keys.shape[1], t * c
    group = _group(h, h_kv)
    meta = _meta(q, r, content_bias is not None, window, key_mask is not None, group)
    bm, bhd, bt, br = meta["BLOCK_M"], meta["BLOCK_HD"], meta["BLOCK_T"], meta["BLOCK_R"]
    nm = -(-n // bm)
    do = do.contiguous()
    delta = (out.float() * do.float()).sum(-1).reshape(b, h, n).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    f32: dict[str, Any] = dict(device=q.device, dtype=torch.float32)
    dtk = torch.empty(b * h_kv, nm, bt, bhd, **f32)
    dck = torch.empty(b * h_kv, nm, br, bhd, **f32)
    du, dtb, dcb = (torch.empty(b * h_kv, nm, bhd, **f32) for _ in range(3))
    args = (q, k, v, time_keys, chan_keys, chan_index, key_mask if key_mask is not None else q,
            content_bias if content_bias is not None else q, time_bias, chan_bias, do, lse, delta)
    scalars = (h, h // h_kv, t, c, r, hd, window if window is not None else 0, scale)
    block_c = max(16, triton.next_power_of_2(c))
    _mvpa_bwd_dq_kernel[(nm, b * h_kv)](*args, dq, dtk, dck, du, dtb, dcb, *scalars, nm, **meta, BLOCK_C=block_c,
                                        GROUP=group)
    dkdv_meta = meta | {"BLOCK_M": meta["BLOCK_N"]}  # one query head at a time there
    _mvpa_bwd_dkdv_kernel[(-(-n // meta["BLOCK_N"]), b * h_kv)](*args, dk, dv, *scalars, **dkdv_meta)

    def per_kv_head(x: Tensor) -> Tensor:  # [B * H_kv, NM, ...] partial sums -> [H_kv, ...]
        return x.view(b, h_kv, nm, *x.shape[2:]).sum((0, 2))

    d_time_keys = per_kv_head(dtk)[:, :t, :hd].to(time_keys.dtype)
    d_chan_keys = per_kv_head(dck)[:, :r, :hd].to(chan_keys.dtype)
    d_content = per_kv_head(du)[:, :hd].to(content_bias.dtype) if content_bias is not None else None
    return (dq, dk, dv, d_time_keys, d_chan_keys, d_content,
            per_kv_head(dtb)[:, :hd].to(time_bias.dtype), per_kv_head(dcb)[:, :hd].to(chan_bias.dtype))


class MvpaFunction(torch.autograd.Function):
    """Autograd over :func:`mvpa_fwd` / :func:`mvpa_bwd` (contiguous inputs, ``chan_index`` int32, ``key_mask`` int8)."""

    @staticmethod
    def forward(  # type: ignore[no-untyped-def]
        ctx, q, k, v, time_keys, chan_keys, chan_index, key_mask, content_bias, time_bias, chan_bias, window, scale
    ):
        q, k, v, time_keys, chan_keys, time_bias, chan_bias = (
            x.contiguous() for x in (q, k, v, time_keys, chan_keys, time_bias, chan_bias)
        )
        content_bias = content_bias.contiguous() if content_bias is not None else None
        chan_index = chan_index.to(torch.int32).contiguous()
        key_mask = key_mask.to(torch.int8).contiguous() if key_mask is not None else None
        out, lse = mvpa_fwd(
            q, k, v, time_keys, chan_keys, chan_index, key_mask, content_bias, time_bias, chan_bias, window, scale
        )
        ctx.save_for_backward(q, k, v, time_keys, chan_keys, chan_index, key_mask, content_bias, time_bias, chan_bias, out, lse)
        ctx.window, ctx.scale = window, scale
        return out

    @staticmethod
    def backward(ctx, do):  # type: ignore[no-untyped-def]
        *inputs, out, lse = ctx.saved_tensors
        dq, dk, dv, dtk, dck, du, dtb, dcb = mvpa_bwd(*inputs, ctx.window, ctx.scale, out, lse, do)
        return dq, dk, dv, dtk, dck, None, None, du, dtb, dcb, None, None


def mvpa_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    time_keys: Tensor,
    chan_keys: Tensor,
    chan_index: Tensor,
    *,
    content_bias: Tensor | None,
    time_bias: Tensor,
    chan_bias: Tensor,
    key_mask: Tensor | None = None,
    window: int | None = 10,
    scale: float | None = None,
) -> Tensor:
    """The Triton path with autograd, without dispatch (CUDA, or CPU under ``TRITON_INTERPRET=1``)."""
    check_inputs(q, k, v, time_keys, chan_keys, chan_index, content_bias, time_bias, chan_bias, key_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return MvpaFunction.apply(
        q, k, v, time_keys, chan_keys, chan_index, key_mask, content_bias, time_bias, chan_bias, window, scale
    )

