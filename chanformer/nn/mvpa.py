"""Multi-variate parallel attention (MVPA), the attention of MVPFormer.

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

:func:`mvpa` is the readable reference: it materialises one ``[B, H, N, N]`` logit tensor (plus the
softmax output) and builds the relative terms from ``[B, H, N, T]`` and ``[B, H, N, C]`` products
with the small tables, gathered and broadcast into the logits in place. The time window, causal and
padding masks are applied as broadcast ``[T, T]``/``[B, C]`` booleans, never as ``N x N`` masks.
A fused kernel can replace it without changing the module's parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.kernels._triton import use_triton

__all__ = ["MultiVariateParallelAttention", "mvpa", "relative_channel_index", "relative_time_index"]


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
    """Compute multi-variate parallel attention, reference version (formula: module docstring).

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
    g, n = h // h_kv, t * c
    scale = hd**-0.5 if scale is None else scale
    qg = q.reshape(b, h_kv, g, n, hd)  # query head kv * g + j shares key head kv

    def biased(bias: Tensor) -> Tensor:
        return qg + bias.to(qg.dtype)[:, None, None, :]

    if content_bias is not None:
        logits = torch.matmul(biased(content_bias), k.reshape(b, h_kv, 1, n, hd).transpose(-1, -2))
    else:
        logits = qg.new_zeros(b, h_kv, g, n, n)
    grid = logits.view(b, h_kv, g, t, c, t, c)  # [..., t, c, t', c'] view of the [N, N] logits
    seg = torch.arange(t, device=q.device)
    if content_bias is not None and window is not None:
        far = (seg[:, None] - seg[None, :]).abs() > window
        far[-1] = False  # the last segment's queries see every key's content
        grid.masked_fill_(far[:, None, :, None], 0.0)

    time_logits = torch.matmul(biased(time_bias), time_keys.to(qg.dtype)[None, :, None].transpose(-1, -2))
    tidx = relative_time_index(t, q.device).view(1, 1, 1, t, 1, t).expand(b, h_kv, g, t, c, t)
    grid.add_(time_logits.view(b, h_kv, g, t, c, t).gather(-1, tidx).unsqueeze(-1))

    r = chan_keys.shape[-2]
    chan_logits = torch.matmul(biased(chan_bias), chan_keys.to(qg.dtype)[None, :, None].transpose(-1, -2))
    cidx = chan_index.view(b, 1, 1, 1, c, c).expand(b, h_kv, g, t, c, c)
    grid.add_(chan_logits.view(b, h_kv, g, t, c, r).gather(-1, cidx).unsqueeze(-2))

    logits.mul_(scale)
    neg = torch.finfo(logits.dtype).min
    future = seg[None, :] > seg[:, None]
    grid.masked_fill_(future[:, None, :, None], neg)
    if key_mask is not None:
        grid.masked_fill_(~key_mask.view(b, 1, 1, 1, 1, 1, c), neg)
    probs = torch.softmax(logits, dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    out = torch.matmul(probs, v.reshape(b, h_kv, 1, n, hd))  # [B, H_kv, G, N, hd]
    return out.view(b, h, t, c, hd)


class MultiVariateParallelAttention(nn.Module):
    """MVPA layer with its projections: ``x [B, T, C, D] -> [B, T, C, D]``.

    Parameters: ``q_proj`` ``[D, D]``; ``kv_proj`` ``[2 * H_kv * hd, D]`` with rows ``[K; V]``;
    ``time_proj``/``chan_proj`` ``[H_kv * hd, D]`` (relative keys from the tables); ``out_proj``;
    biases ``content_bias`` (``u``), ``time_bias`` (``v``), ``chan_bias`` (``z``), each ``[H_kv, hd]``.
    No linear layer has a bias.

    Args:
        dim: token width ``D``.
        num_heads: query heads ``H``.
        num_kv_heads: key/value heads ``H_kv`` (divides ``H``); ``None`` = ``H``.
        window: content window in segments (``None`` = unlimited).
        content: keep the content term (the original's ``global_att``).
        scale: logit scale; ``None`` = ``head_dim ** -0.5``.
        attn_drop: dropout on attention probabilities (training only).
        proj_drop: dropout on the output.

    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        window: int | None = 10,
        content: bool = True,
        scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"MultiVariateParallelAttention(num_heads={num_heads}): must divide dim={dim}")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(
                f"MultiVariateParallelAttention(num_kv_heads={num_kv_heads}): "
                f"must divide num_heads={num_heads}"
            )
        if window is not None and window < 0:
            raise ValueError(f"MultiVariateParallelAttention(window={window}): must be >= 0 or None")
        kw = {"device": device, "dtype": dtype}
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = self.head_dim * num_kv_heads
        self.window = window
        self.scale = self.head_dim**-0.5 if scale is None else float(scale)
        self.attn_drop = float(attn_drop)
        self.q_proj = nn.Linear(dim, dim, bias=False, **kw)
        self.kv_proj = nn.Linear(dim, 2 * kv_dim, bias=False, **kw)
        self.time_proj = nn.Linear(dim, kv_dim, bias=False, **kw)
        self.chan_proj = nn.Linear(dim, kv_dim, bias=False, **kw)
        self.out_proj = nn.Linear(dim, dim, bias=False, **kw)
        self.content_bias = nn.Parameter(torch.zeros(num_kv_heads, self.head_dim, **kw)) if content else None
        self.time_bias = nn.Parameter(torch.zeros(num_kv_heads, self.head_dim, **kw))
        self.chan_bias = nn.Parameter(torch.zeros(num_kv_heads, self.head_dim, **kw))
        self.proj_drop = nn.Dropout(proj_drop)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for p in self.parameters():
            nn.init.normal_(p, std=std)

    def forward(
        self,
        x: Tensor,
        time_table: Tensor,
        chan_table: Tensor,
        chan_index: Tensor,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend over all (segment, channel) tokens.

        Args:
            x: ``[B, T, C, D]`` tokens.
            time_table: ``[T, D]`` segment-position embeddings (rows ``0..T-1``).
            chan_table: ``[R, D]`` channel embeddings (rows ``0..R-1``, ``R > chan_index.max()``).
            chan_index: ``[B, C, C]`` from :func:`relative_channel_index`.
            key_mask: ``[B, C]`` bool, True = present channel.

        Returns:
            ``[B, T, C, D]``.

        """
        b, t, c, d = x.shape
        hd, h, h_kv = self.head_dim, self.num_heads, self.num_kv_heads
        q = self.q_proj(x).view(b, t, c, h, hd).permute(0, 3, 1, 2, 4)
        k, v = self.kv_proj(x).view(b, t, c, 2, h_kv, hd).permute(3, 0, 4, 1, 2, 5).unbind(0)
        time_keys = self.time_proj(time_table).view(t, h_kv, hd).transpose(0, 1)
        chan_keys = self.chan_proj(chan_table).view(-1, h_kv, hd).transpose(0, 1)
        dropout_p = self.attn_drop if self.training else 0.0
        attend = mvpa
        if dropout_p == 0.0 and q.dtype != torch.float64 and use_triton(x, time_table, chan_table, chan_index):
            # Triton kernels (CUDA, or the CPU interpreter when forced): same result, no [N, N] logits.
            # Imported here: chanformer.kernels.mvpa imports this module for its reference.
            from chanformer.kernels.mvpa import mvpa as attend
        out = attend(
            q,
            k,
            v,
            time_keys,
            chan_keys,
            chan_index,
            content_bias=self.content_bias,
            time_bias=self.time_bias,
            chan_bias=self.chan_bias,
            key_mask=key_mask,
            window=self.window,
            scale=self.scale,
            dropout_p=dropout_p,
        )
        out = out.permute(0, 2, 3, 1, 4).reshape(b, t, c, d)
        return self.proj_drop(self.out_proj(out))

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
            f"window={self.window}, content={self.content_bias is not None}"
        )
