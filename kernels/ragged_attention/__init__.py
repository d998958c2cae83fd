"""Attention over ragged channel tokens: reference, Triton kernels and the one dispatch, :func:`ragged_attention`.

Equation and layout: ``README.md`` beside this file and :mod:`chanformer.kernels.ragged_attention.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from chanformer.kernels.config import use_triton
from chanformer.kernels.ragged_attention.autograd import ragged_attention_triton
from chanformer.kernels.ragged_attention.reference import check_inputs, ragged_attention_reference

__all__ = ["ragged_attention", "ragged_attention_reference", "ragged_attention_triton"]


def ragged_attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> Tensor:
    """Multi-head attention over ``[B, H, L, hd]`` tokens of which ``key_mask`` marks the real ones.

    Validates the inputs, then runs the Triton kernels (which skip key blocks made only of padding)
    when there is a key mask, no attention dropout, the dtype is not float64 and
    :func:`chanformer.kernels.config.use_triton` allows them for these tensors; otherwise
    :func:`ragged_attention_reference` (SDPA with the boolean mask). The two agree up to float32
    rounding, except for queries whose sample has no real key: 0 from the kernel, NaN from SDPA.

    Args:
        q, k, v: ``[B, H, L, hd]`` (``L = C * P`` tokens, channel-major).
        key_mask: ``[B, L]`` bool, True = real token; ``None`` = no padding (SDPA, nothing to skip).
        scale: logit multiplier (``None``: ``hd ** -0.5``).
        dropout_p: dropout on the attention probabilities (forces the reference).

    Returns:
        ``[B, H, L, hd]`` in ``q``'s dtype.

    Raises:
        ValueError: mismatched shapes, or a ``key_mask`` that is not bool ``[B, L]``.
    """
    check_inputs(q, k, v, key_mask)
    if key_mask is not None and dropout_p == 0.0 and q.dtype != torch.float64 and use_triton(q, k, v, key_mask):
        return ragged_attention_triton(q, k, v, key_mask, scale)
    return ragged_attention_reference(q, k, v, key_mask, scale, dropout_p)
