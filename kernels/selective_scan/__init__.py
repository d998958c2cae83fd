"""Selective scan (Mamba's S6 recurrence): references, Triton kernels and the one dispatch, :func:`selective_scan`.

Equation and layout: ``README.md`` beside this file and :mod:`chanformer.kernels.selective_scan.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from chanformer.kernels.config import use_triton
from chanformer.kernels.selective_scan.autograd import selective_scan_triton
from chanformer.kernels.selective_scan.reference import (
    check_inputs,
    selective_scan_chunked,
    selective_scan_reference,
    selective_scan_stepwise,
)

__all__ = [
    "IMPLEMENTATIONS",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_reference",
    "selective_scan_stepwise",
    "selective_scan_triton",
]

IMPLEMENTATIONS: tuple[str, ...] = ("auto", "chunked", "reference", "stepwise")
STEPWISE_MIN_STATE = 4096  # "auto": the stepwise scan for CPU inference from this many state values B * D * N


def selective_scan(
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
    *,
    implementation: str = "auto",
    chunk_size: int = 32,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan ``[B, D, L] -> [B, D, L]`` (equation: ``README.md``).

    Validates the inputs and picks the implementation:

    * ``"auto"`` (default): the Triton kernels when :func:`chanformer.kernels.config.use_triton` allows
      them for these tensors (Triton forced; CUDA, or CPU under the interpreter) and the dtype is not
      float64; otherwise, on CPU when no input needs a gradient and the state ``B * D * N`` holds at
      least ``STEPWISE_MIN_STATE`` values, :func:`selective_scan_stepwise` (inference; 2-7x faster
      than the chunked scan at the full MambAttention's shapes); otherwise :func:`selective_scan_chunked`
      (faster than the loop at every measured shape, and differentiable).
    * ``"chunked"``: :func:`selective_scan_chunked`, whatever the switch says.
    * ``"reference"``: :func:`selective_scan_reference`, the per-step loop (readable, slow).
    * ``"stepwise"``: :func:`selective_scan_stepwise` (inference only: raises when a gradient is needed).

    All paths compute in float32 (float64 for float64 inputs on the PyTorch paths) and agree up to
    float32 rounding.

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
        implementation: ``"auto"``, ``"chunked"`` or ``"reference"`` (above).
        chunk_size: steps per chunk of the chunked PyTorch scan (the Triton kernels choose their own).

    Returns:
        ``y [B, D, L]`` in ``u``'s dtype, and the last state when requested.

    Raises:
        ValueError: inconsistent shapes, an unknown ``implementation`` or ``chunk_size < 1``.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"selective_scan(implementation={implementation!r}): expected one of {IMPLEMENTATIONS}")
    if chunk_size < 1:
        raise ValueError(f"selective_scan(chunk_size={chunk_size}): must be >= 1")
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if implementation == "reference":
        return selective_scan_reference(*args)
    if implementation == "stepwise":
        return selective_scan_stepwise(*args)
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    if implementation == "auto" and u.dtype != torch.float64 and use_triton(*tensors):
        return selective_scan_triton(*args)
    if implementation == "auto" and u.device.type == "cpu" and u.shape[0] * A.numel() >= STEPWISE_MIN_STATE:
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return selective_scan_stepwise(*args)
    return selective_scan_chunked(*args, chunk_size=chunk_size)
