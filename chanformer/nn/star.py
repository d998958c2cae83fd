"""STAR (STar Aggregate-Redistribute) from SOFTS, with channel masking.

Each token (one per series/channel) is mapped to a small "core" vector; the cores are
aggregated over tokens into one global core, which is redistributed to every token and
fused with it. Aggregation is a softmax-weighted sum over tokens in eval mode and, in
training mode, stochastic pooling: per core feature, one token is sampled with
probability softmax(core) over tokens. Padded tokens (``mask=False``) take no part.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.nn.mlp import Mlp
from chanformer.nn.state_keys import RenamedKeys


class STAR(nn.Module):
    """Aggregate-redistribute over tokens: ``x [B, N, D] -> [B, N, D]``.

    Args:
        d_model: token width ``D``.
        d_core: width of the global core.
    """

    def __init__(self, d_model: int, d_core: int, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.core_hidden = nn.Linear(d_model, d_model, **kw)
        self.core_proj = nn.Linear(d_model, d_core, **kw)
        self.fuse = nn.Linear(d_model + d_core, d_model, **kw)
        self.out = nn.Linear(d_model, d_model, **kw)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x [B, N, D]``, ``mask [B, N]`` (True = real token) -> ``[B, N, D]``."""
        core = self.core_proj(F.gelu(self.core_hidden(x)))  # [B, N, d_core]
        logits = core if mask is None else core.masked_fill(~mask[..., None], float("-inf"))
        weights = torch.softmax(logits, dim=1)
        if self.training:
            b, n, k = core.shape
            idx = torch.multinomial(weights.transpose(1, 2).reshape(b * k, n), 1).view(b, 1, k)
            pooled = torch.gather(core, 1, idx)  # [B, 1, d_core]
        else:
            pooled = (core * weights).sum(1, keepdim=True)
        # fuse(cat[x, pooled]) without the cat: the pooled core is one row per sample, so its
        # share of the product is computed once per sample and broadcast over the N tokens
        d = x.shape[-1]
        weight = self.fuse.weight
        fused = F.linear(x, weight[:, :d]) + F.linear(pooled, weight[:, d:], self.fuse.bias)
        return self.out(F.gelu(fused))


class STARLayer(RenamedKeys):
    """Post-norm block: ``x = norm1(x + STAR(x)); x = norm2(x + FFN(x))``; ``[B, N, D] -> [B, N, D]``.

    The FFN is :class:`chanformer.nn.mlp.Mlp` (``mlp.fc1`` / ``mlp.fc2``; checkpoints saved with
    the earlier names ``fc1`` / ``fc2`` are renamed when loaded).
    """

    renamed_keys: ClassVar[dict[str, str]] = {"fc1.": "mlp.fc1.", "fc2.": "mlp.fc2."}

    def __init__(
        self,
        d_model: int,
        d_core: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "gelu",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.star = STAR(d_model, d_core, **kw)
        self.mlp = Mlp(d_model, d_ff, activation, dropout, **kw)
        self.norm1 = nn.LayerNorm(d_model, **kw)
        self.norm2 = nn.LayerNorm(d_model, **kw)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.norm1(x + self.dropout(self.star(x, mask)))
        return self.norm2(x + self.mlp(x))
