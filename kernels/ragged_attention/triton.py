"""Triton flash attention (forward and backward) over ragged channel tokens, skipping all-padding key blocks.

``o[i] = sum_j softmax_j(scale q[i] . k[j] + mask[j]) v[j]`` over the ``L = C * P`` tokens of a
sample, ``mask[j] = 0`` for real tokens and ``-inf`` for padded ones. One program per (block of
``BLOCK_M`` queries, batch x head); keys are visited in blocks of ``BLOCK_N`` with an online
softmax. ``p_blk[b, j]`` (one flag per key block, computed on the host from the key mask) lets a
program skip a key block that holds only padding: no loads, no dots. Channel-major token order puts
a padded channel's ``P`` tokens in consecutive blocks, so padding costs (almost) nothing.
``PREC`` = ``"ieee"`` for float32 inputs (no TF32 rounding). Half/bf16 inputs feed the dots in
their own dtype on GPU (tensor cores); ``UPCAST`` (set under ``TRITON_INTERPRET=1``) feeds them as
float32 instead, because the interpreter's ``tl.dot`` on bf16 operands returns garbage (triton 3.9).

Backward (FlashAttention-2): with ``P = exp(S - lse)`` recomputed per block and
``delta[i] = sum_e o[i, e] do[i, e]``: ``dV = P^T dO``, ``dS = P * (dO V^T - delta)``,
``dK = scale dS^T Q``, ``dQ = scale dS K``. One kernel per key block accumulates ``dK, dV`` over all
query blocks (an all-padding key block writes zeros and stops); one per query block accumulates
``dQ`` over the non-padding key blocks.
"""

import triton
import triton.language as tl


@triton.jit
def _load_rows(p, o_rows, o_e, HD, mask, UPCAST: tl.constexpr):
    """Rows ``o_rows`` x features ``o_e`` of a ``[L, HD]`` tensor at ``p`` (0 where masked), as float32
    when ``UPCAST`` (the interpreter's bf16 ``tl.dot`` is broken), in their own dtype otherwise."""
    b_x = tl.load(p + o_rows[:, None] * HD + o_e[None, :], mask=mask, other=0.0)
    if UPCAST:
        b_x = b_x.to(tl.float32)
    return b_x


@triton.jit
def _ragged_attn_fwd_kernel(
    p_q, p_k, p_v, p_mask, p_blk, p_o, p_lse,
    H, L, HD, NB, scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
):
    i_m, i_bh = tl.program_id(0), tl.program_id(1)
    i_b = i_bh // H
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_e = tl.arange(0, BLOCK_HD)
    m_m, m_e = o_m < L, o_e < HD
    base = i_bh * L * HD
    b_q = _load_rows(p_q + base, o_m, o_e, HD, m_m[:, None] & m_e[None, :], UPCAST)
    b_mi = tl.full([BLOCK_M], float("-inf"), tl.float32)
    b_li = tl.full([BLOCK_M], 0.0, tl.float32)
    b_acc = tl.full([BLOCK_M, BLOCK_HD], 0.0, tl.float32)
    for i_n in range(0, NB):
        if tl.load(p_blk + i_b * NB + i_n) != 0:  # skip key blocks that are all padding
            o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
            m_n = o_n < L
            m_kv = m_n[:, None] & m_e[None, :]
            b_k = _load_rows(p_k + base, o_n, o_e, HD, m_kv, UPCAST)
            b_v = _load_rows(p_v + base, o_n, o_e, HD, m_kv, UPCAST)
            b_keep = tl.load(p_mask + i_b * L + o_n, mask=m_n, other=0) != 0
            b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC).to(tl.float32) * scale  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_s = tl.where(b_keep[None, :], b_s, float("-inf"))
            b_mnew = tl.maximum(b_mi, tl.max(b_s, 1))
            b_msafe = tl.where(b_mnew == float("-inf"), 0.0, b_mnew)
            b_p = tl.exp(b_s - b_msafe[:, None])
            b_alpha = tl.exp(b_mi - b_msafe)
            b_li = b_li * b_alpha + tl.sum(b_p, 1)
            # [BM, BN] @ [BN, HD] -> [BM, HD]
            b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision=PREC).to(tl.float32)
            b_mi = b_mnew
    b_o = b_acc / tl.where(b_li == 0.0, 1.0, b_li)[:, None]
    # log-sum-exp per query for the backward pass; +inf for a query without real keys (p = 0 there)
    b_lse = tl.where(b_li == 0.0, float("inf"), b_mi + tl.log(tl.where(b_li == 0.0, 1.0, b_li)))
    tl.store(p_lse + i_bh * L + o_m, b_lse, mask=m_m)
    tl.store(p_o + base + o_m[:, None] * HD + o_e[None, :], b_o.to(p_o.dtype.element_ty), mask=m_m[:, None] & m_e[None, :])


