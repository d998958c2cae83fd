"""ChannelViT: a ViT whose tokens are (channel, patch) pairs.

Bao et al., "Channel Vision Transformers: An Image Is Worth C x 16 x 16 Words", ICLR 2024:
every channel is patchified by one shared projection, tagged with a learned channel embedding
and a positional embedding shared by all channels, and all ``C * h * w`` tokens plus a CLS token go
through a ViT. Any subset or order of channels can be embedded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders._patch_vit import ChannelPatchViT
from chanformer.encoders._registry import register_encoder
from chanformer.nn.pos_embed import resample_pos_embed_2d
from chanformer.nn.transformer import MaskedTransformerBlock

__all__ = ["ChannelViT", "channelvit_small_p8", "channelvit_small_p16", "channelvit_test"]

POS_RESAMPLE = ("always", "if_needed")


class ChannelViT(ChannelPatchViT):
    """Channel Vision Transformer over a :class:`ChannelBatch` of images ``[B, C, H, W]``.

    Tokens are ``[CLS] + C * h * w`` patch tokens, channel-major (token ``1 + c*h*w + i*w + j``).
    Patch token = shared patch projection of channel ``c`` + ``channel_embed[channel_ids[b, c]]``
    + positional embedding of patch ``(i, j)`` (the same for every channel).

    Differences from the original (insitro/ChannelViT ``ChannelVisionTransformer``):

    * the channel embedding is looked up per sample from ``batch.channel_ids`` (vocabulary ids),
      the original reads only batch row 0 of ``extra_tokens["channels"]``; so samples in one batch
      may have different channel sets: padded channels (``mask=False``) are masked as attention
      keys and never change the real tokens;
    * ``pos_embed_resample="always"`` reproduces the original for multi-channel input (it
      resamples the positional grid bicubically with ``scale_factor=(h+0.1)/sqrt(N)`` even at the
      training size, which is not the identity). The original skips the resampling only for a
      single square channel at the native size; we do not, so that an image's embedding never
      depends on how many channels are in its batch. ``"if_needed"`` resamples only when the grid
      differs from the native one (then to the exact size).
    * Hierarchical Channel Sampling is a batch transform
      (:class:`chanformer.transforms.channel_sampling.HierarchicalChannelSampling`), not part of
      the model.

    Args:
        img_size: native (training) image side; ``pos_embed`` holds ``(img_size // p) ** 2`` rows.
        patch_size: patch side ``p``.
        num_channels: rows of the channel-embedding table (= vocabulary size; ids index it).
        embed_dim: token width ``D``.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``D``.
        qkv_bias: bias on the attention ``qkv`` projection (original class default False; the
            released ``channelvit_*`` models use True).
        qk_scale: attention scale override (``None`` = ``head_dim ** -0.5``).
        norm_eps: LayerNorm epsilon (original class default 1e-5; released models 1e-6).
        drop_rate: dropout after the embeddings and inside blocks.
        attn_drop_rate: attention-probability dropout.
        drop_path_rate: stochastic depth, linearly increasing to this value over the blocks.
        pos_embed_resample: ``"always"`` or ``"if_needed"`` (see above).
        grad_checkpointing: recompute block activations in backward to save memory.

    """

    data_args = {"image_size": "img_size", "vocab_size": "num_channels"}
    channel_table_arg = "num_channels"
    channel_embed: nn.Embedding  # always built (Encoder types it optional)

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 8,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pos_embed_resample: str = "always",
        grad_checkpointing: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._check_sizes("ChannelViT", img_size, patch_size, depth, num_channels=num_channels, embed_dim=embed_dim,
                          num_heads=num_heads)  # fmt: skip
        if mlp_ratio <= 0:
            raise ValueError(f"ChannelViT(mlp_ratio={mlp_ratio}): must be positive")
        if pos_embed_resample not in POS_RESAMPLE:
            raise ValueError(
                f"ChannelViT(pos_embed_resample={pos_embed_resample!r}): expected one of {POS_RESAMPLE}"
            )
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.num_channels = num_channels
        self.pos_embed_resample = pos_embed_resample
        self._build_patch_embed(img_size, patch_size, embed_dim, 1, grad_checkpointing, kw)
        self.channel_embed = nn.Embedding(num_channels, embed_dim, **kw)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
        blocks = (
            MaskedTransformerBlock(
                embed_dim,
                num_heads,
                int(embed_dim * mlp_ratio),
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                activation="gelu",
                norm_style="pre",
                norm_eps=norm_eps,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=p,
                **kw,
            )
            for p in dpr
        )
        self._build_trunk(blocks, norm_eps, drop_rate, kw)
        self.reset_parameters()

    def patch_pos_embed(self, grid: tuple[int, int]) -> Tensor:
        """Positional embeddings of the patch grid ``(h, w)`` -> ``[h*w, D]``."""
        pos = self.pos_embed[0, 1:]
        if self.pos_embed_resample == "if_needed":
            return pos if grid == self.native_grid else resample_pos_embed_2d(pos, grid, "size")
        return resample_pos_embed_2d(pos, grid, "scale_factor")

    def check_values(self, values: Tensor) -> None:
        if values.ndim != 4:
            raise ValueError(f"ChannelViT takes images [B, C, H, W], got values {tuple(values.shape)}")

    def embed_patches(self, tokens: Tensor, grid: tuple[int, int], batch: ChannelBatch) -> Tensor:
        """``tokens + channel_embed[channel_ids] + pos`` (per-sample vocabulary ids)."""
        chan = self.channel_embed(batch.channel_ids.clamp(0, self.num_channels - 1))  # [B, C, D]
        return tokens + chan[:, :, None] + self.patch_pos_embed(grid)

    def channel_order_invariant(self) -> bool:
        return True


@register_encoder
def channelvit_small_p16(**kw) -> ChannelViT:  # type: ignore[no-untyped-def]
    """ViT-S/16 ChannelViT (384 wide, 12 blocks, 6 heads, qkv bias, LayerNorm eps 1e-6), 224 px."""
    cfg: dict[str, Any] = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6} | kw
    return ChannelViT(**cfg)


@register_encoder
def channelvit_small_p8(**kw) -> ChannelViT:  # type: ignore[no-untyped-def]
    """ViT-S/8 ChannelViT (the paper's main JUMP-CP / So2Sat setting), 224 px."""
    cfg: dict[str, Any] = {"img_size": 224, "patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6} | kw
    return ChannelViT(**cfg)


@register_encoder
def channelvit_test(**kw) -> ChannelViT:  # type: ignore[no-untyped-def]
    """Tiny ChannelViT for tests and docs (16 px, patch 8, 32 wide, 2 blocks)."""
    cfg: dict[str, Any] = {"img_size": 16, "patch_size": 8, "num_channels": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    cfg |= kw
    return ChannelViT(**cfg)
