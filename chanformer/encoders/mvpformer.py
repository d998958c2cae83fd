"""MVPFormer: an iEEG foundation model with multi-variate parallel attention.

Carzaniga et al., "A foundation model with multi-variate parallel attention to generate neuronal
activity" (IBM/multi-variate-parallel-transformer). Every channel's signal is cut into segments,
each segment is embedded by a wavelet segment encoder, and a causal transformer with
multi-variate parallel attention (:mod:`chanformer.nn.mvpa`) mixes the (segment, channel) tokens.
Channels enter only through their relative order and count, so any channel set works (up to
``n_channels``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from chanformer.batch import ChannelBatch
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder, masked_mean
from chanformer.nn.mvpa import MultiVariateParallelAttention, relative_channel_index
from chanformer.nn.swiglu import SwiGLU
from chanformer.nn.wavelet import dwt_max_level, wavedec, wavedec_lengths

__all__ = [
    "MVPFormer",
    "MVPFormerBackbone",
    "MVPFormerBlock",
    "WaveletSegmentEncoder",
    "mvpformer_s",
    "mvpformer_test",
    "segment_samples_for_coeffs",
]


def segment_samples_for_coeffs(n_coeffs: int) -> int:
    """Largest segment length whose full db4 decomposition has ``n_coeffs`` coefficients.

    (Two neighbouring lengths share a count; the transform adapts to the input length, so either
    works with the same weights.)
    """
    n = 1
    best = None
    while sum(wavedec_lengths(n)) <= n_coeffs + 16:
        if sum(wavedec_lengths(n)) == n_coeffs:
            best = n
        n += 1
    if best is None:
        raise ValueError(f"no segment length gives {n_coeffs} db4 wavelet coefficients")
    return best


class WaveletSegmentEncoder(nn.Module):
    """One token per segment: db4 decomposition (periodic, full depth) -> RMSNorm -> Linear.

    ``[..., S] -> [..., D]``. The decomposition (:func:`chanformer.nn.wavelet.wavedec`) runs in
    float32 and concatenates ``[cA_L, cD_L, ..., cD_1]``; for ``S = 2560`` (5 s at 512 Hz) that is
    ``L = 8`` levels and 2610 coefficients.

    Args:
        segment_samples: samples per segment ``S``.
        embed_dim: output width ``D``.
        norm_eps: RMSNorm epsilon.

    """

    def __init__(
        self,
        segment_samples: int,
        embed_dim: int,
        norm_eps: float = 1e-5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if segment_samples < 1:
            raise ValueError(f"WaveletSegmentEncoder(segment_samples={segment_samples}): must be positive")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.segment_samples = segment_samples
        self.levels = dwt_max_level(segment_samples)
        self.n_coeffs = sum(wavedec_lengths(segment_samples))
        self.norm = nn.RMSNorm(self.n_coeffs, eps=norm_eps, **kw)
        self.proj = nn.Linear(self.n_coeffs, embed_dim, bias=False, **kw)

    def coefficients(self, x: Tensor) -> Tensor:
        """``[..., S] -> [..., n_coeffs]`` concatenated wavelet coefficients (float32)."""
        coeffs = torch.cat(wavedec(x.float()), dim=-1)
        if coeffs.shape[-1] != self.n_coeffs:
            raise ValueError(
                f"segments of {x.shape[-1]} samples give {coeffs.shape[-1]} wavelet coefficients; "
                f"this encoder was built for {self.segment_samples}-sample segments "
                f"({self.n_coeffs} coefficients)"
            )
        return coeffs

    def forward(self, x: Tensor) -> Tensor:
        coeffs = self.coefficients(x)
        return self.proj(self.norm(coeffs.to(self.norm.weight.dtype)).to(self.proj.weight.dtype))


class MVPFormerBlock(nn.Module):
    """Parallel block: ``x + attn(norm(x)) + mlp(norm(x))`` with ONE RMSNorm feeding both branches."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int,
        mlp_hidden: int,
        window: int | None,
        content: bool,
        scale: float,
        norm_eps: float,
        attn_drop: float,
        drop: float,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.norm = nn.RMSNorm(dim, eps=norm_eps, **kw)
        self.attn = MultiVariateParallelAttention(
            dim, num_heads, num_kv_heads, window, content, scale, attn_drop, drop, **kw
        )
        self.mlp = SwiGLU(dim, mlp_hidden, **kw)

    def forward(
        self, x: Tensor, time_table: Tensor, chan_table: Tensor, chan_index: Tensor, key_mask: Tensor | None
    ) -> Tensor:
        h = self.norm(x)
        return x + self.attn(h, time_table, chan_table, chan_index, key_mask) + self.mlp(h)


