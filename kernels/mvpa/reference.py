"""Multi-variate parallel attention (MVPA, the attention of MVPFormer): the PyTorch reference.

Carzaniga et al., "A foundation model with multi-variate parallel attention to generate neuronal
activity".

Tokens live on a (time segment ``t``, channel ``c``) grid, flattened time-major (token ``t * C + c``,
``N = T * C``). The logit of query ``(t, c)`` for key ``(t', c')`` sums three terms, each a dot
product of the query (plus a learned per-head bias) with a different key:

* content: ``(q + u) . k[t', c']``, only where ``|t - t'| <= window`` or ``t`` is the last segment;
  elsewhere the term is ADDED AS 0 (the key stays visible through the other two terms);
* relative time: ``(q + v) . P[T - 1 - (t - t')]``, ``P`` = projected rows ``0..T-1`` of a learned
  segment-position table;
* relative channel: ``(q + z) . E[n - 1 - |r_c - r_c'|]``, ``E`` = projected rows of a learned
  channel table, ``r`` = the channel's rank among the sample's present channels and ``n`` their
  count (so the term depends on channel distance, and on how many channels the sample has).

The sum is multiplied by ``scale`` (``head_dim ** -0.5``), masked causally over segments (every
channel of earlier segments and of the same segment is visible) and over padded channels, and
soft-maxed over all ``N`` keys. Keys/values are shared by groups of query heads (grouped-query
attention; query head ``h`` uses key head ``h // (H / H_kv)``).

:func:`mvpa_reference` materialises the ``[B, H, N, N]`` logits (plus the softmax output) per block of
query segments, against only the keys those segments can see (segment-causal), and
builds the relative terms from ``[B, H, N, T]`` and ``[B, H, N, C]`` products with the small tables,
gathered and broadcast into the logits (two passes over the ``N x N`` tensor: ``addcmul``, ``add_``;
no in-place step on a view, which autograd would pay for with whole-tensor copies). The time window
and the causal mask live in a broadcast ``[T, T]`` weight and in the time term, the padding mask is a
``[B, C]`` boolean: no ``N x N`` mask. It computes in the inputs' dtype (float32 in the tests; float64 runs
here only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_inputs", "mvpa_reference", "relative_channel_index", "relative_time_index"]


def check_inputs(
    q: Tensor, k: Tensor, v: Tensor, time_keys: Tensor, chan_keys: Tensor, chan_index: Tensor, content_bias: Tensor | None,
    time_bias: Tensor, chan_bias: Tensor, key_mask: Tensor | None,
) -> None:
    """Raise ``ValueError`` unless the shapes are those :func:`mvpa_reference` documents."""
    if q.ndim != 5:
        raise ValueError(f"mvpa(q=...) must be [B, H, T, C, hd], got {tuple(q.shape)}")
    b, h, t, c, hd = q.shape
    h_kv = k.shape[1] if k.ndim == 5 else 0
    if h_kv < 1 or h % h_kv:
        raise ValueError(f"mvpa(): {h} query heads are not a multiple of {h_kv} key/value heads")
    if k.shape != (b, h_kv, t, c, hd) or v.shape != k.shape:
        raise ValueError(
            f"mvpa(k=..., v=...) must be [B, H_kv, T, C, hd]={(b, h_kv, t, c, hd)}, got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if time_keys.shape != (h_kv, t, hd):
        raise ValueError(f"mvpa(time_keys=...) must be [H_kv, T, hd]={(h_kv, t, hd)}, got {tuple(time_keys.shape)}")
    if chan_keys.ndim != 3 or chan_keys.shape[0] != h_kv or chan_keys.shape[2] != hd:
        raise ValueError(f"mvpa(chan_keys=...) must be [H_kv, R, hd], got {tuple(chan_keys.shape)}")
    if chan_index.shape != (b, c, c):
        raise ValueError(f"mvpa(chan_index=...) must be [B, C, C]={(b, c, c)}, got {tuple(chan_index.shape)}")
    for name, bias in (("content_bias", content_bias), ("time_bias", time_bias), ("chan_bias", chan_bias)):
        if bias is not None and bias.shape != (h_kv, hd):
            raise ValueError(f"mvpa({name}=...) must be [H_kv, hd]={(h_kv, hd)}, got {tuple(bias.shape)}")
    if key_mask is not None and (key_mask.shape != (b, c) or key_mask.dtype != torch.bool):
        raise ValueError(f"mvpa(key_mask=...) must be bool [B, C]={(b, c)}, got {key_mask.dtype} {tuple(key_mask.shape)}")


def relative_time_index(n_times: int, device: torch.device | None = None) -> Tensor:
    """Relative-time table rows ``[T, T]`` (long): ``T - 1 - (t - t')`` for query ``t``, key ``t'``.

    Clamped to ``T - 1`` for future keys, which the causal mask removes.
    """
    t = torch.arange(n_times, device=device)
    return (n_times - 1 - (t[:, None] - t[None, :])).clamp(0, n_times - 1)


def relative_channel_index(mask: Tensor) -> Tensor:
    """Relative-channel table rows ``[B, C, C]`` (long): ``n_b - 1 - |r_c - r_c'|``.

    For query channel ``c`` and key channel ``c'`` of sample ``b``.

    Args:
        mask: ``[B, C]`` bool, True = present. ``r`` is the rank of a channel among the present
            ones and ``n_b`` their count, so a padded batch indexes exactly as each sample alone
            (rows of padded channels are clamped at 0 and never used by real tokens).

    """
    rank = mask.long().cumsum(1) - 1
    count = mask.long().sum(1)
    index = count[:, None, None] - 1 - (rank[:, :, None] - rank[:, None, :]).abs()
    return index.clamp_min(0)


def mvpa_reference(
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
    """Multi-variate parallel attention, the readable reference (equation: module docstring).

    Args:
        q: queries ``[B, H, T, C, hd]``.
        k: content keys ``[B, H_kv, T, C, hd]`` (``H`` divisible by ``H_kv``).
        v: values ``[B, H_kv, T, C, hd]``.
        time_keys: projected segment-position table ``[H_kv, T, hd]`` (rows ``0..T-1``).
        chan_keys: projected channel table ``[H_kv, R, hd]`` with ``R > chan_index.max()``.
        chan_index: ``[B, C, C]`` rows of ``chan_keys`` per (query, key) channel pair
            (:func:`relative_channel_index`).
        content_bias: ``u`` ``[H_kv, hd]``, or ``None`` to drop the content term entirely
            (the original's ``global_att=False``).
        time_bias: ``v`` ``[H_kv, hd]``.
        chan_bias: ``z`` ``[H_kv, hd]``.
        key_mask: ``[B, C]`` bool, True = present; absent channels are never attended to.
        window: content term kept for ``|t - t'| <= window`` and for queries in the last segment;
            ``None`` keeps it everywhere.
        scale: logit multiplier, default ``hd ** -0.5``, applied to the sum of the three terms.
        dropout_p: dropout on the attention probabilities.

    Returns:
        ``[B, H, T, C, hd]``.

    """
    b, h, t, c, hd = q.shape
    h_kv = k.shape[1]
    if h % h_kv:
        raise ValueError(f"mvpa(): {h} query heads are not a multiple of {h_kv} key/value heads")
    if time_keys.shape[-2] != t:
        raise ValueError(
            f"mvpa(time_keys=...): expected {t} rows (one per segment), got {time_keys.shape[-2]}"
        )
    g = h // h_kv
    scale = hd**-0.5 if scale is None else scale
    qg = q.reshape(b, h_kv, g, t, c, hd)  # query head kv * g + j shares key head kv
    kg, vg = k.unsqueeze(2), v.unsqueeze(2)  # [B, H_kv, 1, T, C, hd]
    # Causal over segments: queries of segments [t0, t1) see only the keys of segments [0, t1), so the
    # logits are built per block of query segments against that key prefix (up to 4 blocks of at least 8
    # segments; T = 25 in 3 blocks skips a third of the [N, N] products that the causal mask would zero).
    n_blocks = max(1, min(4, t // 8))
    bounds = [t * i // n_blocks for i in range(n_blocks + 1)]
    out = [
        _attend_block(qg[:, :, :, t0:t1], kg[:, :, :, :t1], vg[:, :, :, :t1], t0, t, time_keys, chan_keys,
                      chan_index, content_bias, time_bias, chan_bias, key_mask, window, scale, dropout_p)
        for t0, t1 in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(out, dim=3).view(b, h, t, c, hd)


def _attend_block(
    q: Tensor, k: Tensor, v: Tensor, t0: int, n_times: int, time_keys: Tensor, chan_keys: Tensor, chan_index: Tensor,
    content_bias: Tensor | None, time_bias: Tensor, chan_bias: Tensor, key_mask: Tensor | None, window: int | None,
    scale: float, dropout_p: float,
) -> Tensor:
    """:func:`mvpa_reference` for the queries of segments ``[t0, t0 + tq)`` (``q [B, H_kv, G, tq, C, hd]``)
    over the keys of segments ``[0, tk)`` (``k, v [B, H_kv, 1, tk, C, hd]``); ``n_times`` = ``T`` of
    the whole sequence. Returns ``[B, H_kv, G, tq, C, hd]``."""
    b, h_kv, g, tq, c, hd = q.shape
    tk = k.shape[3]
    qg = q.reshape(b, h_kv, g, tq * c, hd)

    def biased(bias: Tensor) -> Tensor:
        return qg + bias.to(qg.dtype)[:, None, None, :]

    seg_q = torch.arange(t0, t0 + tq, device=q.device)
    seg_k = torch.arange(tk, device=q.device)
    future = seg_k[None, :] > seg_q[:, None]  # [tq, tk] keys in later segments (causal mask)
    neg = torch.finfo(qg.dtype).min
    # Each term is scaled before the sum (= scale * sum up to rounding), and the causal mask rides on
    # the small time term: a future key's logit is `neg` plus a finite channel term, 0 after the softmax.
    # The logits are then written in two passes (addcmul, add_) on a fresh tensor.
    time_logits = torch.matmul(biased(time_bias), time_keys.to(qg.dtype)[None, :, None].transpose(-1, -2)) * scale
    tidx = relative_time_index(n_times, q.device)[t0 : t0 + tq, :tk]
    tidx = tidx.view(1, 1, 1, tq, 1, tk).expand(b, h_kv, g, tq, c, tk)
    time_term = time_logits.view(b, h_kv, g, tq, c, n_times).gather(-1, tidx).masked_fill(future[:, None, :], neg)

    r = chan_keys.shape[-2]
    chan_logits = torch.matmul(biased(chan_bias), chan_keys.to(qg.dtype)[None, :, None].transpose(-1, -2)) * scale
    cidx = chan_index.view(b, 1, 1, 1, c, c).expand(b, h_kv, g, tq, c, c)
    chan_term = chan_logits.view(b, h_kv, g, tq, c, r).gather(-1, cidx)

    # [..., t, c, t', c'] grid of the [tq * C, tk * C] logits
    if content_bias is not None:
        content = torch.matmul(biased(content_bias), k.reshape(b, h_kv, 1, tk * c, hd).transpose(-1, -2))
        keep = ~future  # content term kept: past and present segments within the window
        if window is not None:
            far = (seg_q[:, None] - seg_k[None, :]).abs() > window
            far[seg_q == n_times - 1] = False  # the last segment's queries see every key's content
            keep &= ~far
        weight = keep.to(qg.dtype)[:, None, :, None] * scale
        grid = torch.addcmul(time_term.unsqueeze(-1), content.view(b, h_kv, g, tq, c, tk, c), weight)
        grid.add_(chan_term.unsqueeze(-2))
    else:
        grid = time_term.unsqueeze(-1) + chan_term.unsqueeze(-2)
    if key_mask is not None:
        grid.masked_fill_(~key_mask.view(b, 1, 1, 1, 1, 1, c), neg)
    probs = torch.softmax(grid.view(b, h_kv, g, tq * c, tk * c), dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    out = torch.matmul(probs, v.reshape(b, h_kv, 1, tk * c, hd))  # [B, H_kv, G, tq * C, hd]
    return out.view(b, h_kv, g, tq, c, hd)
