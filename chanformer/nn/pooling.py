"""Pooling blocks: sets of tokens (channels, frames, instances) -> one vector, padding excluded.

* :func:`masked_mean` — mean over present tokens (SOFTS, GAT, MVPFormer, speaker microphones);
* :class:`ChannelAttentionPool` — softmax-over-channels attention (DBConformer);
* :class:`GatedAttention` — gated attention scores over instances (ABMIL, ACMIL);
* :class:`AttentiveStatisticsPooling` — attention-weighted mean and std over frames (ECAPA-TDNN).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from chanformer.nn.tdnn import TDNNBlock

__all__ = ["AttentiveStatisticsPooling", "ChannelAttentionPool", "GatedAttention", "masked_mean"]


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean of ``x [B, N, D]`` over tokens where ``mask [B, N]`` is True -> ``[B, D]``."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp_min(1.0)


class ChannelAttentionPool(nn.Module):
    """Softmax-over-channels attention pooling: score = Linear(tanh(Linear(token))).

    ``[B, C, E] -> ([B, E], weights [B, C])``.
    """

    def __init__(self, emb: int, **kw: Any) -> None:
        super().__init__()
        self.fc1 = nn.Linear(emb, emb, **kw)
        self.fc2 = nn.Linear(emb, 1, **kw)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.fc2(torch.tanh(self.fc1(tokens))).squeeze(-1), dim=-1)
        return torch.einsum("bc,bce->be", weights, tokens), weights


class GatedAttention(nn.Module):
    """Gated attention scores: ``h [B, N, L] -> logits [B, K, N]``.

    ``logits = score(tanh(value(h)) * sigmoid(gate(h)))`` transposed to branches first.

    Args:
        in_dim: instance width ``L``.
        attn_dim: hidden width of the value/gate projections.
        n_branches: number of attention branches ``K``.

    """

    def __init__(
        self,
        in_dim: int,
        attn_dim: int,
        n_branches: int = 1,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.value = nn.Linear(in_dim, attn_dim, **kw)
        self.gate = nn.Linear(in_dim, attn_dim, **kw)
        self.score = nn.Linear(attn_dim, n_branches, **kw)

    def forward(self, h: Tensor) -> Tensor:
        # value and gate as one matrix product: one pass over h forward and one gradient for h backward
        weight = torch.cat([self.value.weight, self.gate.weight])
        bias = torch.cat([self.value.bias, self.gate.bias])
        value, gate = nn.functional.linear(h, weight, bias).chunk(2, dim=-1)
        return self.score(torch.tanh(value) * torch.sigmoid(gate)).transpose(-1, -2)


def _weighted_stats(x: Tensor, w: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mean = (w * x).sum(dim=2)
    std = torch.sqrt((w * (x - mean[..., None]).pow(2)).sum(dim=2).clamp_min(eps))
    return mean, std


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and std over time: ``[B, C, T] -> [B, 2C, 1]``.

    With ``global_context`` the attention also sees the utterance's masked mean and std
    (as if tiled over time; computed once per utterance, :class:`TDNNBlock`'s ``context``). Padded
    frames get zero attention.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True, **kw: Any) -> None:
        super().__init__()
        self.eps = 1e-12
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * 3 if global_context else channels, attention_channels, 1, 1, **kw)
        self.conv = nn.Conv1d(attention_channels, channels, 1, **kw)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        context = None
        if self.global_context:  # the utterance mean and std, constant over time (TDNNBlock's context)
            m = mask[:, None].to(x.dtype)  # [B, 1, T]
            context = torch.cat(_weighted_stats(x, m / m.sum(dim=2, keepdim=True), self.eps), dim=1)
        scores = self.conv(torch.tanh(self.tdnn(x, context))).masked_fill(~mask[:, None], float("-inf"))
        mean, std = _weighted_stats(x, torch.softmax(scores, dim=2), self.eps)
        return torch.cat([mean, std], dim=1)[..., None]
