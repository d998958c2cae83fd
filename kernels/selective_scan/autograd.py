"""Selective scan on Triton: the launchers ``selective_scan_fwd`` / ``selective_scan_bwd``, the autograd
Function built from them, and :func:`selective_scan_triton` (that Function without dispatch).

The kernels (:mod:`chanformer.kernels.selective_scan.triton`, imported on the first launch) are
chunked over time with the state in registers; the backward is a reverse-time adjoint scan from the
saved chunk-start states. They compute in float32, return ``u.dtype`` and give each input's
gradient in its dtype; float64 is not supported (the dispatch runs the PyTorch scan for it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from chanformer.kernels.config import interpreting
from chanformer.kernels.selective_scan.reference import check_inputs

__all__ = ["SelectiveScanFunction", "selective_scan_bwd", "selective_scan_fwd", "selective_scan_triton"]


def _blocks(d: int, n: int, chunk: int) -> tuple[int, int, int]:
    import triton

    block_n = triton.next_power_of_2(max(n, 1))
    if interpreting():  # the CPU interpreter pays per tile operation: few, large tiles
        return min(triton.next_power_of_2(d), 64), block_n, 64
    block_d = max(1, min(triton.next_power_of_2(d), max(1, 2048 // (block_n * chunk))))  # untuned: no GPU yet
    return block_d, block_n, chunk


Cfg = tuple[bool, int, int, int, int, bool]  # softplus, BLOCK_D, BLOCK_N, CHUNK, number of chunks, assoc scan


def selective_scan_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None, delta_softplus: bool, chunk: int, assoc: bool | None,
) -> tuple[Tensor, Tensor, Tensor, Cfg]:
    """Launch the forward kernel (contiguous inputs): ``y [B, D, L]``, last state ``[B, D, N]``,
    chunk-start states ``[B, D, L / CHUNK, N]`` (float32, for the backward pass) and the launch config.
    """
    from chanformer.kernels.selective_scan.triton import _ssm_fwd_kernel

    bsz, d, length = u.shape
    n = A.shape[1]
    block_d, block_n, chunk = _blocks(d, n, chunk)
    assoc = (not interpreting()) if assoc is None else assoc
    nc = max(1, -(-length // chunk))
    y = torch.empty_like(u)
    hchunk = u.new_empty(bsz, d, nc, n, dtype=torch.float32)
    hlast = u.new_empty(bsz, d, n, dtype=torch.float32)
    _ssm_fwd_kernel[(bsz, -(-d // block_d))](
        u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, y, hchunk, hlast,
        length, d, n, nc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk, USE_SCAN=assoc,
    )
    return y, hlast, hchunk, (delta_softplus, block_d, block_n, chunk, nc, assoc)


def selective_scan_bwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None, hchunk: Tensor, dy: Tensor, dhlast: Tensor | None, cfg: Cfg,
) -> tuple[Tensor | None, ...]:
    """Launch the backward kernel; returns the gradients of ``u, delta, A, B, C, D, z, delta_bias``
    (``None`` for absent optional inputs), each in its input's dtype.
    """
    from chanformer.kernels.selective_scan.triton import _ssm_bwd_kernel

    delta_softplus, block_d, block_n, chunk, nc, assoc = cfg
    bsz, d, length = u.shape
    n = A.shape[1]
    nd = -(-d // block_d)
    f32 = torch.float32
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = u.new_empty(bsz, d, n, dtype=f32)  # per-sample partial sums, reduced below (deterministic)
    dB = u.new_zeros(bsz, nd, n, length, dtype=f32)  # per-channel-block partial sums
    dC = u.new_zeros(bsz, nd, n, length, dtype=f32)
    dD = u.new_empty(bsz, d, dtype=f32)
    dbias = u.new_empty(bsz, d, dtype=f32)
    _ssm_bwd_kernel[(bsz, nd)](
        u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, hchunk, dy.contiguous(),
        dhlast.contiguous() if dhlast is not None else u,
        du, ddelta, dz if dz is not None else du, dA, dB, dC, dD, dbias,
        length, d, n, nc, nd,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_DHLAST=dhlast is not None, BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk, USE_SCAN=assoc,
    )
    return (
        du, ddelta, dA.sum(0).to(A.dtype), dB.sum(1).to(B.dtype), dC.sum(1).to(C.dtype),
        dD.sum(0).to(D.dtype) if D is not None else None, dz,
        dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
    )


class SelectiveScanFunction(torch.autograd.Function):
    """Autograd over :func:`selective_scan_fwd` / :func:`selective_scan_bwd`; returns ``(y, last state)``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, assoc):  # type: ignore[no-untyped-def]
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        D, z, delta_bias = (t.contiguous() if t is not None else None for t in (D, z, delta_bias))
        y, hlast, hchunk, cfg = selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, assoc)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, hchunk)
        ctx.cfg = cfg
        return y, hlast

    @staticmethod
    def backward(ctx, dy, dhlast):  # type: ignore[no-untyped-def]
        *inputs, hchunk = ctx.saved_tensors
        return (*selective_scan_bwd(*inputs, hchunk, dy, dhlast, ctx.cfg), None, None, None)


def selective_scan_triton(
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
    chunk_size: int = 16,
    assoc_scan: bool | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The Triton path of :func:`chanformer.kernels.selective_scan.selective_scan`, without dispatch
    (inputs must be on CUDA, or on CPU under ``TRITON_INTERPRET=1``). ``chunk_size`` is rounded up to a
    power of two. ``assoc_scan``: scan inside a chunk with ``tl.associative_scan`` (default on GPU) or an
    unrolled loop (default under the interpreter, whose generic scan runs element by element in Python).
    """
    import triton

    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.dtype == torch.float64:
        raise ValueError("selective_scan_triton(): float64 is not supported by the kernel; use the torch path")
    y, h = SelectiveScanFunction.apply(
        u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), triton.next_power_of_2(max(2, chunk_size)), assoc_scan
    )
    return (y, h) if return_last_state else y

