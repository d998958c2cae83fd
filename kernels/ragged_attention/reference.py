"""Attention over ragged channel tokens, the PyTorch reference.

For the ``L = C * P`` tokens of a sample (``C`` channels of ``P`` tokens, padded channels included)::

    o[i] = sum_j softmax_j(scale q[i] . k[j] + (0 if key_mask[j] else -inf)) v[j]

:func:`ragged_attention_reference` is :func:`torch.nn.functional.scaled_dot_product_attention` with
the boolean key-padding mask broadcast as ``[B, 1, 1, L]``, never a materialised float ``[B, H, L, L]``
mask. A query whose sample has no real key gets NaN here (the Triton kernel returns 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_inputs", "ragged_attention_reference"]


def check_inputs(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``q, k, v`` share one ``[B, H, L, hd]`` shape and ``key_mask`` is
    ``None`` or bool ``[B, L]``."""
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"ragged_attention(): q, k, v must share one [B, H, L, hd] shape, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if key_mask is not None and (key_mask.shape != (q.shape[0], q.shape[2]) or key_mask.dtype != torch.bool):
        raise ValueError(
            f"ragged_attention(key_mask=...) must be bool [B, L]={(q.shape[0], q.shape[2])}, "
            f"got {key_mask.dtype} {tuple(key_mask.shape)}"
        )


def ragged_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> Tensor:
    """SDPA with the boolean key-padding mask (True = real token; ``None``: every token is real).

    Args:
        q, k, v: ``[B, H, L, hd]``.
        key_mask: ``[B, L]`` bool, or ``None``.
        scale: logit multiplier (``None``: ``hd ** -0.5``).
        dropout_p: dropout on the attention probabilities.

    Returns:
        ``[B, H, L, hd]``.
    """
    attn_mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