@triton.jit
def _ragged_attn_bwd_dkdv_kernel(
    p_q, p_k, p_v, p_mask, p_blk, p_do, p_lse, p_delta, p_dk, p_dv,
    H, L, HD, NB, scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
):
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b = i_bh // H
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_e = tl.arange(0, BLOCK_HD)
    m_n, m_e = o_n < L, o_e < HD
    m_kv = m_n[:, None] & m_e[None, :]
    base = i_bh * L * HD
    b_dk = tl.full([BLOCK_N, BLOCK_HD], 0.0, tl.float32)
    b_dv = tl.full([BLOCK_N, BLOCK_HD], 0.0, tl.float32)
    if tl.load(p_blk + i_b * NB + i_n) != 0:
        b_k = _load_rows(p_k + base, o_n, o_e, HD, m_kv, UPCAST)
        b_v = _load_rows(p_v + base, o_n, o_e, HD, m_kv, UPCAST)
        b_keep = (tl.load(p_mask + i_b * L + o_n, mask=m_n, other=0) != 0) & m_n
        for i_m in range(0, tl.cdiv(L, BLOCK_M)):
            o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
            m_m = o_m < L
            m_q = m_m[:, None] & m_e[None, :]
            b_q = _load_rows(p_q + base, o_m, o_e, HD, m_q, UPCAST)
            b_do = _load_rows(p_do + base, o_m, o_e, HD, m_q, UPCAST)
            b_lse = tl.load(p_lse + i_bh * L + o_m, mask=m_m, other=float("inf"))
            b_delta = tl.load(p_delta + i_bh * L + o_m, mask=m_m, other=0.0)
            b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC).to(tl.float32) * scale  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_p = tl.where(b_keep[None, :], tl.exp(b_s - b_lse[:, None]), 0.0)
            # [BN, BM] @ [BM, HD] -> [BN, HD]
            b_dv += tl.dot(tl.trans(b_p).to(b_do.dtype), b_do, input_precision=PREC).to(tl.float32)
            b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=PREC).to(tl.float32)  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_ds = b_p * (b_dp - b_delta[:, None])
            # [BN, BM] @ [BM, HD] -> [BN, HD]
            b_dk += tl.dot(tl.trans(b_ds).to(b_q.dtype), b_q, input_precision=PREC).to(tl.float32)
    tl.store(p_dk + base + o_n[:, None] * HD + o_e[None, :], (b_dk * scale).to(p_dk.dtype.element_ty), mask=m_kv)
    tl.store(p_dv + base + o_n[:, None] * HD + o_e[None, :], b_dv.to(p_dv.dtype.element_ty), mask=m_kv)


@triton.jit
def _ragged_attn_bwd_dq_kernel(
    p_q, p_k, p_v, p_mask, p_blk, p_do, p_lse, p_delta, p_dq,
    H, L, HD, NB, scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
):
    i_m, i_bh = tl.program_id(0), tl.program_id(1)
    i_b = i_bh // H
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_e = tl.arange(0, BLOCK_HD)
    m_m, m_e = o_m < L, o_e < HD
    m_q = m_m[:, None] & m_e[None, :]
    base = i_bh * L * HD
    b_q = _load_rows(p_q + base, o_m, o_e, HD, m_q, UPCAST)
    b_do = _load_rows(p_do + base, o_m, o_e, HD, m_q, UPCAST)
    b_lse = tl.load(p_lse + i_bh * L + o_m, mask=m_m, other=float("inf"))
    b_delta = tl.load(p_delta + i_bh * L + o_m, mask=m_m, other=0.0)
    b_dq = tl.full([BLOCK_M, BLOCK_HD], 0.0, tl.float32)
    for i_n in range(0, NB):
        if tl.load(p_blk + i_b * NB + i_n) != 0:  # skip key blocks that are all padding
            o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
            m_n = o_n < L
            m_kv = m_n[:, None] & m_e[None, :]
            b_k = _load_rows(p_k + base, o_n, o_e, HD, m_kv, UPCAST)
            b_v = _load_rows(p_v + base, o_n, o_e, HD, m_kv, UPCAST)
            b_keep = (tl.load(p_mask + i_b * L + o_n, mask=m_n, other=0) != 0) & m_n
            b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC).to(tl.float32) * scale  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_p = tl.where(b_keep[None, :], tl.exp(b_s - b_lse[:, None]), 0.0)
            b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=PREC).to(tl.float32)  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_ds = b_p * (b_dp - b_delta[:, None])
            b_dq += tl.dot(b_ds.to(b_k.dtype), b_k, input_precision=PREC).to(tl.float32)  # [BM, BN] @ [BN, HD] -> [BM, HD]
    tl.store(p_dq + base + o_m[:, None] * HD + o_e[None, :], (b_dq * scale).to(p_dq.dtype.element_ty), mask=m_q)
