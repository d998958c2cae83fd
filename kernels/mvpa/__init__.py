"""Multi-variate parallel attention (MVPFormer): reference, Triton kernels and the one dispatch, :func:`mvpa`.

Equation and layout: ``README.md`` beside this file and :mod:`chanformer.kernels.mvpa.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from chanformer.kernels.config import use_triton
from chanformer.kernels.mvpa.autograd import mvpa_triton
from chanformer.kernels.mvpa.reference import check_inputs, mvpa_reference, relative_channel_index, relative_time_index

__all__ = ["mvpa", "mvpa_reference", "mvpa_triton", "relative_channel_index", "relative_time_index"]


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
    """Multi-variate parallel attention over ``N = T * C`` (segment, channel) tokens.

    Validates the inputs, then runs the Triton kernels when :func:`chanformer.kernels.config.use_triton`
    allows them for these tensors (Triton forced; CUDA, or CPU under the interpreter), there is no
    attention dropout (the kernels have none) and the dtype is not float64; otherwise
    :func:`mvpa_reference`. Both give the same result up to float32 rounding.

    Args:
        q: queries ``[B, H, T, C, hd]``.
        k: content keys ``[B, H_kv, T, C, hd]`` (``H`` divisible by ``H_kv``: grouped-query heads).
        v: values ``[B, H_kv, T, C, hd]``.
        time_keys: projected segment-position table ``[H_kv, T, hd]``.
        chan_keys: projected channel table ``[H_kv, R, hd]``, ``R > chan_index.max()``.
        chan_index: ``[B, C, C]`` rows of ``chan_keys`` per (query, key) channel pair
            (:func:`relative_channel_index`).
        content_bias: ``u`` ``[H_kv, hd]``, or ``None`` to drop the content term.
        time_bias: ``v`` ``[H_kv, hd]``.
        chan_bias: ``z`` ``[H_kv, hd]``.
        key_mask: ``[B, C]`` bool, True = present channel (``None``: all present).
        window: content term kept for ``|t - t'| <= window`` and in the last segment (``None``: everywhere).
        scale: logit multiplier (``None``: ``hd ** -0.5``).
        dropout_p: dropout on the attention probabilities (forces the reference).

    Returns:
        ``[B, H, T, C, hd]`` in ``q``'s dtype.

    Raises:
        ValueError: inconsistent shapes, or a ``key_mask`` that is not bool.
    """
    check_inputs(q, k, v, time_keys, chan_keys, chan_index, content_bias, time_bias, chan_bias, key_mask)
    tensors = [x for x in (q, k, v, time_keys, chan_keys, chan_index, content_bias, time_bias, chan_bias, key_mask)
               if x is not None]
    if dropout_p == 0.0 and q.dtype != torch.float64 and use_triton(*tensors):
        return mvpa_triton(
            q, k, v, time_keys, chan_keys, chan_index, content_bias=content_bias, time_bias=time_bias,
            chan_bias=chan_bias, key_mask=key_mask, window=window, scale=scale,
        )
    return mvpa_reference(
        q, k, v, time_keys, chan_keys, chan_index, content_bias=content_bias, time_bias=time_bias,
        chan_bias=chan_bias, key_mask=key_mask, window=window, scale=scale, dropout_p=dropout_p,
    )
