"""Multi-variate parallel attention (MVPFormer) with a Triton forward kernel.

Same arguments and result as the reference :func:`chanformer.nn.mvpa.mvpa` (equation there and in
:mod:`chanformer.kernels._mvpa_triton`): content (windowed), relative-time and relative-channel
logits, causal over segments, padded channels masked, grouped-query heads.

The Triton kernels (forward and backward) compute the relative terms in-kernel from the
``[T, hd]``/``[R, hd]`` tables and never form an ``[N, N]`` tensor; the backward folds the logit
gradients back onto the table rows. :func:`mvpa` uses them when ``dropout_p == 0`` (no attention
dropout in the kernels) and the reference otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from chanformer.kernels._triton import interpreting, use_triton
from chanformer.nn.mvpa import mvpa as mvpa_reference

__all__ = ["mvpa", "mvpa_bwd", "mvpa_fwd", "mvpa_reference", "mvpa_triton"]


def _check(q: Tensor, k: Tensor, v: Tensor, time_keys: Tensor, chan_keys: Tensor, chan_index: Tensor) -> None:
    b, h, t, c, hd = q.shape
    h_kv = k.shape[1]
    if h % h_kv:
        raise ValueError(f"mvpa(): {h} query heads are not a multiple of {h_kv} key/value heads")
    if k.shape != (b, h_kv, t, c, hd) or v.shape != k.shape:
        raise ValueError(
            f"mvpa(k=..., v=...) must be [B, H_kv, T, C, hd]={(b, h_kv, t, c, hd)}, got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if time_keys.shape != (h_kv, t, hd):
        raise ValueError(f"mvpa(time_keys=...) must be [H_kv, T, hd]={(h_kv, t, hd)}, got {tuple(time_keys.shape)}")
    if chan_keys.ndim != 3 or chan_keys.shape[0] != h_kv or chan_keys.shape[2] != hd:
        raise ValueError(f"mvpa(chan_keys=...) must be [H_kv, R, hd], got {tuple(chan_keys.shape)}")
    if chan_index.shape != (b, c, c):
        raise ValueError(f"mvpa(chan_index=...) must be [B, C, C]={(b, c, c)}, got {tuple(chan_index.shape)}")


def _meta(q: Tensor, r: int, content: bool, window: int | None, masked: bool, group: int) -> dict[str, object]:
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
    from chanformer.kernels._mvpa_triton import _mvpa_fwd_kernel

    b, h, t, c, hd = q.shape
    r = chan_keys.shape[1]
    group = _group(h, k.shape[1])
    meta = _meta(q, r, content_bias is not None, window, key_mask is not None, group)
    out = torch.empty_like(q)
    lse = q.new_empty(b, h, t * c, dtype=torch.float32)
    grid = (-(-(t * c) // meta["BLOCK_M"]), b * k.shape[1])  # type: ignore[operator]
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

    from chanformer.kernels._mvpa_triton import _mvpa_bwd_dkdv_kernel, _mvpa_bwd_dq_kernel

    b, h, t, c, hd = q.shape
    h_kv, r, n = k.shape[1], chan_keys.shape[1], t * c
    group = _group(h, h_kv)
    meta = _meta(q, r, content_bias is not None, window, key_mask is not None, group)
    bm, bhd, bt, br = meta["BLOCK_M"], meta["BLOCK_HD"], meta["BLOCK_T"], meta["BLOCK_R"]
    nm = -(-n // bm)  # type: ignore[operator]
    do = do.contiguous()
    delta = (out.float() * do.float()).sum(-1).reshape(b, h, n).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    f32 = dict(device=q.device, dtype=torch.float32)
    dtk = torch.empty(b * h_kv, nm, bt, bhd, **f32)  # type: ignore[arg-type]
    dck = torch.empty(b * h_kv, nm, br, bhd, **f32)  # type: ignore[arg-type]
    du, dtb, dcb = (torch.empty(b * h_kv, nm, bhd, **f32) for _ in range(3))  # type: ignore[arg-type]
    args = (q, k, v, time_keys, chan_keys, chan_index, key_mask if key_mask is not None else q,
            content_bias if content_bias is not None else q, time_bias, chan_bias, do, lse, delta)
    scalars = (h, h // h_kv, t, c, r, hd, window if window is not None else 0, scale)
    block_c = max(16, triton.next_power_of_2(c))
    _mvpa_bwd_dq_kernel[(nm, b * h_kv)](*args, dq, dtk, dck, du, dtb, dcb, *scalars, nm, **meta, BLOCK_C=block_c,
                                        GROUP=group)
    dkdv_meta = meta | {"BLOCK_M": meta["BLOCK_N"]}  # one query head at a time there
    _mvpa_bwd_dkdv_kernel[(-(-n // meta["BLOCK_N"]), b * h_kv)](*args, dk, dv, *scalars, **dkdv_meta)  # type: ignore[operator]

    def per_kv_head(x: Tensor) -> Tensor:  # [B * H_kv, NM, ...] partial sums -> [H_kv, ...]
        return x.view(b, h_kv, nm, *x.shape[2:]).sum((0, 2))

    d_time_keys = per_kv_head(dtk)[:, :t, :hd].to(time_keys.dtype)
    d_chan_keys = per_kv_head(dck)[:, :r, :hd].to(chan_keys.dtype)
    d_content = per_kv_head(du)[:, :hd].to(content_bias.dtype) if content_bias is not None else None
    return (dq, dk, dv, d_time_keys, d_chan_keys, d_content,
            per_kv_head(dtb)[:, :hd].to(time_bias.dtype), per_kv_head(dcb)[:, :hd].to(chan_bias.dtype))


class _MvpaFn(torch.autograd.Function):
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
    _check(q, k, v, time_keys, chan_keys, chan_index)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _MvpaFn.apply(q, k, v, time_keys, chan_keys, chan_index, key_mask, content_bias, time_bias, chan_bias, window, scale)


def mvpa(
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
    dropout_p: float = 0.0,
) -> Tensor:
    """MVPA on the fastest path: the Triton kernels when allowed by :func:`chanformer.kernels.backend`
    and there is no attention dropout (the kernels have none); the reference otherwise.
    """
    candidates = (q, k, v, time_keys, chan_keys, chan_index, content_bias, time_bias, chan_bias, key_mask)
    tensors = [x for x in candidates if x is not None]
    if dropout_p == 0.0 and q.dtype != torch.float64 and use_triton(*tensors):
        return mvpa_triton(
            q, k, v, time_keys, chan_keys, chan_index, content_bias=content_bias, time_bias=time_bias,
            chan_bias=chan_bias, key_mask=key_mask, window=window, scale=scale,
        )
    return mvpa_reference(
        q, k, v, time_keys, chan_keys, chan_index, content_bias=content_bias, time_bias=time_bias,
        chan_bias=chan_bias, key_mask=key_mask, window=window, scale=scale, dropout_p=dropout_p,
    )
