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
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder
from chanformer.nn.patch_embed import ChannelPatchEmbed
from chanformer.nn.pos_embed import resample_pos_embed_2d
from chanformer.nn.transformer import MaskedTransformerBlock, run_blocks

__all__ = ["ChannelViT", "channelvit_small_p8", "channelvit_small_p16", "channelvit_test"]

POS_RESAMPLE = ("always", "if_needed")


class ChannelViT(Encoder):
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
        for arg, val in (("img_size", img_size), ("patch_size", patch_size), ("num_channels", num_channels),
                         ("embed_dim", embed_dim), ("num_heads", num_heads)):  # fmt: skip
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"ChannelViT({arg}={val!r}): must be a positive integer")
        if img_size < patch_size:
            raise ValueError(f"ChannelViT(img_size={img_size}): smaller than patch_size={patch_size}")
        if depth < 0:
            raise ValueError(f"ChannelViT(depth={depth}): must be >= 0")
        if mlp_ratio <= 0:
            raise ValueError(f"ChannelViT(mlp_ratio={mlp_ratio}): must be positive")
        if pos_embed_resample not in POS_RESAMPLE:
            raise ValueError(
                f"ChannelViT(pos_embed_resample={pos_embed_resample!r}): expected one of {POS_RESAMPLE}"
            )
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.img_size = img_size
        self.num_channels = num_channels
        self.native_grid = (img_size // patch_size, img_size // patch_size)
        self.pos_embed_resample = pos_embed_resample
        self.grad_checkpointing = bool(grad_checkpointing)
        self.patch_embed = ChannelPatchEmbed(patch_size, embed_dim, **kw)
        self.channel_embed = nn.Embedding(num_channels, embed_dim, **kw)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **kw))
        n = self.native_grid[0] * self.native_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, embed_dim, **kw))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(
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
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) init of embeddings and linear weights; zero biases; unit norms."""
        for p in (self.pos_embed, self.cls_token, self.channel_embed.weight):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def patch_pos_embed(self, grid: tuple[int, int]) -> Tensor:
        """Positional embeddings of the patch grid ``(h, w)`` -> ``[h*w, D]``."""
        pos = self.pos_embed[0, 1:]
        if self.pos_embed_resample == "if_needed":
            return pos if grid == self.native_grid else resample_pos_embed_2d(pos, grid, "size")
        return resample_pos_embed_2d(pos, grid, "scale_factor")

    def prepare_tokens(self, batch: ChannelBatch) -> tuple[Tensor, Tensor]:
        """Block-0 input: ``(tokens [B, 1 + C*h*w, D], key_mask [B, 1 + C*h*w])``.

        ``key_mask`` is True for the CLS token and the tokens of present channels.
        """
        values, ids, mask = batch.values, batch.channel_ids, batch.mask
        if values.ndim != 4:
            raise ValueError(f"ChannelViT takes images [B, C, H, W], got values {tuple(values.shape)}")
        b, c = mask.shape
        tokens, grid = self.patch_embed(values, mask)  # [B, C, n, D]
        n = grid[0] * grid[1]
        chan = self.channel_embed(ids.clamp(0, self.num_channels - 1))  # [B, C, D]
        pos = self.patch_pos_embed(grid)  # [n, D]
        tokens = (tokens + chan[:, :, None] + pos).reshape(b, c * n, self.embed_dim)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        key_mask = torch.cat([mask.new_ones(b, 1), mask.repeat_interleave(n, dim=1)], dim=1)
        return self.pos_drop(x), key_mask

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, H, W]`` -> final-normed tokens ``[B, 1 + C*h*w, D]``.

        Token 0 is CLS; then channel-major patch tokens; ``h, w = H // p, W // p``, so the length
        grows linearly with the (padded) channel count ``C``. Rows of padded channels are computed
        but meaningless.
        """
        x, key_mask = self.prepare_tokens(batch)
        x = run_blocks(self.blocks, x, None if bool(key_mask.all()) else key_mask, self.grad_checkpointing)
        return self.norm(x)

    def channel_order_invariant(self) -> bool:
        return True

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Ragged ``[B, <=3, img_size, img_size]`` images."""
        return self._example_batch((self.img_size, self.img_size), 3, batch_size, seed)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """CLS token -> ``[B, D]``."""
        return features[:, 0]


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
