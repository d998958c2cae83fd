"""GAT: a Gaussian Adaptive Transformer over channel tokens.

After Ioannides et al. 2024, "Gaussian Adaptive Attention is All You Need".

Each channel's whole series becomes one token (a Linear over time, as SOFTS's series
embedding), optionally plus a learned embedding of its channel id. Pre-norm transformer
layers then mix the channel tokens with attention built on Gaussian Adaptive Attention
(:class:`chanformer.nn.gaam.MultiHeadGaussianAdaptiveAttention`) over the CHANNEL axis:

* statistics (mean, unbiased variance) run over the present channels, per feature; heads
  split the FEATURE axis (each head owns ``d_model / gaam_heads`` features and its own
  Gaussians), so the channel axis is never chunked and any channel count works;
* the weights are normalised in log space (``stable=True``: a softmax over channels of
  the log Gaussian product, the same weights as the original's product / sum but without
  underflow), so ``w [B, C, D]`` sums to 1 over the present channels; the layers use
  ``w * n_present`` (mean 1 per feature) so that the feature scale does not shrink with
  the channel count.

Modes (``mode=``):

* ``"gaam"``: ``x = x + W_o(LN(x) * w * n)``: GAAM alone is the token mixer.
* ``"gaam+sdpa"``: GAAM reweights the VALUES of scaled dot-product attention:
  ``q = W_q LN(x)``, ``k = W_k LN(x)``, ``v = W_v(LN(x) * w * n)``,
  ``x = x + W_o SDPA(q, k, v)`` with padded channels removed by a boolean key mask. Queries
  and keys are left untouched, so the dot-product pattern is standard and the Gaussian
  weights decide which features of which channels it carries.

Both add a feed-forward sublayer, ``x = x + FFN(LN(x))``, and a final LayerNorm.
:meth:`GAT.channel_importance` returns the last layer's Gaussian weights averaged over
features, ``[B, C]`` (sums to 1 over present channels).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder, masked_mean
from chanformer.encoders.softs import _optional_table
from chanformer.kernels.ragged_attention import ragged_attention
from chanformer.nn.attention import merge_heads, split_heads
from chanformer.nn.gaam import MultiHeadGaussianAdaptiveAttention
from chanformer.nn.instance_norm import InstanceNorm
from chanformer.nn.mlp import Mlp
from chanformer.nn.state_keys import RenamedKeys

__all__ = ["GAT", "GATLayer", "gat", "gat_test"]

MODES = ("gaam", "gaam+sdpa")


class GATLayer(RenamedKeys):
    """One pre-norm GAT layer over channel tokens ``[B, C, D] -> [B, C, D]``.

    The dot-product attention runs through :func:`chanformer.nn.attention.split_heads` and the
    ragged-attention dispatch (its queries/keys and values come from different tokens, so it is
    not :class:`~chanformer.nn.attention.MultiHeadSelfAttention`); the FFN is
    :class:`chanformer.nn.mlp.Mlp` (``ff.fc1`` / ``ff.fc2``; checkpoints saved with the earlier
    ``nn.Sequential`` names ``ff.0`` / ``ff.3`` are renamed when loaded).

    Args:
        d_model: token width ``D``.
        n_heads: heads of the dot-product attention (mode ``"gaam+sdpa"``).
        gaam_heads: GAAM heads (split the feature axis).
        num_gaussians: Gaussians per GAAM head.
        d_ff: feed-forward width.
        dropout: dropout on the sublayer outputs (and the attention weights).
        mode: ``"gaam"`` or ``"gaam+sdpa"`` (see the module docstring).
        gaam_eps: GAAM variance epsilon.

    """

    renamed_keys: ClassVar[dict[str, str]] = {"ff.0.": "ff.fc1.", "ff.3.": "ff.fc2."}

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        gaam_heads: int,
        num_gaussians: int,
        d_ff: int,
        dropout: float = 0.0,
        mode: str = "gaam+sdpa",
        gaam_eps: float = 1e-5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"GAT mode={mode!r}: expected one of {MODES}")
        if mode == "gaam+sdpa" and d_model % n_heads:
            raise ValueError(f"GAT: d_model={d_model} must be divisible by n_heads={n_heads}")
        if gaam_heads > d_model:
            raise ValueError(f"GAT: gaam_heads={gaam_heads} cannot exceed d_model={d_model}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.mode, self.n_heads, self.dropout_p = mode, n_heads, dropout
        self.norm1 = nn.LayerNorm(d_model, **kw)
        self.gaam = MultiHeadGaussianAdaptiveAttention(
            norm_axis=1,
            num_heads=gaam_heads,
            num_gaussians=num_gaussians,
            eps=gaam_eps,
            head_axis=2,
            stable=True,
            **kw,
        )
        if mode == "gaam+sdpa":
            self.qk = nn.Linear(d_model, 2 * d_model, **kw)
            self.v = nn.Linear(d_model, d_model, **kw)
        self.out = nn.Linear(d_model, d_model, **kw)
        self.norm2 = nn.LayerNorm(d_model, **kw)
        self.ff = Mlp(d_model, d_ff, "gelu", dropout, **kw)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C, D]``, ``mask [B, C]`` (True = present) -> ``(x [B, C, D], weights [B, C, D])``."""
        h = self.norm1(x)
        _, w = self.gaam(h, mask, return_attention=True)  # [B, C, D], 0 on padded channels
        n = mask.sum(1).to(h.dtype)[:, None, None]
        g = h * w * n
        if self.mode == "gaam":
            a = self.out(g)
        else:
            q, k = split_heads(self.qk(h), self.n_heads, 2)
            v = split_heads(self.v(g), self.n_heads)[0]
            o = ragged_attention(q, k, v, mask, None, self.dropout_p if self.training else 0.0)
            a = self.out(merge_heads(o))
        x = x + self.drop(a)
        x = x + self.ff(self.norm2(x))
        return x, w


