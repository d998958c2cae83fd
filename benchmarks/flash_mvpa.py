"""Baseline for the MVPA benchmark: the Flash-MVPA approach, rebuilt from its documented algorithm.

IBM/multi-variate-parallel-transformer ships a Triton "Flash-MVPA" kernel. This module is not that
code: it re-implements, for comparison only, the three design choices its documentation and our
notes (``shared/notes/anchors.md``) describe, so the benchmark can show what our kernel
(:mod:`chanformer.kernels.mvpa`) changes:

1. the relative logits are materialised in memory by PyTorch before the kernel runs:
   ``rel = [(q + v) P^T, (q + z) E^T]`` of shape ``[B, H, N, T + R]`` (``N = T * C`` tokens);
2. the segment and channel counts are compile-time constants (``TIME_CTX``, ``CHANNEL_CTX``), so every
   new channel count compiles a new kernel;
3. every causal key block is visited and the content window is applied as a mask (no block skip).

Forward only (the benchmark compares forward passes with it). Same arguments and result as
:func:`chanformer.kernels.mvpa.mvpa_reference` without dropout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _flash_mvpa_fwd_kernel(
    p_q, p_k, p_v, p_rel, p_cidx, p_kmask, p_u, p_o,
    H, G, R, HD, WINDOW, scale,
    TIME_CTX: tl.constexpr, CHANNEL_CTX: tl.constexpr, HAS_CONTENT: tl.constexpr, HAS_WINDOW: tl.constexpr,
    HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr,
):
    i_m, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    i_kv = i_h // G
    NT: tl.constexpr = TIME_CTX * CHANNEL_CTX
    W_REL = TIME_CTX + R
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_e = tl.arange(0, BLOCK_HD)
    m_m, m_e = o_m < NT, o_e < HD
    t_q, c_q = o_m // CHANNEL_CTX, o_m % CHANNEL_CTX
    b_q = tl.load(p_q + (i_bh * NT + o_m[:, None]) * HD + o_e[None, :], mask=m_m[:, None] & m_e[None, :], other=0.0)
    b_q = b_q.to(tl.float32)
    if HAS_CONTENT:
        b_q += tl.load(p_u + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)[None, :]
    b_mi = tl.full([BLOCK_M], float("-inf"), tl.float32)
    b_li = tl.full([BLOCK_M], 0.0, tl.float32)
    b_acc = tl.full([BLOCK_M, BLOCK_HD], 0.0, tl.float32)
    kv_base = (i_b * (H // G) + i_kv) * NT
    n_end = (tl.minimum((i_m + 1) * BLOCK_M - 1, NT - 1) // CHANNEL_CTX + 1) * CHANNEL_CTX
    for i_n in range(0, tl.cdiv(n_end, BLOCK_N)):
        o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_n = o_n < NT
        t_k, c_k = o_n // CHANNEL_CTX, o_n % CHANNEL_CTX
        m_kv = m_n[:, None] & m_e[None, :]
        m_qk = m_m[:, None] & m_n[None, :]
        b_v = tl.load(p_v + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_kv, other=0.0).to(tl.float32)
        b_s = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        if HAS_CONTENT:
            b_k = tl.load(p_k + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_kv, other=0.0).to(tl.float32)
            b_sc = tl.dot(b_q, tl.trans(b_k), input_precision="ieee")  # [BM, HD] @ [HD, BN] -> [BM, BN]
            if HAS_WINDOW:
                in_window = (tl.abs(t_q[:, None] - t_k[None, :]) <= WINDOW) | (t_q[:, None] == TIME_CTX - 1)
                b_sc = tl.where(in_window, b_sc, 0.0)
            b_s += b_sc
        # relative logits read back from the materialised [N, T + R] rows of this (b, h)
        rel_t = tl.minimum(tl.maximum(TIME_CTX - 1 - (t_q[:, None] - t_k[None, :]), 0), TIME_CTX - 1)
        rel_c = tl.load(p_cidx + (i_b * CHANNEL_CTX + c_q[:, None]) * CHANNEL_CTX + c_k[None, :], mask=m_qk, other=0)
        row = p_rel + (i_bh * NT + o_m[:, None]) * W_REL
        b_s += tl.load(row + rel_t, mask=m_qk, other=0.0) + tl.load(row + TIME_CTX + rel_c, mask=m_qk, other=0.0)
        m_ok = m_qk & (t_k[None, :] <= t_q[:, None])
        if HAS_MASK:
            m_ok = m_ok & (tl.load(p_kmask + i_b * CHANNEL_CTX + c_k, mask=m_n, other=0) != 0)[None, :]
        b_s = tl.where(m_ok, b_s * scale, float("-inf"))
        b_mnew = tl.maximum(b_mi, tl.max(b_s, 1))
        b_msafe = tl.where(b_mnew == float("-inf"), 0.0, b_mnew)
        b_p = tl.exp(b_s - b_msafe[:, None])
        b_alpha = tl.exp(b_mi - b_msafe)
        b_li = b_li * b_alpha + tl.sum(b_p, 1)
        b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p, b_v, input_precision="ieee")  # [BM, BN] @ [BN, HD] -> [BM, HD]
        b_mi = b_mnew
    b_o = b_acc / tl.where(b_li == 0.0, 1.0, b_li)[:, None]
    tl.store(p_o + (i_bh * NT + o_m[:, None]) * HD + o_e[None, :], b_o.to(p_o.dtype.element_ty), mask=m_m[:, None] & m_e[None, :])


def relative_logits(q: Tensor, time_keys: Tensor, chan_keys: Tensor, time_bias: Tensor, chan_bias: Tensor) -> Tensor:
    """The materialised relative logits ``[B, H, N, T + R]`` (float32): every query against every
    relative-time row ``(q + v) P^T`` and every relative-channel row ``(q + z) E^T``."""
    b, h, t, c, hd = q.shape
    g = h // time_keys.shape[0]
    qf = q.float().reshape(b, h, t * c, hd)

    def per_head(x: Tensor) -> Tensor:  # [H_kv, ...] -> [H, ...] (query head h reads key head h // G)
        return x.float().repeat_interleave(g, dim=0)

    rel_t = (qf + per_head(time_bias)[None, :, None]) @ per_head(time_keys).transpose(-1, -2)[None]
    rel_c = (qf + per_head(chan_bias)[None, :, None]) @ per_head(chan_keys).transpose(-1, -2)[None]
    return torch.cat([rel_t, rel_c], dim=-1).contiguous()


def flash_mvpa_baseline(
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
    """MVPA forward the Flash-MVPA way (``q [B, H, T, C, hd]``, ``k, v [B, H_kv, T, C, hd]``); no autograd."""
    b, h, t, c, hd = q.shape
    scale = hd**-0.5 if scale is None else float(scale)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    rel = relative_logits(q, time_keys, chan_keys, time_bias, chan_bias)
    out = torch.empty_like(q)
    block = 64 if triton.knobs.runtime.interpret else 32
    grid = (triton.cdiv(t * c, block), b * h)
    _flash_mvpa_fwd_kernel[grid](
        q, k, v, rel, chan_index.to(torch.int32).contiguous(),
        key_mask.to(torch.int8).contiguous() if key_mask is not None else q,
        content_bias.contiguous() if content_bias is not None else q, out,
        h, h // k.shape[1], chan_keys.shape[1], hd, window if window is not None else 0, scale,
        TIME_CTX=t, CHANNEL_CTX=c, HAS_CONTENT=content_bias is not None, HAS_WINDOW=window is not None,
        HAS_MASK=key_mask is not None, BLOCK_M=block, BLOCK_N=block, BLOCK_HD=max(16, triton.next_power_of_2(hd)),
    )
    return out