class MVPFormerBackbone(nn.Module):
    """The MVPFormer transformer over segment tokens: ``[B, T, C, D] -> [B, T, C, D]``.

    Holds the segment-position table ``time_embed [n_positions, D]`` and the channel table
    ``channel_embed [n_channels, D]``; they only enter through MVPA's relative terms (rows
    ``T - 1 - dt`` and ``n - 1 - |dc|``), never added to the tokens. Output after a final RMSNorm.

    Args:
        embed_dim: width ``D``.
        depth: number of blocks.
        num_heads / num_kv_heads: query and key/value heads (grouped-query attention).
        mlp_hidden: SwiGLU inner width.
        n_positions: most segments ``T`` per input.
        n_channels: most present channels per sample.
        window: content-attention window in segments.
        content: keep MVPA's content term (original ``global_att``).
        scale_attn: scale logits by ``head_dim ** -0.5``; ``scale_by_layer`` further divides by
            ``layer_index + 1`` (the original config's ``scale_attn_weights`` and
            ``scale_attn_by_inverse_layer_idx``).
        norm_eps: RMSNorm epsilon.
        drop_rate: dropout on the input tokens and on the attention output.
        attn_drop_rate: dropout on attention probabilities.
        grad_checkpointing: recompute block activations in backward.

    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_kv_heads: int = 4,
        mlp_hidden: int = 1728,
        n_positions: int = 110,
        n_channels: int = 128,
        window: int | None = 10,
        content: bool = True,
        scale_attn: bool = True,
        scale_by_layer: bool = False,
        norm_eps: float = 1e-5,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        grad_checkpointing: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("num_kv_heads", num_kv_heads),
            ("mlp_hidden", mlp_hidden),
            ("n_positions", n_positions),
            ("n_channels", n_channels),
        ):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"MVPFormerBackbone({arg}={val!r}): must be a positive integer")
        if depth < 0:
            raise ValueError(f"MVPFormerBackbone(depth={depth}): must be >= 0")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed_dim, self.n_positions, self.n_channels = embed_dim, n_positions, n_channels
        self.grad_checkpointing = bool(grad_checkpointing)
        self.time_embed = nn.Embedding(n_positions, embed_dim, **kw)
        self.channel_embed = nn.Embedding(n_channels, embed_dim, **kw)
        self.drop = nn.Dropout(drop_rate)
        base = (embed_dim // num_heads) ** -0.5 if scale_attn else 1.0
        self.blocks = nn.ModuleList(
            MVPFormerBlock(
                embed_dim,
                num_heads,
                num_kv_heads,
                mlp_hidden,
                window,
                content,
                base / (i + 1) if scale_by_layer else base,
                norm_eps,
                attn_drop_rate,
                drop_rate,
                **kw,
            )
            for i in range(depth)
        )
        self.norm = nn.RMSNorm(embed_dim, eps=norm_eps, **kw)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """GPT-2 style: every linear layer, table and attention bias ~ N(0, std); norms = 1."""
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=std)
            elif isinstance(mod, MultiVariateParallelAttention):
                for p in (mod.content_bias, mod.time_bias, mod.chan_bias):
                    if p is not None:
                        nn.init.normal_(p, std=std)
            elif isinstance(mod, nn.RMSNorm):
                nn.init.ones_(mod.weight)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Contextualise segment tokens.

        Args:
            x: ``[B, T, C, D]`` tokens, time-major (segment ``t``, channel ``c``).
            mask: ``[B, C]`` bool, True = present channel (``None`` = all present). Absent channels
                are never attended to and do not count in the channel distances of present ones.

        Returns:
            ``[B, T, C, D]`` after the final RMSNorm (rows of absent channels are meaningless).

        """
        if x.ndim != 4 or x.shape[-1] != self.embed_dim:
            raise ValueError(
                f"MVPFormerBackbone expects [B, T, C, {self.embed_dim}] tokens, got {tuple(x.shape)}"
            )
        b, t, c, _ = x.shape
        if t > self.n_positions:
            raise ValueError(
                f"MVPFormer input has {t} segments; the model holds at most n_positions={self.n_positions}"
            )
        key_mask = None if mask is None or bool(mask.all()) else mask
        if mask is None:
            mask = torch.ones(b, c, dtype=torch.bool, device=x.device)
        n_max = int(mask.sum(1).max())
        if n_max > self.n_channels:
            raise ValueError(
                f"MVPFormer input has {n_max} channels; the model holds at most n_channels={self.n_channels}"
            )
        chan_index = relative_channel_index(mask)
        time_table = self.time_embed.weight[:t]
        chan_table = self.channel_embed.weight[: max(n_max, 1)]
        x = self.drop(x)
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for blk in self.blocks:
            args = (x, time_table, chan_table, chan_index, key_mask)
            x = checkpoint(blk, *args, use_reentrant=False) if use_ckpt else blk(*args)
        return self.norm(x)


