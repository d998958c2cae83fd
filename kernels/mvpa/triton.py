"""Triton forward and backward kernels for multi-variate parallel attention (MVPA, MVPFormer).

Tokens ``n = t * C + c`` (segment ``t``, channel ``c``); for query ``(t, c)`` and key ``(t', c')``::

    s = scale * ( [|t - t'| <= W or t = T-1] (q + u) . k[t', c']          (content, windowed)
                  + (q + v) . P[T - 1 - (t - t')]                         (relative time)
                  + (q + z) . E[idx[b, c, c']] )                           (relative channel)
    s = -inf where t' > t (causal over segments) or channel c' is padded
    o = softmax(s) V

Grouped-query attention: query head ``h`` reads key head ``h // G``. One forward (and ``dQ``) program
per (block of ``BLOCK_M`` tokens, batch x key head) holds the ``G`` query heads of its key head as
``GROUP * BLOCK_M`` rows (``GROUP`` = ``G`` rounded up to a power of two, extra rows masked), so each
K/V tile is loaded once for all of them. The relative terms are never materialised as ``[N, N]``: per
query block the kernel computes ``(q + v) P^T`` ``[BM, T]`` and ``(q + z) E^T`` ``[BM, R]`` once from the
small tables, then gathers them per key block with ``tl.gather``. Keys are visited with an online
softmax only up to the last segment any query of the block can see, and a key block wholly outside
the content window of every query in the block skips the content dot product (and its loads).
``T``, ``C``, ``R`` and the window are runtime values that Triton does not specialise on, so a new
channel count reuses the compiled kernel unless it crosses a power of two (``BLOCK_T``/``BLOCK_R``/
``BLOCK_C`` bound the table sizes). The kernel computes in float32;
``PREC`` is ``"ieee"`` for float32 inputs (matches the reference) and ``"tf32"`` otherwise.

Backward (``P = exp(s - lse)``, ``g = scale P (dO V^T - delta)``, ``delta = rowsum(O dO)``):
``dV = P^T dO``; ``dK = (g * window)^T (Q + u)``; ``dQ = (g * window) K + g_T P + g_C E`` where
``g_T[m, j] = sum_n g[m, n] [rel_t(m, n) = j]`` and ``g_C[m, r] = sum_n g[m, n] [rel_c(m, n) = r]``
fold the logit gradients onto table rows. The fold needs no ``[BM, BN, R]`` one-hot tensor: per key
block ``g`` is summed per key segment and per key channel with two small GEMMs against one-hot maps
(``[BM, BT]``, ``[BM, BC]``); after the key loop the segment sums are shifted per query row into
relative-time rows (``j = T - 1 - (t - t')``, a ``tl.gather``) and the channel sums are moved onto
``idx[b, c, c']`` rows one key channel at a time; ``dP = g_T^T (Q + v)``, ``dE = g_C^T (Q + z)`` and the bias
gradients (row sums of the three parts of ``dQ``) are written per program and reduced in torch.
The ``dQ`` kernel runs per query block, the ``dK, dV`` kernel per key block (over the ``G`` query
heads of its key head and the query blocks that can see it).
"""

import triton
import triton.language as tl

# Sizes passed as plain runtime integers: Triton would otherwise specialise integer arguments on
# their value (1) and divisibility by 16, so a new channel count could compile a new kernel.
# BLOCK_T/BLOCK_R (powers of two >= 16 covering T and R) are the only size-dependent constexprs.
RUNTIME_SIZES = ["T", "C", "R", "WINDOW"]


