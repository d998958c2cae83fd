"""Selective scan (the S6 recurrence of Mamba): the PyTorch references.

For every batch element ``b``, inner channel ``d`` and state index ``n``::

    dt[b, d, t] = softplus(delta[b, d, t] + delta_bias[d])        (or without softplus)
    h[t]        = exp(dt[t] * A[d, n]) * h[t - 1] + dt[t] * B[b, n, t] * u[b, d, t]
    y[b, d, t]  = sum_n C[b, n, t] * h[t] + D[d] * u[b, d, t]
    y           = y * silu(z[b, d, t])                               (when z is given)

Three implementations with the same signature:

* :func:`selective_scan_reference` -- the per-step loop, readable, O(L) sequential steps.
* :func:`selective_scan_stepwise` -- the same recurrence step by step for inference only (no
  backward): the per-step ``[B, D, N]`` state is updated in place, in tiles of batch elements small
  enough to stay in cache, with step-major copies of the inputs, so it does the least arithmetic of
  the three and never materialises a ``[B, D, L, N]`` tensor. On a 2-core CPU (one thread) it was 2-7x faster
  than the chunked scan at the full MambAttention's shapes (``docs/performance.md``).
* :func:`selective_scan_chunked` -- splits time into chunks of ``K`` steps; inside a chunk the
  states come from cumulative sums of the log-decays ``dt * A`` and of the rescaled inputs
  (vectorised over all chunks), and only the ``L / K`` chunk-boundary states are carried
  sequentially, with an analytic backward (:class:`_ChunkedScan`). It matches the loop to float32
  rounding. It does a few times more arithmetic than the loop but issues ``K`` times fewer
  operations, and it works on cache-sized tiles of (batch, channel) rows: faster than the loop at
  every measured CPU shape.

Both compute in float32 (or float64 when the inputs are float64) and return ``u.dtype``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_inputs", "selective_scan_chunked", "selective_scan_reference", "selective_scan_stepwise"]

_MAX_CHUNK_LOG_DECAY = 60.0  # exp(60) ~ 1e26: far from float32 overflow
_TILE_ELEMENTS = 1 << 20  # ~4 MB float32 per [rows, L, N] tensor (2-core CPU measurement)
_STEP_TILE_ELEMENTS = 1 << 16  # state values per tile of the stepwise scan: 256 KB float32, a few such in L2


def _tile_rows(bsz: int, d: int, per_row: int, budget: int | None) -> int | None:
    """(batch, channel) rows per tile for a ``budget`` of values, or ``None`` when one tile holds all."""
    if budget is None or bsz * d * per_row <= budget:
        return None
    return max(1, budget // per_row)


def _split(x: Tensor | None, size: int, dim: int, count: int) -> list[Tensor | None]:
    # torch.split, whose backward concatenates the tile gradients (indexing would zero-fill a
    # full-size gradient per tile)
    return [None] * count if x is None else list(x.split(size, dim))


def _scan_in_tiles(
    scan: Callable[..., Tensor | tuple[Tensor, Tensor]], rows: int, u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
    C: Tensor, D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None, with_state: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run ``scan`` on tiles of about ``rows`` (batch, channel) rows and reassemble ``y [B, D, L]``
    (and the last state ``[B, D, N]``): groups of whole batch elements when one fits, else channel
    slices of one batch element."""
    bsz, d = u.shape[:2]
    grid: list[list[Tensor | tuple[Tensor, Tensor]]]  # [batch groups][channel groups]
    if rows >= d:
        step = rows // d
        n = -(-bsz // step)
        tiles = zip(*(_split(x, step, 0, n) for x in (u, delta, B, C, z)))
        grid = [[scan(tu, tdelta, A, tB, tC, D, tz, delta_bias)] for tu, tdelta, tB, tC, tz in tiles]
    else:
        n = -(-d // rows)
        per_channel = [_split(x, rows, 0, n) for x in (A, D, delta_bias)]
        grid = []
        for tu, tdelta, tB, tC, tz in zip(*(_split(x, 1, 0, bsz) for x in (u, delta, B, C, z))):
            per_sample = [_split(x, rows, 1, n) for x in (tu, tdelta, tz)]
            grid.append([
                scan(cu, cdelta, cA, tB, tC, cD, cz, cbias)
                for cu, cdelta, cz, cA, cD, cbias in zip(*per_sample, *per_channel)
            ])

    def join(pick: Callable[[Any], Tensor]) -> Tensor:
        return torch.cat([torch.cat([pick(p) for p in row], dim=1) for row in grid], dim=0)

    if with_state:
        return join(lambda p: p[0]), join(lambda p: p[1])
    return join(lambda p: p)


def check_inputs(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None
) -> None:
    """Raise ``ValueError`` unless the shapes are those :func:`selective_scan_reference` documents."""
    if u.ndim != 3:
        raise ValueError(f"selective_scan(u=...) must be [B, D, L], got {tuple(u.shape)}")
    bsz, d, length = u.shape
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and t.shape != u.shape:
            raise ValueError(f"selective_scan({name}=...) must match u {tuple(u.shape)}, got {tuple(t.shape)}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan(A=...) must be [D={d}, N], got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (bsz, n, length):
            raise ValueError(f"selective_scan({name}=...) must be [B, N, L]={(bsz, n, length)}, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"selective_scan({name}=...) must be [D={d}], got {tuple(t.shape)}")

def _prepare(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, delta_bias: Tensor | None, delta_softplus: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, torch.dtype]:
    if u.ndim != 3:
        raise ValueError(f"selective_scan(u=...) must be [B, D, L], got {tuple(u.shape)}")
    bsz, d, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan(delta=...) must match u {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan(A=...) must be [D={d}, N], got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (bsz, n, length):
            raise ValueError(f"selective_scan({name}=...) must be [B, N, L]={(bsz, n, length)}, got {tuple(t.shape)}")
    work = torch.float64 if u.dtype == torch.float64 else torch.float32
    dt = delta.to(work)
    if delta_bias is not None:
        if delta_bias.shape != (d,):
            raise ValueError(f"selective_scan(delta_bias=...) must be [D={d}], got {tuple(delta_bias.shape)}")
        dt = dt + delta_bias.to(work)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    return u.to(work), dt, A.to(work), B.to(work), C.to(work), work


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, out_dtype: torch.dtype) -> Tensor:
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        if z.shape != u.shape:
            raise ValueError(f"selective_scan(z=...) must match u {tuple(u.shape)}, got {tuple(z.shape)}")
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


class _ChunkedScan(torch.autograd.Function):
    """The core recurrence ``h[t] = exp(dt[t] A) h[t-1] + dt[t] u[t] B[t]``, ``y[t] = <C[t], h[t]>``
    on prepared (work-dtype) tensors, chunked as in :func:`selective_scan_chunked`, with an analytic
    backward. Returns ``(y [B, D, L], h_last [B, D, N])``.

    Backward: the adjoint ``g[t] = dL/dh[t] = C[t] dy[t] + exp(dt[t+1] A) g[t+1]`` runs the same
    chunked trick in reverse time. Within a chunk (log-decay cumsum ``S``), with ``e`` the carried
    ``exp(dt A) g`` at the next chunk's first step::

        g[i] = exp(-S[i]) * (Q[i] + exp(S[K-1]) e),   Q[i] = sum_{j >= i} exp(S[j]) C[j] dy[j]

    (every weight ``exp(S[j] - S[i]) <= 1``; ``e`` is carried over the ``L / K`` chunks from the end).
    Then ``dx = g``, ``d(dt A) = g * (h[t] - x[t])`` and ``dC = sum_d dy h``, from the saved states.
    ``cum`` (the forward's range-check cumsum, no grad) must have been built for chunk size ``k``.
    """

    @staticmethod
    def forward_impl(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, cum: Tensor, k: int,
                     keep_states: bool = False) -> tuple[Tensor, ...]:
        bsz, d, length = u.shape
        n = A.shape[1]
        nc = cum.shape[2]
        pad = nc * k - length
        dt_p, u_p, b_p, c_p = (F.pad(t, (0, pad)) if pad else t for t in (dt, u, B, C))
        x = (dt_p * u_p).view(bsz, d, nc, k, 1) * b_p.transpose(1, 2).contiguous().view(bsz, 1, nc, k, n)
        prefix = torch.neg(cum).exp_().mul_(x).cumsum(dim=3)  # P[t]: [B, D, nc, K, N]
        del x
        grow = cum.exp_()  # cum is the caller's scratch tensor
        h = prefix.new_zeros(bsz, d, n)
        starts = []
        for grow_end, prefix_end in zip(grow[:, :, :, -1].unbind(2), prefix[:, :, :, -1].unbind(2)):
            starts.append(h)
            h = grow_end * (h + prefix_end)
        states = prefix.add_(torch.stack(starts, dim=2)[:, :, :, None]).mul_(grow)  # h[t]
        c_mat = c_p.transpose(1, 2).contiguous().view(bsz, 1, nc, k, n)
        if keep_states:
            y = (states * c_mat).sum(-1)
        else:
            y = states.mul_(c_mat).sum(-1)
        y = y.reshape(bsz, d, nc * k)[..., :length]
        return (y, h, states) if keep_states else (y, h)

    @staticmethod
    def forward(ctx, u, dt, A, B, C, cum, k):  # type: ignore[no-untyped-def,override]
        y, h, states = _ChunkedScan.forward_impl(u, dt, A, B, C, cum, k, keep_states=True)
        ctx.save_for_backward(u, dt, A, B, C, states)
        ctx.k = k
        return y, h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, dh):  # type: ignore[no-untyped-def,override]
        u, dt, A, B, C, states = ctx.saved_tensors
        k = ctx.k
        bsz, d, nc = states.shape[:3]
        n = A.shape[1]
        length = u.shape[2]
        pad = nc * k - length
        dt_p, u_p, b_p, c_p, dy_p = (F.pad(t, (0, pad)) if pad else t for t in (dt, u, B, C, dy))
        dt_c = dt_p.view(bsz, d, nc, k)
        b_mat = b_p.transpose(1, 2).contiguous().view(bsz, 1, nc, k, n)  # [B, 1, nc, K, N]
        c_mat = c_p.transpose(1, 2).contiguous().view(bsz, 1, nc, k, n)
        dy_c = dy_p.reshape(bsz, d, nc, k, 1)
        cum = dt_c.cumsum(dim=3)[..., None] * A[:, None, None, :]  # S
        grow = torch.exp(cum)
        src = c_mat * dy_c  # C[t] dy[t]
        if dh is not None:
            src[:, :, -1, -1] += dh  # padded steps carry h unchanged to the last one
        q = src.mul_(grow).flip(3).cumsum(dim=3).flip(3)  # Q
        e = q.new_zeros(bsz, d, n)
        carries = [e] * nc
        for c in range(nc - 1, 0, -1):
            e = q[:, :, c, 0] + grow[:, :, c, -1] * e
            carries[c - 1] = e
        g = q.add_(grow[:, :, :, -1:] * torch.stack(carries, dim=2)[:, :, :, None]).mul_(cum.neg_().exp_())
        del grow, cum
        du = ddt = dA = dB = dC = None
        if ctx.needs_input_grad[4]:
            dC = (states * dy_c).sum(1).reshape(bsz, nc * k, n).transpose(1, 2)[..., :length]
        dtu = (dt_p * u_p).view(bsz, d, nc, k)
        gb = (g * b_mat).sum(-1)  # sum_n g B: [B, D, nc, K]
        if ctx.needs_input_grad[3]:
            dB = (g * dtu[..., None]).sum(1).reshape(bsz, nc * k, n).transpose(1, 2)[..., :length]
        w = (states - dtu[..., None] * b_mat).mul_(g)  # g * (h[t] - x[t]) = dL/d(dt A)
        del g
        if ctx.needs_input_grad[2]:
            dA = (w * dt_c[..., None]).sum((0, 2, 3))
        gb = gb.reshape(bsz, d, nc * k)[..., :length]
        if ctx.needs_input_grad[1]:
            ddt = torch.matmul(w.view(bsz, d, nc * k, n), A[None, :, :, None]).view(bsz, d, nc * k)[..., :length]
            ddt = ddt + u * gb
        if ctx.needs_input_grad[0]:
            du = dt * gb
        return du, ddt, dA, dB, dC, None, None


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan as an explicit loop over time (see module docstring for the maths).

    Args:
        u: ``[B, D, L]`` input.
        delta: ``[B, D, L]`` step sizes (before ``delta_bias``/softplus).
        A: ``[D, N]`` state matrix (diagonal per channel; negative for a stable scan).
        B: ``[B, N, L]`` input projection per step.
        C: ``[B, N, L]`` output projection per step.
        D: optional ``[D]`` skip weight.
        z: optional ``[B, D, L]`` gate; the output is multiplied by ``silu(z)``.
        delta_bias: optional ``[D]`` added to ``delta``.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        return_last_state: also return the final state ``[B, D, N]``.

    Returns:
        ``y [B, D, L]`` (dtype of ``u``), and the last state when requested.
    """
    out_dtype = u.dtype
    u, dt, A, B, C, _ = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    decay = torch.exp(dt[..., None] * A[:, None, :])  # [B, D, L, N]
    drive = (dt * u)[..., None] * B.transpose(1, 2)[:, None]  # [B, D, L, N]
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for decay_t, drive_t, c_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(2)):
        h = decay_t * h + drive_t  # [B, D, N]
        ys.append(torch.einsum("bdn,bn->bd", h, c_t))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(u.shape)
    out = _finish(y, u, D, z, out_dtype)
    return (out, h) if return_last_state else out


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = 32,
    tile_elements: int | None = _TILE_ELEMENTS,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan, vectorised within chunks of ``chunk_size`` steps (same arguments and
    results as :func:`selective_scan_reference`).

    Within a chunk with log-decays ``a[t] = dt[t] * A`` and their cumulative sums ``S[t]``
    (``S`` decreases from 0), the state is ``h[t] = exp(S[t]) * (h_start + P[t])`` with
    ``P[t] = sum_{s <= t} exp(-S[s]) x[s]`` and ``x[s] = dt[s] B[s] u[s]``: two cumulative sums
    over the whole ``[B, D, L, N]`` tensor, then a loop over the ``L / K`` chunks carries
    ``h_start``. Every weight ``exp(S[t] - S[s])`` is <= 1, so the error stays at float32
    rounding of the inputs; ``exp(-S)`` must not overflow, so when a chunk's total log-decay
    exceeds 60 the chunk is halved (down to 4 steps), and beyond that the chunk is computed in
    float64 with each step's log-decay floored at ``-600 / K`` (a change below ``e^-75`` of the
    carried state). Checking the range costs one device-to-host synchronisation.

    Large problems are computed in tiles of (batch, channel) rows whose ``[rows, L, N]`` tensors
    hold about ``tile_elements`` values, so each tile's passes stay in cache: at MambAttention's
    4 s time axis (``B * F' = 100, D = 256, L = 641, N = 16``) the untiled passes over 1 GB tensors
    were slower than the per-step loop on CPU (``docs/performance.md``).

    Args:
        chunk_size: steps per chunk ``K`` (>= 1). Memory is a few ``[B, D, L, N]`` tensors.
        tile_elements: values per tile (``None``: no tiling).
    """
    if chunk_size < 1:
        raise ValueError(f"selective_scan_chunked(chunk_size={chunk_size}): must be >= 1")
    rows = _tile_rows(u.shape[0], u.shape[1], u.shape[2] * A.shape[-1], tile_elements)
    if rows is not None:

        def scan(*tile: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
            tu, tdelta, tA, tB, tC, tD, tz, tbias = tile
            return selective_scan_chunked(
                tu, tdelta, tA, tB, tC, D=tD, z=tz, delta_bias=tbias, delta_softplus=delta_softplus,  # type: ignore[arg-type]
                return_last_state=return_last_state, chunk_size=chunk_size, tile_elements=None,
            )

        return _scan_in_tiles(scan, rows, u, delta, A, B, C, D, z, delta_bias, return_last_state)
    out_dtype = u.dtype
    u, dt, A, B, C, work = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    bsz, d, length = u.shape
    n = A.shape[1]
    if length == 0:
        out = _finish(u.new_zeros(u.shape), u, D, z, out_dtype)
        return (out, u.new_zeros(bsz, d, n)) if return_last_state else out

    limit = _MAX_CHUNK_LOG_DECAY if work == torch.float32 else 600.0
    decaying = bool((A <= 0).all())
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, B, C))
    k = min(chunk_size, length)
    with torch.no_grad():  # the range check; the differentiable paths below rebuild what they need
        while True:
            nc = -(-length // k)
            pad = nc * k - length
            # Padded steps have zero log-decay and zero input: they leave the state unchanged.
            dt_p = F.pad(dt.detach(), (0, pad)) if pad else dt.detach()
            cum = dt_p.view(bsz, d, nc, k).cumsum(dim=3)[..., None] * A.detach()[:, None, None, :]  # S
            worst = float(-(cum[..., -1, :] if decaying else cum).amin())
            if worst <= limit or k <= 4:
                break
            k = max(4, k // 2)
    analytic = worst <= limit
    if analytic and needs_grad:  # the adjoint needs decays <= 1 (dt >= 0, A <= 0); else the path below
        with torch.no_grad():
            analytic = decaying and bool(dt.amin() >= 0)
    if analytic:  # analytic backward (see _ChunkedScan); without grad, the same forward
        fn = _ChunkedScan.apply if needs_grad else _ChunkedScan.forward_impl
        y, h = fn(u, dt, A, B, C, cum, k)
        out = _finish(y, u, D, z, out_dtype)
        return (out, h) if return_last_state else out
    # float64, with each step's decay floored (see docstring), differentiated by autograd
    dt_p = F.pad(dt, (0, pad)) if pad else dt
    u_p, b_p, c_p = (F.pad(t, (0, pad)) if pad else t for t in (u, B, C))
    x = ((dt_p * u_p).view(bsz, d, nc, k, 1)) * b_p.view(bsz, 1, n, nc, k).permute(0, 1, 3, 4, 2)
    a = (dt_p.view(bsz, d, nc, k, 1) * A[:, None, None, :]).to(torch.float64).clamp_min(-600.0 / k)
    cum = a.cumsum(dim=3)
    x = x.to(torch.float64)
    prefix = (x * torch.exp(-cum)).cumsum(dim=3)  # P[t]: [B, D, nc, K, N]
    grow = torch.exp(cum)
    h = x.new_zeros(bsz, d, n)
    starts = []
    for grow_end, prefix_end in zip(grow[:, :, :, -1].unbind(2), prefix[:, :, :, -1].unbind(2)):
        starts.append(h)
        h = grow_end * (h + prefix_end)
    start = torch.stack(starts, dim=2)[:, :, :, None]
    c_mat = c_p.view(bsz, 1, n, nc, k).permute(0, 1, 3, 4, 2).to(grow.dtype)
    y = (grow * (prefix + start) * c_mat).sum(-1)  # states [B, D, nc, K, N] times C, summed over N
    y = y.reshape(bsz, d, nc * k)[..., :length].to(work)
    out = _finish(y, u, D, z, out_dtype)
    return (out, h.to(work)) if return_last_state else out



def selective_scan_stepwise(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    tile_elements: int | None = _STEP_TILE_ELEMENTS,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan for inference, one step at a time (same arguments and results as
    :func:`selective_scan_reference`; no backward).

    Per step ``t`` and tile of batch elements, four in-place operations on the ``[b, D, N]`` state:
    ``decay = exp(dt[t] A)``, ``h = h * decay + (dt[t] u[t]) B[t]``, ``y[t] = h C[t]`` (a batched
    matrix-vector product). The inputs are first copied step-major (``[L, B, ...]``) so every step
    reads contiguous slices, and the batch is processed in tiles of about ``tile_elements`` state
    values so that the state and its temporaries stay in cache. Compared with
    :func:`selective_scan_chunked` this does the plain recurrence's arithmetic only (no cumulative
    sums, no ``exp(-S)`` rescaling, hence no range check) and allocates nothing of size ``L * N``;
    the Python loop issues ``4 L`` small operations per tile, which is why it pays only when the
    state is large (the dispatch in :func:`chanformer.kernels.selective_scan.selective_scan` picks it
    for CPU inference with at least 4,096 state values).

    Raises:
        RuntimeError: when autograd would need gradients of the inputs (use the chunked scan).
    """
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)):
        raise RuntimeError("selective_scan_stepwise is inference-only (no backward); use selective_scan_chunked")
    out_dtype = u.dtype
    u, dt, A, B, C, _ = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    bsz, d, length = u.shape
    n = A.shape[1]
    dt_steps = dt.permute(2, 0, 1).contiguous()  # [L, B, D]
    drive_steps = (dt * u).permute(2, 0, 1).contiguous()  # dt u: [L, B, D]
    b_steps = B.permute(2, 0, 1).contiguous()  # [L, B, N]
    c_steps = C.permute(2, 0, 1)[..., None].contiguous()  # [L, B, N, 1]
    ys = u.new_empty(length, bsz, d, 1)
    last = u.new_zeros(bsz, d, n)
    per_tile = bsz if not tile_elements else max(1, tile_elements // (d * n))
    for b0 in range(0, bsz, per_tile):
        b1 = min(bsz, b0 + per_tile)
        h = last[b0:b1]  # a contiguous view: the final state is left in ``last``
        decay = u.new_empty(b1 - b0, d, n)
        for t in range(length):
            torch.mul(dt_steps[t, b0:b1, :, None], A, out=decay).exp_()
            h.mul_(decay).addcmul_(drive_steps[t, b0:b1, :, None], b_steps[t, b0:b1, None, :])
            torch.bmm(h, c_steps[t, b0:b1], out=ys[t, b0:b1])
    y = ys[..., 0].permute(1, 2, 0).contiguous()  # [B, D, L]
    out = _finish(y, u, D, z, out_dtype)
    return (out, last) if return_last_state else out
