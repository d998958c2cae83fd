"""Triton kernels for the selective scan (Mamba's S6 recurrence), forward and backward.

For batch ``b``, channel ``d``, state ``n`` and step ``t`` (``dt = softplus(delta + bias)`` or not)::

    a[t] = exp(dt[t] A[d, n]),   x[t] = dt[t] u[t] B[n, t]
    h[t] = a[t] h[t-1] + x[t]
    y[t] = (sum_n C[n, t] h[t] + D[d] u[t]) * silu(z[t])

Forward: one program per (batch, block of ``BLOCK_D`` channels); time is walked in chunks of
``CHUNK`` steps. Inside a chunk the ``[BLOCK_D, CHUNK, N]`` states come from one associative scan of
the pairs ``(a, x)`` (``(a1, x1) o (a2, x2) = (a1 a2, a2 x1 + x2)``) started from the carried state,
which stays in registers; the state at each chunk start is saved for the backward pass.

Backward: the same grid walks the chunks in reverse. It recomputes the chunk's states from the
saved start state, then runs the adjoint recurrence ``dh[t] = C[t] g[t] + a[t+1] dh[t+1]`` (``g`` the
gradient of the ungated output) as a reverse associative scan, carrying ``dh`` across chunks.
From ``dh`` and ``h[t-1]``: ``d dt = sum_n (dh h[t-1] a A + dh B u)``, ``du = g D + dt sum_n dh B``,
``dA = sum_t dh h[t-1] a dt``, and per-channel-block partial sums of ``dB``/``dC`` (reduced in torch,
deterministic, no atomics).
"""

import triton
import triton.language as tl


@triton.jit
def _combine(a1, x1, a2, x2):
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _scan_lin(b_a, b_x, b_h0, o_k, CHUNK: tl.constexpr, USE_SCAN: tl.constexpr, REVERSE: tl.constexpr):
    """States ``h[k] = a[k] h[k-1] + x[k]`` (``h[k+1]`` when ``REVERSE``) of a ``[BD, CHUNK, BN]`` chunk
    started from ``b_h0 [BD, BN]``: an associative scan, or (``USE_SCAN=False``, used under the CPU
    interpreter whose generic scans run element by element) an unrolled loop over the chunk.
    """
    if USE_SCAN:
        b_ac, b_xc = tl.associative_scan((b_a, b_x), 1, _combine, reverse=REVERSE)
        b_hs = b_ac * b_h0[:, None, :] + b_xc
    else:
        b_hs = tl.zeros_like(b_x)
        b_h = b_h0
        for k in tl.static_range(CHUNK):
            i_k = CHUNK - 1 - k if REVERSE else k
            m_k = o_k[None, :, None] == i_k
            b_h = tl.sum(tl.where(m_k, b_a, 0.0), 1) * b_h + tl.sum(tl.where(m_k, b_x, 0.0), 1)
            b_hs = tl.where(m_k, b_h[:, None, :], b_hs)
    return b_hs


