"""Multi-variate parallel attention (MVPA), the attention layer of MVPFormer.

Carzaniga et al., "A foundation model with multi-variate parallel attention to generate neuronal
activity".

:class:`MultiVariateParallelAttention` holds the projections and biases and calls the one dispatch
function :func:`chanformer.kernels.mvpa.mvpa` (the equation, the readable reference and the Triton
kernels live in :mod:`chanformer.kernels.mvpa`). :func:`relative_channel_index` is re-exported here
for the models that build the channel index.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from chanformer.kernels.mvpa import mvpa, relative_channel_index

__all__ = ["MultiVariateParallelAttention", "relative_channel_index"]


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
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
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
        out = mvpa(
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
