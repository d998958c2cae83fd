"""ChAda-ViT: a channel-adaptive ViT for images with varying channel sets.

Bourriez et al., "ChAda-ViT: Channel Adaptive Attention for Joint Representation Learning of
Heterogeneous Microscopy Images", CVPR 2024: every channel of an image is split into patches
by one shared single-channel projection; the tokens of all channels (plus a CLS token)
attend to each other, so images with different channel counts share one model.
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

__all__ = ["ChAdaViT", "chadavit_small", "chadavit_test"]

CHANNEL_EMBEDDINGS = ("slot", "vocab", "none")


class ChAdaViT(ChannelPatchViT):
    """Channel-adaptive ViT over a :class:`ChannelBatch` of images ``[B, C, H, W]``.

    Tokens are ``[CLS] + C * h * w`` patch tokens, channel-major; patch token = shared 1-channel
    patch projection + positional embedding of the patch (shared by all channels) + a channel
    embedding chosen by ``channel_embedding``:

    * ``"slot"`` (the original): row ``k`` of a ``[max_number_channels, D]`` table for the
      ``k``-th PRESENT channel of the sample (its position, counted over ``mask=True`` entries).
      It carries no channel identity: the same stain gets a different embedding when it comes
      at another position, and the model relies on the channel order of the data.
    * ``"vocab"``: row ``batch.channel_ids[b, c]`` of a ``[num_channels, D]`` table (semantic
      embedding: a channel means the same wherever it appears; needs ``num_channels`` = vocabulary
      size, and is not compatible with the original's checkpoints' channel tokens).
    * ``"none"``: no channel embedding (what the original computes when ``max_number_channels``
      differs from its hard-coded padding width of 10).

    Differences from the original (nicoboou/chada_vit ``ChAdaViT``):

    * padding comes from ``batch.mask``; the original pads every image to 10 channel slots and
      builds the key-padding mask from tokens that are all zero before positions are added.
      Both agree except for a REAL channel whose patch tokens are exactly zero (zero image and
      zero conv bias), which the original would silently drop and we keep;
    * the sequence has ``C`` channel slots (the batch's padded channel count), not always 10; the
      extra padded slots of the original are masked and do not change any real token;
    * blocks use :func:`~torch.nn.functional.scaled_dot_product_attention` with a boolean key
      mask instead of ``nn.MultiheadAttention`` (same weights: ``in_proj`` = ``qkv``).

    Blocks: with ``norm_first=False`` (original default) ``x = norm1(x + attn(norm1(x)))``,
    ``x = norm2(x + ffn(x))`` (``norm1`` applied twice); ``norm_first=True`` gives pre-norm.

    Args:
        img_size: native image side; ``pos_embed`` holds ``(img_size // p) ** 2`` patch rows.
        patch_size: patch side ``p``.
        embed_dim: token width ``D``.
        depth: number of blocks.
        num_heads: attention heads.
        max_number_channels: slots of the ``"slot"`` channel table (most channels per image).
        channel_embedding: ``"slot"``, ``"vocab"`` or ``"none"`` (above).
        num_channels: vocabulary size, required for ``"vocab"``.
        in_chans: planes per channel (1 = grey; ``k > 1`` takes values ``[B, C, k, H, W]``).
        dim_feedforward: FFN hidden width (2048 in the original, whatever ``D``).
        activation: FFN activation, ``"relu"`` (original) or ``"gelu"``.
        norm_first: pre-norm blocks instead of the original's double-``norm1`` post-norm.
        block_norm_eps: epsilon of the block LayerNorms (1e-5 in the original).
        norm_eps: epsilon of the final LayerNorm (1e-6 in the original factory).
        drop_rate: dropout after the embeddings.
        dropout: block dropout (attention probabilities, attention output, FFN); block ``i`` uses
            ``dropout * i / (depth - 1)`` (the original passes its linearly spaced
            ``drop_path_rate`` values as this dropout).
        drop_path_rate: stochastic depth (not in the original), linearly increasing over blocks.
        grad_checkpointing: recompute block activations in backward to save memory.

    """

    data_args = {"image_size": "img_size", "vocab_size": "num_channels"}
    channel_table_arg = "num_channels"

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 2,
        max_number_channels: int = 10,
        channel_embedding: str = "slot",
        num_channels: int | None = None,
        in_chans: int = 1,
        dim_feedforward: int = 2048,
        activation: str = "relu",
        norm_first: bool = False,
        block_norm_eps: float = 1e-5,
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._check_sizes("ChAdaViT", img_size, patch_size, depth, embed_dim=embed_dim, num_heads=num_heads,
                          max_number_channels=max_number_channels, in_chans=in_chans,
                          dim_feedforward=dim_feedforward)  # fmt: skip
        if channel_embedding not in CHANNEL_EMBEDDINGS:
            raise ValueError(
                f"ChAdaViT(channel_embedding={channel_embedding!r}): expected one of {CHANNEL_EMBEDDINGS}"
            )
        if channel_embedding == "vocab" and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(
                f"ChAdaViT(num_channels={num_channels!r}): channel_embedding='vocab' needs the vocab size"
            )
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.max_number_channels = max_number_channels
        self.example_channels = min(3, max_number_channels)
        self.channel_embedding = channel_embedding
        self.num_channels = num_channels
        self._build_patch_embed(img_size, patch_size, embed_dim, in_chans, grad_checkpointing, kw)
        rows = {"slot": max_number_channels, "vocab": num_channels, "none": 0}[channel_embedding]
        self.channel_embed = nn.Embedding(rows, embed_dim, **kw) if rows else None
        steps = torch.linspace(0, 1, depth).tolist() if depth else []
        blocks = (
            MaskedTransformerBlock(
                embed_dim,
                num_heads,
                dim_feedforward,
                qkv_bias=True,
                activation=activation,
                norm_style="pre" if norm_first else "prepost",
                norm_eps=block_norm_eps,
                drop=dropout * s,
                attn_drop=dropout * s,
                drop_path=drop_path_rate * s,
                **kw,
            )
            for s in steps
        )
        self._build_trunk(blocks, norm_eps, drop_rate, kw)
        self.reset_parameters()

    def channel_table(self) -> nn.Embedding | None:
        """The ``[num_channels, D]`` table in ``"vocab"`` mode; slot and no embeddings are not vocabulary-indexed."""
        return self.channel_embed if self.channel_embedding == "vocab" else None

    def _channel_rows(self, batch: ChannelBatch) -> Tensor:
        """Row of the channel table for each ``[B, C]`` entry."""
        mask, c = batch.mask, batch.n_channels
        if self.channel_embedding == "vocab":
            present = batch.channel_ids[mask]
            if present.numel() and (int(present.min()) < 0 or int(present.max()) >= int(self.num_channels)):  # type: ignore[arg-type]
                raise ValueError(
                    f"batch.channel_ids has ids outside [0, num_channels={self.num_channels}) "
                    "(channel_embedding='vocab')"
                )
            return batch.channel_ids.clamp(0, int(self.num_channels) - 1)  # type: ignore[arg-type]
        counts = mask.sum(1)
        if int(counts.max()) > self.max_number_channels:
            raise ValueError(
                f"a sample has {int(counts.max())} channels but "
                f"max_number_channels={self.max_number_channels} (channel_embedding='slot')"
            )
        slot = mask.long().cumsum(1) - 1
        spare = torch.arange(c, device=mask.device).clamp(max=self.max_number_channels - 1).expand_as(slot)
        return torch.where(mask, slot, spare)

    def patch_pos_embed(self, grid: tuple[int, int], height: int, width: int) -> Tensor:
        """Positional embeddings of the patch grid -> ``[h*w, D]``.

        As stored at the native grid of a square image, else resampled bicubically with the DINO
        scale factor ``(h+0.1)/sqrt(N)``.
        """
        pos = self.pos_embed[0, 1:]
        if grid == self.native_grid and height == width:
            return pos
        return resample_pos_embed_2d(pos, grid, "scale_factor")

    def check_values(self, values: Tensor) -> None:
        want = 4 if self.patch_embed.in_chans == 1 else 5
        if values.ndim != want:
            raise ValueError(
                f"ChAdaViT takes images [B, C{', k' if want == 5 else ''}, H, W], got values of shape "
                f"{tuple(values.shape)}"
            )

    def embed_patches(self, tokens: Tensor, grid: tuple[int, int], batch: ChannelBatch) -> Tensor:
        """``tokens + pos (+ channel embedding)``; padded channels' tokens are ``0 + pos + channel embedding``
        (as the original's padded slots)."""
        tokens = tokens + self.patch_pos_embed(grid, batch.values.shape[-2], batch.values.shape[-1])
        if self.channel_embed is not None:
            tokens = tokens + self.channel_embed(self._channel_rows(batch))[:, :, None]
        return tokens

    def channel_order_invariant(self) -> bool:
        """Slot embeddings follow the order of present channels; vocabulary or no embeddings do not."""
        return self.channel_embedding != "slot"


@register_encoder
def chadavit_small(**kw) -> ChAdaViT:  # type: ignore[no-untyped-def]
    """Build the original ``chada_vit()`` architecture.

    12 blocks, 2 heads, class defaults embed 192, patch 16, FFN 2048, 10 channel slots, 224 px.
    """
    cfg: dict[str, Any] = {"img_size": 224, "patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 2} | kw
    return ChAdaViT(**cfg)


@register_encoder
def chadavit_test(**kw) -> ChAdaViT:  # type: ignore[no-untyped-def]
    """Tiny ChAda-ViT for tests and docs (16 px, patch 8, 32 wide, 2 blocks, FFN 64)."""
    cfg: dict[str, Any] = {"img_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    cfg["dim_feedforward"] = 64
    cfg |= kw
    return ChAdaViT(**cfg)