@triton.jit
def _ssm_fwd_kernel(
    p_u, p_delta, p_A, p_B, p_C, p_D, p_z, p_bias,  # inputs
    p_y, p_hchunk, p_hlast,  # outputs
    L, D, N, NC,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, USE_SCAN: tl.constexpr,
):
    i_b, i_d = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    o_n = tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, CHUNK)
    m_d, m_n = o_d < D, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    b_A = tl.load(p_A + o_d[:, None] * N + o_n[None, :], mask=m_dn, other=0.0).to(tl.float32)  # [BD, BN]
    b_Dv = tl.load(p_D + o_d, mask=m_d, other=0.0).to(tl.float32) if HAS_D else tl.zeros([BLOCK_D], tl.float32)
    b_bias = tl.load(p_bias + o_d, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else tl.zeros([BLOCK_D], tl.float32)
    b_h = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    for i_c in range(0, NC):
        o_t = i_c * CHUNK + o_k
        m_t = o_t < L
        m_dt = m_d[:, None] & m_t[None, :]
        o_x = i_b * D * L + o_d[:, None] * L + o_t[None, :]  # [BD, K]
        o_bc = i_b * N * L + o_n[None, :] * L + o_t[:, None]  # [K, BN]
        m_bc = m_t[:, None] & m_n[None, :]
        b_u = tl.load(p_u + o_x, mask=m_dt, other=0.0).to(tl.float32)
        b_dt = tl.load(p_delta + o_x, mask=m_dt, other=0.0).to(tl.float32) + b_bias[:, None]
        if SOFTPLUS:
            b_dt = tl.where(b_dt <= 20.0, tl.log(1.0 + tl.exp(b_dt)), b_dt)
        b_dt = tl.where(m_dt, b_dt, 0.0)  # padded steps: a = 1, x = 0
        b_B = tl.load(p_B + o_bc, mask=m_bc, other=0.0).to(tl.float32)
        b_C = tl.load(p_C + o_bc, mask=m_bc, other=0.0).to(tl.float32)
        # chunk start state, for the backward pass: hchunk[b, d, c, n]
        tl.store(p_hchunk + ((i_b * D + o_d[:, None]) * NC + i_c) * N + o_n[None, :], b_h, mask=m_dn)
        b_a = tl.exp(b_dt[:, :, None] * b_A[:, None, :])  # [BD, K, BN]
        b_x = (b_dt * b_u)[:, :, None] * b_B[None, :, :]  # [BD, K, BN]
        b_hs = _scan_lin(b_a, b_x, b_h, o_k, CHUNK, USE_SCAN, False)  # h[t], [BD, K, BN]
        b_y = tl.sum(b_hs * b_C[None, :, :], 2)  # [BD, K]
        b_h = tl.sum(tl.where(o_k[None, :, None] == CHUNK - 1, b_hs, 0.0), 1)
        if HAS_D:
            b_y += b_Dv[:, None] * b_u
        if HAS_Z:
            b_z = tl.load(p_z + o_x, mask=m_dt, other=0.0).to(tl.float32)
            b_y = b_y * b_z * tl.sigmoid(b_z)
        tl.store(p_y + o_x, b_y.to(p_y.dtype.element_ty), mask=m_dt)
    tl.store(p_hlast + (i_b * D + o_d[:, None]) * N + o_n[None, :], b_h, mask=m_dn)


@triton.jit
def _ssm_bwd_kernel(
    p_u, p_delta, p_A, p_B, p_C, p_D, p_z, p_bias, p_hchunk, p_dy, p_dhlast,  # inputs
    p_du, p_ddelta, p_dz, p_dA, p_dB, p_dC, p_dD, p_dbias,  # outputs (dA/dB/dC/dD/dbias partial)
    L, D, N, NC, ND,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DHLAST: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, USE_SCAN: tl.constexpr,
):
    i_b, i_d = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    o_n = tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, CHUNK)
    m_d, m_n = o_d < D, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    b_A = tl.load(p_A + o_d[:, None] * N + o_n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    b_Dv = tl.load(p_D + o_d, mask=m_d, other=0.0).to(tl.float32) if HAS_D else tl.zeros([BLOCK_D], tl.float32)
    b_bias = tl.load(p_bias + o_d, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else tl.zeros([BLOCK_D], tl.float32)
    if HAS_DHLAST:
        b_dh = tl.load(p_dhlast + (i_b * D + o_d[:, None]) * N + o_n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    else:
        b_dh = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    b_dA = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    b_dD = tl.zeros([BLOCK_D], tl.float32)
    b_dbias = tl.zeros([BLOCK_D], tl.float32)
    for i_r in range(0, NC):
        i_c = NC - 1 - i_r
        o_t = i_c * CHUNK + o_k
        m_t = o_t < L
        m_dt = m_d[:, None] & m_t[None, :]
        m_bc = m_t[:, None] & m_n[None, :]
        o_x = i_b * D * L + o_d[:, None] * L + o_t[None, :]  # [BD, K]
        o_bc = i_b * N * L + o_n[None, :] * L + o_t[:, None]  # [K, BN]
        b_u = tl.load(p_u + o_x, mask=m_dt, other=0.0).to(tl.float32)
        b_raw = tl.load(p_delta + o_x, mask=m_dt, other=0.0).to(tl.float32) + b_bias[:, None]
        b_dt = tl.where(b_raw <= 20.0, tl.log(1.0 + tl.exp(b_raw)), b_raw) if SOFTPLUS else b_raw
        b_dt = tl.where(m_dt, b_dt, 0.0)
        b_B = tl.load(p_B + o_bc, mask=m_bc, other=0.0).to(tl.float32)
        b_C = tl.load(p_C + o_bc, mask=m_bc, other=0.0).to(tl.float32)
        b_dy = tl.load(p_dy + o_x, mask=m_dt, other=0.0).to(tl.float32)
        # recompute h[t] and h[t-1] from the saved chunk start state
        b_h0 = tl.load(p_hchunk + ((i_b * D + o_d[:, None]) * NC + i_c) * N + o_n[None, :], mask=m_dn, other=0.0)
        b_a = tl.exp(b_dt[:, :, None] * b_A[:, None, :])  # [BD, K, BN]
        b_x = (b_dt * b_u)[:, :, None] * b_B[None, :, :]
        b_hs = _scan_lin(b_a, b_x, b_h0, o_k, CHUNK, USE_SCAN, False)  # h[t], [BD, K, BN]
        # h[t-1]: the same scan over the elements shifted by one step, (1, 0) first
        o_tp = o_t - 1
        m_p = m_t & (o_k > 0)
        m_dp = m_d[:, None] & m_p[None, :]
        b_up = tl.load(p_u + o_x - 1, mask=m_dp, other=0.0).to(tl.float32)
        b_rp = tl.load(p_delta + o_x - 1, mask=m_dp, other=0.0).to(tl.float32) + b_bias[:, None]
        b_dtp = tl.where(b_rp <= 20.0, tl.log(1.0 + tl.exp(b_rp)), b_rp) if SOFTPLUS else b_rp
        b_dtp = tl.where(m_dp, b_dtp, 0.0)
        b_Bp = tl.load(p_B + i_b * N * L + o_n[None, :] * L + o_tp[:, None], mask=m_p[:, None] & m_n[None, :], other=0.0)
        b_ap = tl.exp(b_dtp[:, :, None] * b_A[:, None, :])
        b_xp = (b_dtp * b_up)[:, :, None] * b_Bp.to(tl.float32)[None, :, :]
        b_hp = _scan_lin(b_ap, b_xp, b_h0, o_k, CHUNK, USE_SCAN, False)  # h[t-1], [BD, K, BN]
        # output gate and skip
        b_g = b_dy
        if HAS_Z:
            b_z = tl.load(p_z + o_x, mask=m_dt, other=0.0).to(tl.float32)
            b_sz = tl.sigmoid(b_z)
            b_ypre = tl.sum(b_hs * b_C[None, :, :], 2) + b_Dv[:, None] * b_u
            b_dz = b_dy * b_ypre * b_sz * (1.0 + b_z * (1.0 - b_sz))
            tl.store(p_dz + o_x, b_dz.to(p_dz.dtype.element_ty), mask=m_dt)
            b_g = b_dy * b_z * b_sz
        b_du = b_g * b_Dv[:, None]
        b_dD += tl.sum(b_g * b_u, 1)
        # dC partial: sum over this block's channels
        b_dC = tl.sum(b_g[:, :, None] * b_hs, 0)  # [K, BN]
        o_part = (i_b * ND + i_d) * N * L + o_n[None, :] * L + o_t[:, None]
        tl.store(p_dC + o_part, b_dC, mask=m_bc)
        # adjoint: dh[t] = C[t] g[t] + a[t+1] dh[t+1]
        m_nx = m_d[:, None] & ((o_t + 1) < L)[None, :]
        b_rn = tl.load(p_delta + o_x + 1, mask=m_nx, other=0.0).to(tl.float32) + b_bias[:, None]
        b_dtn = tl.where(b_rn <= 20.0, tl.log(1.0 + tl.exp(b_rn)), b_rn) if SOFTPLUS else b_rn
        b_dtn = tl.where(m_nx, b_dtn, 0.0)
        b_an = tl.exp(b_dtn[:, :, None] * b_A[:, None, :])  # a[t+1], [BD, K, BN]
        b_dhs = _scan_lin(b_an, b_g[:, :, None] * b_C[None, :, :], b_dh, o_k, CHUNK, USE_SCAN, True)  # dh[t]
        b_dh = tl.sum(tl.where(o_k[None, :, None] == 0, b_dhs, 0.0), 1)
        b_da = b_dhs * b_hp * b_a  # d/d(dt A) of the decay term
        b_dhB = tl.sum(b_dhs * b_B[None, :, :], 2)  # [BD, K]
        b_ddt = tl.sum(b_da * b_A[:, None, :], 2) + b_dhB * b_u
        b_du += b_dhB * b_dt
        b_dA += tl.sum(tl.where(m_t[None, :, None], b_da * b_dt[:, :, None], 0.0), 1)
        b_dB = tl.sum(b_dhs * (b_dt * b_u)[:, :, None], 0)  # [K, BN]
        tl.store(p_dB + o_part, b_dB, mask=m_bc)
        if SOFTPLUS:
            b_ddt = b_ddt * tl.sigmoid(b_raw)
        b_ddt = tl.where(m_dt, b_ddt, 0.0)
        b_dbias += tl.sum(b_ddt, 1)
        tl.store(p_du + o_x, b_du.to(p_du.dtype.element_ty), mask=m_dt)
        tl.store(p_ddelta + o_x, b_ddt.to(p_ddelta.dtype.element_ty), mask=m_dt)
    o_bd = i_b * D + o_d
    tl.store(p_dA + o_bd[:, None] * N + o_n[None, :], b_dA, mask=m_dn)
    tl.store(p_dD + o_bd, b_dD, mask=m_d)
    tl.store(p_dbias + o_bd, b_dbias, mask=m_d)
