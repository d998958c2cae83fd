"""SOFTS encoder (Han et al., "SOFTS: Efficient Multivariate Time Series Forecasting with
Series-Core Fusion", NeurIPS 2024): one token per channel from its whole history, mixed
across channels by STAR layers. Tokens are per channel, so any channel set works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder, masked_mean
from chanformer.nn import InstanceNorm, STARLayer
from chanformer.nn.series_conv import SeriesConvEmbedding
from chanformer.nn.series_segments import SegmentMeanEmbedding

__all__ = ["SOFTS", "softs", "softs_small", "softs_test"]


class SOFTS(Encoder):
    """Series embedding + STAR layers over channel tokens.

    Args:
        seq_len: input length ``T`` (each channel's whole history is one token).
        d_model: token width ``D`` (= ``embed_dim``).
        d_core: width of STAR's global core.
        d_ff: feed-forward width.
        e_layers: number of STAR layers.
        dropout: dropout after the embedding and inside the layers.
        activation: feed-forward activation, ``"gelu"`` or ``"relu"``.
        instance_norm: normalise each channel over time before embedding (classification
            use; :class:`chanformer.forecasting.ChannelForecaster` normalises itself).
        num_channels: rows of the optional learnable channel-identity embedding (the vocabulary
            size), indexed by ``batch.channel_ids`` and added to each channel token (a chanformer
            extension: the original SOFTS knows channels only through their values).
        channel_embedding: switch that embedding on (``True``; a task then fills ``num_channels``
            from the data's vocabulary) or off (``False``); ``None`` = on iff ``num_channels`` is given.
            ``"affine"`` (a chanformer extension) gives each channel a gain as well as the added
            vector, ``token * (1 + gain[id]) + shift[id]`` (table width ``2 D``, gains start at 0),
            so a channel's series can weigh differently in the pooled embedding by what the
            channel is (e.g. the two hemispheres of a lateralised EEG response).
        channel_gain_init: standard deviation of the initial gains of the ``"affine"`` table
            (0: every channel starts with the same weights, the additive table).
        embedding: how a channel's series becomes its token: ``"linear"`` (the original: one
            linear layer over all ``T`` samples), or one of two chanformer extensions for
            classification: ``"conv"`` (:class:`chanformer.nn.series_conv.SeriesConvEmbedding`,
            shared dilated convolutions pooled over time, shift-invariant) or ``"segments"``
            (:class:`chanformer.nn.series_segments.SegmentMeanEmbedding`, the means of
            ``segments`` equal time segments through a linear layer).
        conv_width: feature maps per channel of the ``"conv"`` embedding.
        conv_dilations: dilations of its residual layers (kernel 7).
        segments: number of time segments of the ``"segments"`` embedding.
    """

    data_args = {"n_times": "seq_len"}
    channel_table_arg = "num_channels"
    channel_table_switches = (True, "affine")

    def __init__(
        self,
        seq_len: int,
        d_model: int = 128,
        d_core: int = 64,
        d_ff: int = 128,
        e_layers: int = 2,
        dropout: float = 0.0,
        activation: str = "gelu",
        instance_norm: bool = False,
        num_channels: int | None = None,
        channel_embedding: bool | str | None = None,
        embedding: str = "linear",
        conv_width: int = 32,
        conv_dilations: Sequence[int] = (1, 2, 4, 8),
        segments: int = 8,
        channel_gain_init: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("seq_len", seq_len), ("d_model", d_model), ("d_core", d_core), ("d_ff", d_ff)):
            if int(val) < 1:
                raise ValueError(f"SOFTS({arg}={val}): must be a positive integer")
        if e_layers < 0:
            raise ValueError(f"SOFTS(e_layers={e_layers}): must be >= 0")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.seq_len = seq_len
        self.embed_dim = d_model
        self.norm = InstanceNorm() if instance_norm else None
        embeddings: dict[str, Callable[[], nn.Module]] = {
            "linear": lambda: nn.Linear(seq_len, d_model, **kw),
            "conv": lambda: SeriesConvEmbedding(d_model, conv_width, dilations=conv_dilations, **kw),
            "segments": lambda: SegmentMeanEmbedding(d_model, segments, **kw),
        }
        if embedding not in embeddings:
            raise ValueError(f"SOFTS(embedding={embedding!r}): choose one of {', '.join(map(repr, embeddings))}")
        self.embedding = embedding
        self.embed: nn.Module = embeddings[embedding]()
        self.embed_dropout = nn.Dropout(dropout)
        if channel_embedding not in (None, True, False, "affine"):
            raise ValueError(f"SOFTS(channel_embedding={channel_embedding!r}): choose true, false or 'affine'")
        self.channel_affine = channel_embedding == "affine"
        switch = None if channel_embedding is None else bool(channel_embedding)
        width = 2 * d_model if self.channel_affine else d_model
        self.channel_embed = _optional_table(num_channels, switch, width, "SOFTS", kw)
        if channel_gain_init < 0:
            raise ValueError(f"SOFTS(channel_gain_init={channel_gain_init}): must be >= 0")
        if self.channel_embed is not None and self.channel_affine:
            with torch.no_grad():
                gains = self.channel_embed.weight[:, d_model:]
                gains.normal_(0.0, channel_gain_init) if channel_gain_init > 0 else gains.zero_()
        self.layers = nn.ModuleList(
            STARLayer(d_model, d_core, d_ff, dropout, activation, **kw) for _ in range(e_layers)
        )

    def tokens(
        self, values: Tensor, mask: Tensor, covariates: Tensor | None = None, channel_ids: Tensor | None = None
    ) -> Tensor:
        """Encode ``values [B, C, T]`` (+ ``covariates [B, K, T]``) -> tokens ``[B, C + K, D]``.

        Covariate tokens (e.g. calendar features) are always present and come after the
        channel tokens; ``mask [B, C]`` hides padded channels from the STAR aggregation.
        """
        if values.shape[-1] != self.seq_len:
            raise ValueError(f"SOFTS expects T=seq_len={self.seq_len} time steps, got values of shape {tuple(values.shape)}")
        series = values
        token_mask = mask
        if covariates is not None:
            if covariates.shape[-1] != self.seq_len:
                raise ValueError(f"covariates must be [B, K, T={self.seq_len}], got {tuple(covariates.shape)}")
            series = torch.cat([values, covariates.to(values.dtype)], dim=1)
            extra = mask.new_ones(mask.shape[0], covariates.shape[1])
            token_mask = torch.cat([mask, extra], dim=1)
        x = self.embed(series)
        if self.channel_embed is not None:
            if channel_ids is None:
                raise ValueError("SOFTS(num_channels=...) needs channel_ids to look up channel embeddings")
            ident = self.channel_embed(channel_ids)
            n = values.shape[1]
            if self.channel_affine:
                shift, gain = ident.chunk(2, dim=-1)
                channel_tokens = x[:, :n] * (1 + gain) + shift
            else:
                channel_tokens = x[:, :n] + ident
            x = torch.cat([channel_tokens, x[:, n:]], dim=1)
        x = self.embed_dropout(x)
        for layer in self.layers:
            x = layer(x, token_mask)
        return x

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, T]`` -> tokens ``[B, C + K, D]`` (``K`` covariate rows, or 0)."""
        values = batch.values
        if values.ndim != 3:
            raise ValueError(f"SOFTS takes time series [B, C, T], got values of shape {tuple(values.shape)}")
        if self.norm is not None:
            values, _ = self.norm(values)
            values = values * batch.mask[..., None]
        return self.tokens(values, batch.mask, batch.covariates, batch.channel_ids)

    def channel_order_invariant(self) -> bool:
        return True

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Ragged ``[B, <=4, seq_len]`` series."""
        return self._example_batch((self.seq_len,), 4, batch_size, seed)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Mean of the present channel tokens -> ``[B, D]``."""
        return masked_mean(features[:, : batch.n_channels], batch.mask)


def _optional_table(num_channels: int | None, enabled: bool | None, width: int, who: str, kw: dict) -> nn.Embedding | None:
    """The optional vocabulary-indexed channel table of SOFTS and GAT (see their ``channel_embedding``)."""
    if enabled not in (None, True, False) or isinstance(enabled, int) and not isinstance(enabled, bool):
        raise ValueError(f"{who}(channel_embedding={enabled!r}): choose true, false or leave it unset")
    on = num_channels is not None if enabled is None else bool(enabled)
    if not on:
        return None
    if not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(
            f"{who}(channel_embedding=True) needs num_channels (the vocabulary size, filled from the data when a "
            f"task builds the encoder), got num_channels={num_channels!r}"
        )
    return nn.Embedding(num_channels, width, **kw)


@register_encoder
def softs(**kw) -> SOFTS:  # type: ignore[no-untyped-def]
    """SOFTS as in the paper's long-term forecasting runs (d_model 512 is the ETT/ECL setting)."""
    cfg = {"seq_len": 96, "d_model": 512, "d_core": 512, "d_ff": 512, "e_layers": 2} | kw
    return SOFTS(**cfg)


@register_encoder
def softs_small(**kw) -> SOFTS:  # type: ignore[no-untyped-def]
    """A 2-layer, 128-wide SOFTS that trains in seconds on CPU."""
    cfg = {"seq_len": 96, "d_model": 128, "d_core": 64, "d_ff": 256, "e_layers": 2} | kw
    return SOFTS(**cfg)


@register_encoder
def softs_test(**kw) -> SOFTS:  # type: ignore[no-untyped-def]
    """Tiny SOFTS for tests and docs."""
    cfg = {"seq_len": 16, "d_model": 16, "d_core": 8, "d_ff": 16, "e_layers": 1} | kw
    return SOFTS(**cfg)