class MVPFormer(Encoder):
    """Wavelet segment encoder + MVPFormer backbone over raw multichannel signals.

    Input ``batch.values [B, C, T * S]``: each channel's signal at the model's sampling rate (512 Hz
    for the released models, in volts as recorded), cut into ``T`` consecutive segments of
    ``S = segment_samples`` samples (5 s = 2560 for the released models); the length must be a
    multiple of ``S``. Channel identity is not looked up: only the order and count of the present
    channels matter (MVPA's relative-channel term), so any montage of up to ``n_channels`` works.

    Args:
        segment_samples: samples per segment ``S``.
        embed_dim, depth, num_heads, num_kv_heads, mlp_hidden, n_positions, n_channels, window,
        content, scale_attn, scale_by_layer, norm_eps, drop_rate, attn_drop_rate, grad_checkpointing:
            as in :class:`MVPFormerBackbone`.

    """

    def __init__(
        self,
        segment_samples: int = 2560,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_kv_heads: int = 4,
        mlp_hidden: int = 1728,
        n_positions: int = 110,
        n_channels: int = 128,
        window: int | None = 10,
        content: bool = True,
        scale_attn: bool = True,
        scale_by_layer: bool = False,
        norm_eps: float = 1e-5,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        grad_checkpointing: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.segment_samples = segment_samples
        self.segment_encoder = WaveletSegmentEncoder(segment_samples, embed_dim, 1e-5, **kw)
        self.backbone = MVPFormerBackbone(
            embed_dim,
            depth,
            num_heads,
            num_kv_heads,
            mlp_hidden,
            n_positions,
            n_channels,
            window,
            content,
            scale_attn,
            scale_by_layer,
            norm_eps,
            drop_rate,
            attn_drop_rate,
            grad_checkpointing,
            **kw,
        )

    def embed_segments(self, batch: ChannelBatch) -> Tensor:
        """``values [B, C, T * S]`` -> segment tokens ``[B, T, C, D]`` (absent channels zeroed)."""
        values = batch.values
        if values.ndim != 3:
            raise ValueError(
                f"MVPFormer takes signals [B, C, time], got values of shape {tuple(values.shape)}"
            )
        b, c, n = values.shape
        s = self.segment_samples
        if n < s or n % s:
            raise ValueError(
                f"MVPFormer needs a whole number of {s}-sample segments per channel, got {n} samples"
            )
        tokens = self.segment_encoder(values.reshape(b, c, n // s, s))
        tokens = tokens * batch.mask[:, :, None, None].to(tokens.dtype)
        return tokens.transpose(1, 2)

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, T * S]`` -> tokens ``[B, T, C, D]`` (segment-major, one per channel).

        ``T = time // segment_samples``; ``C`` is the batch's (padded) channel count.
        """
        return self.backbone(self.embed_segments(batch), batch.mask)

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Ragged ``[B, <=3, 2 * segment_samples]`` signals (two segments)."""
        return self._example_batch((2 * self.segment_samples,), min(3, self.backbone.n_channels), batch_size, seed)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Mean over the present channels of the LAST segment -> ``[B, D]`` (the original's head input)."""
        return masked_mean(features[:, -1], batch.mask)


@register_encoder
def mvpformer_s(**kw) -> MVPFormer:  # type: ignore[no-untyped-def]
    """Released MVPFormer-S configuration.

    768 wide, 12 blocks, 12 heads / 4 key-value heads, SwiGLU 1728, up to 110 segments of 2560
    samples (5 s at 512 Hz) and 128 channels.
    """
    cfg = {
        "segment_samples": 2560,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "num_kv_heads": 4,
        "mlp_hidden": 1728,
        "n_positions": 110,
        "n_channels": 128,
        "drop_rate": 0.1,
        "attn_drop_rate": 0.1,
    }
    return MVPFormer(**(cfg | kw))


@register_encoder
def mvpformer_test(**kw) -> MVPFormer:  # type: ignore[no-untyped-def]
    """Tiny MVPFormer for tests and docs (64-sample segments, 32 wide, 2 blocks, 4/2 heads)."""
    cfg = {
        "segment_samples": 64,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_hidden": 48,
        "n_positions": 16,
        "n_channels": 16,
        "window": 3,
    }
    return MVPFormer(**(cfg | kw))