@triton.jit
def _content_needed(i_m, i_n, T, C, WINDOW, HAS_WINDOW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Whether any (query, key) pair of query block ``i_m`` and key block ``i_n`` lies inside the
    content window (or the query block holds the last segment, which sees all content): otherwise the
    content dot product of the block is skipped. Causal pairs only (``t' <= t``).
    """
    if HAS_WINDOW:
        nt = T * C
        t_q_first = (i_m * BLOCK_M) // C
        t_q_last = tl.minimum(i_m * BLOCK_M + BLOCK_M - 1, nt - 1) // C
        t_k_last = tl.minimum(i_n * BLOCK_N + BLOCK_N - 1, nt - 1) // C
        return (t_q_first - t_k_last <= WINDOW) | (t_q_last == T - 1)
    return True


@triton.jit
def _query_rows(i_m, i_bkv, H, G, NT, BLOCK_M: tl.constexpr, GROUP: tl.constexpr):
    """The ``GROUP * BLOCK_M`` query rows of one program: tokens ``i_m * BLOCK_M ...`` of each of the
    ``G`` query heads that share key/value head ``i_bkv`` (rows of heads ``>= G`` are padding).

    Returns the token index, the flat ``(batch, query head)`` index and the validity of each row.
    """
    H_KV = H // G
    i_b, i_kv = i_bkv // H_KV, i_bkv % H_KV
    o_row = tl.arange(0, GROUP * BLOCK_M)
    g_row = o_row // BLOCK_M
    o_m = i_m * BLOCK_M + o_row % BLOCK_M
    return o_m, i_b * H + i_kv * G + g_row, (o_m < NT) & (g_row < G)


@triton.jit(do_not_specialize=RUNTIME_SIZES)
def _mvpa_fwd_kernel(
    p_q, p_k, p_v, p_tk, p_ck, p_cidx, p_kmask, p_u, p_tb, p_cb, p_o, p_lse,
    H, G, T, C, R, HD, WINDOW, scale,
    HAS_CONTENT: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    GROUP: tl.constexpr, PREC: tl.constexpr,
):
    i_m, i_bkv = tl.program_id(0), tl.program_id(1)
    i_b, i_kv = i_bkv // (H // G), i_bkv % (H // G)
    NT = T * C
    ROWS: tl.constexpr = GROUP * BLOCK_M
    o_m, i_bh, m_m = _query_rows(i_m, i_bkv, H, G, NT, BLOCK_M, GROUP)
    o_row = i_bh * NT + o_m  # [ROWS] flat query index
    o_e = tl.arange(0, BLOCK_HD)
    o_tt = tl.arange(0, BLOCK_T)
    o_r = tl.arange(0, BLOCK_R)
    m_e = o_e < HD
    t_q, c_q = o_m // C, o_m % C
    b_q = tl.load(p_q + o_row[:, None] * HD + o_e[None, :], mask=m_m[:, None] & m_e[None, :], other=0.0)
    b_q = b_q.to(tl.float32)
    b_tb = tl.load(p_tb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_cb = tl.load(p_cb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    # relative terms of every query against every table row, once per query block
    b_P = tl.load(p_tk + (i_kv * T + o_tt[:, None]) * HD + o_e[None, :], mask=(o_tt < T)[:, None] & m_e[None, :], other=0.0)
    b_E = tl.load(p_ck + (i_kv * R + o_r[:, None]) * HD + o_e[None, :], mask=(o_r < R)[:, None] & m_e[None, :], other=0.0)
    b_qt = tl.dot(b_q + b_tb[None, :], tl.trans(b_P.to(tl.float32)), input_precision=PREC)  # [BM, HD] @ [HD, BT] -> [BM, BT]
    b_qc = tl.dot(b_q + b_cb[None, :], tl.trans(b_E.to(tl.float32)), input_precision=PREC)  # [BM, HD] @ [HD, BR] -> [BM, BR]
    if HAS_CONTENT:
        b_u = tl.load(p_u + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
        b_qu = b_q + b_u[None, :]
    b_mi = tl.full([ROWS], float("-inf"), tl.float32)
    b_li = tl.full([ROWS], 0.0, tl.float32)
    b_acc = tl.full([ROWS, BLOCK_HD], 0.0, tl.float32)
    # causal over segments: keys up to the end of the last segment seen by this block
    t_last = tl.minimum((i_m + 1) * BLOCK_M - 1, NT - 1) // C
    n_end = (t_last + 1) * C
    kv_base = i_bkv * NT
    for i_n in range(0, tl.cdiv(n_end, BLOCK_N)):
        o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_n = o_n < NT
        t_k, c_k = o_n // C, o_n % C
        m_kv = m_n[:, None] & m_e[None, :]
        b_v = tl.load(p_v + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_kv, other=0.0).to(tl.float32)
        b_s = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        if HAS_CONTENT:
            if _content_needed(i_m, i_n, T, C, WINDOW, HAS_WINDOW, BLOCK_M, BLOCK_N):
                b_k = tl.load(p_k + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_kv, other=0.0).to(tl.float32)
                b_sc = tl.dot(b_qu, tl.trans(b_k), input_precision=PREC)  # [BM, HD] @ [HD, BN] -> [BM, BN]
                if HAS_WINDOW:
                    dist = tl.abs(t_q[:, None] - t_k[None, :])
                    b_sc = tl.where((dist <= WINDOW) | (t_q[:, None] == T - 1), b_sc, 0.0)
                b_s += b_sc
        rel_t = tl.minimum(tl.maximum(T - 1 - (t_q[:, None] - t_k[None, :]), 0), T - 1)
        b_s += tl.gather(b_qt, rel_t, 1)
        m_qk = m_m[:, None] & m_n[None, :]
        rel_c = tl.load(p_cidx + (i_b * C + c_q[:, None]) * C + c_k[None, :], mask=m_qk, other=0)
        b_s += tl.gather(b_qc, rel_c.to(tl.int32), 1)
        b_s = b_s * scale
        m_ok = m_qk & (t_k[None, :] <= t_q[:, None])
        if HAS_MASK:
            b_keep = tl.load(p_kmask + i_b * C + c_k, mask=m_n, other=0) != 0
            m_ok = m_ok & b_keep[None, :]
        b_s = tl.where(m_ok, b_s, float("-inf"))
        b_mnew = tl.maximum(b_mi, tl.max(b_s, 1))
        b_msafe = tl.where(b_mnew == float("-inf"), 0.0, b_mnew)
        b_p = tl.exp(b_s - b_msafe[:, None])
        b_alpha = tl.exp(b_mi - b_msafe)
        b_li = b_li * b_alpha + tl.sum(b_p, 1)
        b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p, b_v, input_precision=PREC)  # [BM, BN] @ [BN, HD] -> [BM, HD]
        b_mi = b_mnew
    b_o = b_acc / tl.where(b_li == 0.0, 1.0, b_li)[:, None]
    b_lse = tl.where(b_li == 0.0, float("inf"), b_mi + tl.log(tl.where(b_li == 0.0, 1.0, b_li)))
    tl.store(p_lse + o_row, b_lse, mask=m_m)
    tl.store(p_o + o_row[:, None] * HD + o_e[None, :], b_o.to(p_o.dtype.element_ty), mask=m_m[:, None] & m_e[None, :])


@triton.jit
def _mvpa_scores(
    b_qu, b_qt, b_qc, p_k, p_cidx, p_kmask, kv_base, i_b, i_m, i_n, o_m, o_n, o_e, m_m, m_e,
    T, C, HD, WINDOW, scale,
    HAS_CONTENT: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, ROWS: tl.constexpr, PREC: tl.constexpr,
):
    """Scaled, masked logits ``[ROWS, BN]`` of query rows against a key block (as the forward),
    with the content-window mask, the validity mask and whether the
    block pair has any content term at all (:func:`_content_needed`).
    """
    NT = T * C
    m_n = o_n < NT
    t_q, c_q = o_m // C, o_m % C
    t_k, c_k = o_n // C, o_n % C
    b_s = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
    m_win = tl.full([ROWS, BLOCK_N], 1, tl.int1)
    if HAS_WINDOW:
        m_win = (tl.abs(t_q[:, None] - t_k[None, :]) <= WINDOW) | (t_q[:, None] == T - 1)
    need = _content_needed(i_m, i_n, T, C, WINDOW, HAS_WINDOW, BLOCK_M, BLOCK_N)
    if HAS_CONTENT:
        if need:
            b_k = tl.load(p_k + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_n[:, None] & m_e[None, :], other=0.0)
            b_sc = tl.dot(b_qu, tl.trans(b_k.to(tl.float32)), input_precision=PREC)  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_s += tl.where(m_win, b_sc, 0.0)
    rel_t = tl.minimum(tl.maximum(T - 1 - (t_q[:, None] - t_k[None, :]), 0), T - 1)
    b_s += tl.gather(b_qt, rel_t, 1)
    m_qk = m_m[:, None] & m_n[None, :]
    rel_c = tl.load(p_cidx + (i_b * C + c_q[:, None]) * C + c_k[None, :], mask=m_qk, other=0).to(tl.int32)
    b_s += tl.gather(b_qc, rel_c, 1)
    m_ok = m_qk & (t_k[None, :] <= t_q[:, None])
    if HAS_MASK:
        b_keep = tl.load(p_kmask + i_b * C + c_k, mask=m_n, other=0) != 0
        m_ok = m_ok & b_keep[None, :]
    b_s = tl.where(m_ok, b_s * scale, float("-inf"))
    return b_s, m_win, m_ok, need


@triton.jit(do_not_specialize=RUNTIME_SIZES)
def _mvpa_bwd_dq_kernel(
    p_q, p_k, p_v, p_tk, p_ck, p_cidx, p_kmask, p_u, p_tb, p_cb, p_do, p_lse, p_delta,
    p_dq, p_dtk, p_dck, p_du, p_dtb, p_dcb,  # dq; partial sums per program of the table/bias gradients
    H, G, T, C, R, HD, WINDOW, scale, NM,
    HAS_CONTENT: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr, GROUP: tl.constexpr, PREC: tl.constexpr,
):
    i_m, i_bkv = tl.program_id(0), tl.program_id(1)
    i_b, i_kv = i_bkv // (H // G), i_bkv % (H // G)
    NT = T * C
    ROWS: tl.constexpr = GROUP * BLOCK_M
    o_m, i_bh, m_m = _query_rows(i_m, i_bkv, H, G, NT, BLOCK_M, GROUP)
    o_row = i_bh * NT + o_m  # [ROWS] flat query index
    o_e = tl.arange(0, BLOCK_HD)
    o_tt = tl.arange(0, BLOCK_T)
    o_r = tl.arange(0, BLOCK_R)
    m_e = o_e < HD
    m_q = m_m[:, None] & m_e[None, :]
    b_q = tl.load(p_q + o_row[:, None] * HD + o_e[None, :], mask=m_q, other=0.0).to(tl.float32)
    b_do = tl.load(p_do + o_row[:, None] * HD + o_e[None, :], mask=m_q, other=0.0).to(tl.float32)
    b_lse = tl.load(p_lse + o_row, mask=m_m, other=float("inf"))
    b_delta = tl.load(p_delta + o_row, mask=m_m, other=0.0)
    b_tb = tl.load(p_tb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_cb = tl.load(p_cb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_P = tl.load(p_tk + (i_kv * T + o_tt[:, None]) * HD + o_e[None, :], mask=(o_tt < T)[:, None] & m_e[None, :], other=0.0)
    b_E = tl.load(p_ck + (i_kv * R + o_r[:, None]) * HD + o_e[None, :], mask=(o_r < R)[:, None] & m_e[None, :], other=0.0)
    b_P = b_P.to(tl.float32)
    b_E = b_E.to(tl.float32)
    b_qv = b_q + b_tb[None, :]
    b_qz = b_q + b_cb[None, :]
    b_qt = tl.dot(b_qv, tl.trans(b_P), input_precision=PREC)  # [BM, HD] @ [HD, BT] -> [BM, BT]
    b_qc = tl.dot(b_qz, tl.trans(b_E), input_precision=PREC)  # [BM, HD] @ [HD, BR] -> [BM, BR]
    b_qu = b_q
    if HAS_CONTENT:
        b_qu = b_q + tl.load(p_u + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)[None, :]
    b_dqc = tl.full([ROWS, BLOCK_HD], 0.0, tl.float32)
    # logit gradients summed per key segment / key channel (GEMMs against one-hot maps, no 3-D tensors)
    b_ht = tl.full([ROWS, BLOCK_T], 0.0, tl.float32)
    b_hc = tl.full([ROWS, BLOCK_C], 0.0, tl.float32)
    o_c = tl.arange(0, BLOCK_C)
    t_last = tl.minimum((i_m + 1) * BLOCK_M - 1, NT - 1) // C
    n_end = (t_last + 1) * C
    kv_base = i_bkv * NT
    for i_n in range(0, tl.cdiv(n_end, BLOCK_N)):
        o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_n = o_n < NT
        b_s, m_win, m_ok, need = _mvpa_scores(
            b_qu, b_qt, b_qc, p_k, p_cidx, p_kmask, kv_base, i_b, i_m, i_n, o_m, o_n, o_e, m_m, m_e, T, C, HD, WINDOW,
            scale, HAS_CONTENT, HAS_WINDOW, HAS_MASK, BLOCK_M, BLOCK_N, ROWS, PREC,
        )
        b_p = tl.where(m_ok, tl.exp(b_s - b_lse[:, None]), 0.0)
        b_v = tl.load(p_v + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_n[:, None] & m_e[None, :], other=0.0)
        b_dp = tl.dot(b_do, tl.trans(b_v.to(tl.float32)), input_precision=PREC)  # [BM, HD] @ [HD, BN] -> [BM, BN]
        b_g = b_p * (b_dp - b_delta[:, None]) * scale
        if HAS_CONTENT:
            if need:
                b_k = tl.load(p_k + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_n[:, None] & m_e[None, :], other=0.0)
                # [BM, BN] @ [BN, HD] -> [BM, HD]
                b_dqc += tl.dot(tl.where(m_win, b_g, 0.0), b_k.to(tl.float32), input_precision=PREC)
        t_k, c_k = o_n // C, o_n % C
        b_oht = (t_k[:, None] == o_tt[None, :]).to(tl.float32)  # [BN, BT]: key -> its segment
        b_ohc = (c_k[:, None] == o_c[None, :]).to(tl.float32)  # [BN, BC]: key -> its channel
        b_ht += tl.dot(b_g, b_oht, input_precision=PREC)  # [BM, BN] @ [BN, BT] -> [BM, BT]
        b_hc += tl.dot(b_g, b_ohc, input_precision=PREC)  # [BM, BN] @ [BN, BC] -> [BM, BC]
    # onto table rows: relative time j = T - 1 - (t - t') is a per-row shift of the key segment t'
    t_q, c_q = o_m // C, o_m % C
    t_src = t_q[:, None] - (T - 1) + o_tt[None, :]
    b_gt = tl.gather(b_ht, tl.minimum(tl.maximum(t_src, 0), BLOCK_T - 1), 1)
    b_gt = tl.where((t_src >= 0) & (o_tt[None, :] < T), b_gt, 0.0)
    # relative channel row idx[b, c, c'] depends on the query's channel: one key channel at a time
    b_gc = tl.full([ROWS, BLOCK_R], 0.0, tl.float32)
    for cc in range(0, C):
        b_col = tl.sum(tl.where(o_c[None, :] == cc, b_hc, 0.0), 1)  # [BM]
        b_row = tl.load(p_cidx + (i_b * C + c_q) * C + cc, mask=m_m, other=0).to(tl.int32)  # [BM]
        b_gc += tl.where(b_row[:, None] == o_r[None, :], b_col[:, None], 0.0)
    b_dqt = tl.dot(b_gt, b_P, input_precision=PREC)  # [BM, BT] @ [BT, HD] -> [BM, HD]
    b_dqe = tl.dot(b_gc, b_E, input_precision=PREC)  # [BM, BR] @ [BR, HD] -> [BM, HD]
    b_dq = b_dqc + b_dqt + b_dqe
    tl.store(p_dq + o_row[:, None] * HD + o_e[None, :], b_dq.to(p_dq.dtype.element_ty), mask=m_q)
    i_part = i_bkv * NM + i_m  # partial sums over the program's rows (all G heads of the key head)
    b_dtk = tl.dot(tl.trans(b_gt), b_qv, input_precision=PREC)  # [BT, BM] @ [BM, HD] -> [BT, HD]
    b_dck = tl.dot(tl.trans(b_gc), b_qz, input_precision=PREC)  # [BR, BM] @ [BM, HD] -> [BR, HD]
    tl.store(p_dtk + (i_part * BLOCK_T + o_tt[:, None]) * BLOCK_HD + o_e[None, :], b_dtk)
    tl.store(p_dck + (i_part * BLOCK_R + o_r[:, None]) * BLOCK_HD + o_e[None, :], b_dck)
    tl.store(p_du + i_part * BLOCK_HD + o_e, tl.sum(b_dqc, 0))
    tl.store(p_dtb + i_part * BLOCK_HD + o_e, tl.sum(b_dqt, 0))
    tl.store(p_dcb + i_part * BLOCK_HD + o_e, tl.sum(b_dqe, 0))


@triton.jit(do_not_specialize=RUNTIME_SIZES)
def _mvpa_bwd_dkdv_kernel(
    p_q, p_k, p_v, p_tk, p_ck, p_cidx, p_kmask, p_u, p_tb, p_cb, p_do, p_lse, p_delta, p_dk, p_dv,
    H, G, T, C, R, HD, WINDOW, scale,
    HAS_CONTENT: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    PREC: tl.constexpr,
):
    i_n, i_bkv = tl.program_id(0), tl.program_id(1)
    H_KV = H // G
    i_b, i_kv = i_bkv // H_KV, i_bkv % H_KV
    NT = T * C
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_e = tl.arange(0, BLOCK_HD)
    o_tt = tl.arange(0, BLOCK_T)
    o_r = tl.arange(0, BLOCK_R)
    m_n, m_e = o_n < NT, o_e < HD
    kv_base = i_bkv * NT
    b_P = tl.load(p_tk + (i_kv * T + o_tt[:, None]) * HD + o_e[None, :], mask=(o_tt < T)[:, None] & m_e[None, :], other=0.0)
    b_E = tl.load(p_ck + (i_kv * R + o_r[:, None]) * HD + o_e[None, :], mask=(o_r < R)[:, None] & m_e[None, :], other=0.0)
    b_P = b_P.to(tl.float32)
    b_E = b_E.to(tl.float32)
    b_tb = tl.load(p_tb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_cb = tl.load(p_cb + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_u = tl.full([BLOCK_HD], 0.0, tl.float32)
    if HAS_CONTENT:
        b_u = tl.load(p_u + i_kv * HD + o_e, mask=m_e, other=0.0).to(tl.float32)
    b_v = tl.load(p_v + (kv_base + o_n[:, None]) * HD + o_e[None, :], mask=m_n[:, None] & m_e[None, :], other=0.0)
    b_v = b_v.to(tl.float32)
    b_dk = tl.full([BLOCK_N, BLOCK_HD], 0.0, tl.float32)
    b_dv = tl.full([BLOCK_N, BLOCK_HD], 0.0, tl.float32)
    # causal: only queries of segments >= this block's first segment see it
    m_start = ((i_n * BLOCK_N) // C * C) // BLOCK_M
    for j in range(0, G):
        i_bh = i_b * H + i_kv * G + j
        for i_m in range(m_start, tl.cdiv(NT, BLOCK_M)):
            o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
            m_m = o_m < NT
            m_q = m_m[:, None] & m_e[None, :]
            b_q = tl.load(p_q + (i_bh * NT + o_m[:, None]) * HD + o_e[None, :], mask=m_q, other=0.0).to(tl.float32)
            b_do = tl.load(p_do + (i_bh * NT + o_m[:, None]) * HD + o_e[None, :], mask=m_q, other=0.0).to(tl.float32)
            b_lse = tl.load(p_lse + i_bh * NT + o_m, mask=m_m, other=float("inf"))
            b_delta = tl.load(p_delta + i_bh * NT + o_m, mask=m_m, other=0.0)
            b_qt = tl.dot(b_q + b_tb[None, :], tl.trans(b_P), input_precision=PREC)  # [BM, HD] @ [HD, BT] -> [BM, BT]
            b_qc = tl.dot(b_q + b_cb[None, :], tl.trans(b_E), input_precision=PREC)  # [BM, HD] @ [HD, BR] -> [BM, BR]
            b_qu = b_q + b_u[None, :]
            b_s, m_win, m_ok, need = _mvpa_scores(
                b_qu, b_qt, b_qc, p_k, p_cidx, p_kmask, kv_base, i_b, i_m, i_n, o_m, o_n, o_e, m_m, m_e, T, C, HD,
                WINDOW, scale, HAS_CONTENT, HAS_WINDOW, HAS_MASK, BLOCK_M, BLOCK_N, BLOCK_M, PREC,
            )
            b_p = tl.where(m_ok, tl.exp(b_s - b_lse[:, None]), 0.0)
            b_dv += tl.dot(tl.trans(b_p), b_do, input_precision=PREC)  # [BN, BM] @ [BM, HD] -> [BN, HD]
            b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=PREC)  # [BM, HD] @ [HD, BN] -> [BM, BN]
            b_g = b_p * (b_dp - b_delta[:, None]) * scale
            if HAS_CONTENT:
                if need:  # [BN, BM] @ [BM, HD] -> [BN, HD]
                    b_dk += tl.dot(tl.trans(tl.where(m_win, b_g, 0.0)), b_qu, input_precision=PREC)
    m_kv = m_n[:, None] & m_e[None, :]
    tl.store(p_dk + (kv_base + o_n[:, None]) * HD + o_e[None, :], b_dk.to(p_dk.dtype.element_ty), mask=m_kv)
    tl.store(p_dv + (kv_base + o_n[:, None]) * HD + o_e[None, :], b_dv.to(p_dv.dtype.element_ty), mask=m_kv)