class GAT(Encoder):
    """Gaussian Adaptive Transformer over channel tokens: ``values [B, C, T] -> [B, D]``.

    Args:
        seq_len: input length ``T`` (each channel's series is one token).
        d_model: token width ``D`` (= ``embed_dim``).
        n_layers: number of GAT layers.
        n_heads: dot-product attention heads (mode ``"gaam+sdpa"``).
        gaam_heads: GAAM heads per layer (split the feature axis).
        num_gaussians: Gaussians per GAAM head.
        d_ff: feed-forward width.
        dropout: dropout after the embedding and inside the layers.
        mode: ``"gaam"`` or ``"gaam+sdpa"`` (see the module docstring).
        num_channels: rows of the channel-id embedding table (the vocabulary size).
        channel_embedding: switch that embedding on (``True``; a task then fills ``num_channels``
            from the data's vocabulary) or off; ``None`` = on iff ``num_channels`` is given. Without it
            the model is permutation-equivariant over channels.
        instance_norm: normalise each channel over time before embedding.
        gaam_eps: GAAM variance epsilon.

    """

    data_args = {"n_times": "seq_len"}
    channel_table_arg = "num_channels"

    def __init__(
        self,
        seq_len: int,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        gaam_heads: int = 4,
        num_gaussians: int = 4,
        d_ff: int = 256,
        dropout: float = 0.0,
        mode: str = "gaam+sdpa",
        num_channels: int | None = None,
        channel_embedding: bool | None = None,
        instance_norm: bool = False,
        gaam_eps: float = 1e-5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        sizes = {"seq_len": seq_len, "d_model": d_model, "n_heads": n_heads, "gaam_heads": gaam_heads,
                 "num_gaussians": num_gaussians, "d_ff": d_ff}  # fmt: skip
        for arg, val in sizes.items():
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"GAT({arg}={val!r}): must be a positive integer")
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"GAT(n_layers={n_layers!r}): must be a positive integer")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.seq_len = seq_len
        self.embed_dim = d_model
        self.mode = mode
        self.norm = InstanceNorm() if instance_norm else None
        self.embed = nn.Linear(seq_len, d_model, **kw)
        self.channel_embed = _optional_table(num_channels, channel_embedding, d_model, "GAT", kw)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            GATLayer(d_model, n_heads, gaam_heads, num_gaussians, d_ff, dropout, mode, gaam_eps, **kw)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model, **kw)

    def encode(self, batch: ChannelBatch) -> tuple[Tensor, list[Tensor]]:
        """Tokens ``[B, C, D]`` and every layer's GAAM weights ``[B, C, D]`` (0 on padded channels)."""
        values = batch.values
        if values.ndim != 3 or values.shape[-1] != self.seq_len:
            raise ValueError(f"GAT takes values [B, C, T={self.seq_len}], got shape {tuple(values.shape)}")
        mask = batch.mask
        if self.norm is not None:
            values, _ = self.norm(values)
        values = values * mask[..., None].to(values.dtype)
        x = self.embed(values)
        if self.channel_embed is not None:
            x = x + self.channel_embed(batch.channel_ids.masked_fill(~mask, 0))
        x = self.embed_dropout(x)
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask)
            weights.append(w)
        return self.final_norm(x), weights

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, T]`` -> channel tokens ``[B, C, D]``, one per channel slot.

        Padded slots hold values that never reach the present ones.
        """
        return self.encode(batch)[0]

    def channel_order_invariant(self) -> bool:
        return True

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Ragged ``[B, <=4, seq_len]`` series."""
        return self._example_batch((self.seq_len,), 4, batch_size, seed)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Mean of the present channel tokens -> ``[B, D]``."""
        return masked_mean(features, batch.mask)

    def channel_importance(self, batch: ChannelBatch, layer: int = -1) -> Tensor:
        """Gaussian weights of one layer (default: the last) averaged over features: ``[B, C]``.

        Each row sums to 1 over the present channels; padded channels get 0.
        """
        return self.encode(batch)[1][layer].mean(-1)

    def native_channel_importance(self, batch: ChannelBatch) -> Tensor:
        """:func:`chanformer.importance.channel_importance` protocol: :meth:`channel_importance`."""
        return self.channel_importance(batch)


@register_encoder
def gat(**kw) -> GAT:  # type: ignore[no-untyped-def]
    """GAT with GAAM-reweighted dot-product attention, 3 layers of width 128."""
    cfg: dict[str, Any] = {"seq_len": 96, "d_model": 128, "n_layers": 3, "n_heads": 4, "gaam_heads": 4, "num_gaussians": 4,
           "d_ff": 256, "mode": "gaam+sdpa"} | kw  # fmt: skip
    return GAT(**cfg)


@register_encoder
def gat_test(**kw) -> GAT:  # type: ignore[no-untyped-def]
    """Tiny GAT for tests and docs."""
    cfg: dict[str, Any] = {"seq_len": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "gaam_heads": 2, "num_gaussians": 2,
           "d_ff": 32} | kw  # fmt: skip
    return GAT(**cfg)
