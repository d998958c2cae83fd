"""What ChannelViT and ChAda-ViT share: a ViT over (channel, patch) tokens plus a CLS token.

:class:`ChannelPatchViT` owns the trunk of both families: the per-channel patch projection
(:class:`chanformer.nn.patch_embed.ChannelPatchEmbed`), the CLS token and the ``[1, 1 + N, D]``
positional table, embedding dropout, the block stack (:func:`chanformer.nn.transformer.run_blocks`),
the final LayerNorm, the initialisation, token assembly with its key mask, the forward and the CLS
pooling. A family keeps only what differs: its constructor arguments, its blocks, how the channel
and positional embeddings are added to the patch tokens (:meth:`ChannelPatchViT.embed_patches`)
and which image layouts it accepts (:meth:`ChannelPatchViT.check_values`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders.base import Encoder
from chanformer.nn.patch_embed import ChannelPatchEmbed
from chanformer.nn.transformer import run_blocks

__all__ = ["ChannelPatchViT"]


class ChannelPatchViT(Encoder):
    """Base of the channel-adaptive image ViTs: ``[B, C, H, W]`` -> ``[CLS] + C * h * w`` tokens.

    Subclasses call :meth:`_build_patch_embed`, build their channel table (``channel_embed``, or
    ``None``), call :meth:`_build_trunk` with their blocks, then :meth:`reset_parameters`; and
    implement :meth:`embed_patches` and :meth:`check_values`.
    """

    img_size: int
    native_grid: tuple[int, int]
    grad_checkpointing: bool
    patch_embed: ChannelPatchEmbed
    cls_token: nn.Parameter
    pos_embed: nn.Parameter
    pos_drop: nn.Dropout
    blocks: nn.ModuleList
    norm: nn.LayerNorm
    #: Most channels of the images :meth:`example_batch` makes.
    example_channels: int = 3

    @staticmethod
    def _check_sizes(owner: str, img_size: int, patch_size: int, depth: int, **sizes: Any) -> None:
        """``ValueError`` unless ``sizes`` (and ``img_size``, ``patch_size``) are positive ints, the image holds a
        patch and ``depth >= 0``; messages name ``owner``."""
        for arg, val in {"img_size": img_size, "patch_size": patch_size, **sizes}.items():
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{owner}({arg}={val!r}): must be a positive integer")
        if img_size < patch_size:
            raise ValueError(f"{owner}(img_size={img_size}): smaller than patch_size={patch_size}")
        if depth < 0:
            raise ValueError(f"{owner}(depth={depth}): must be >= 0")

    def _build_patch_embed(
        self, img_size: int, patch_size: int, embed_dim: int, in_chans: int, grad_checkpointing: bool, kw: dict[str, Any]
    ) -> None:
        self.embed_dim = embed_dim
        self.img_size = img_size
        self.native_grid = (img_size // patch_size, img_size // patch_size)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.patch_embed = ChannelPatchEmbed(patch_size, embed_dim, in_chans=in_chans, **kw)

    def _build_trunk(self, blocks: Iterable[nn.Module], norm_eps: float, drop_rate: float, kw: dict[str, Any]) -> None:
        """CLS token, positional table (CLS row + native grid), embedding dropout, ``blocks``, final norm."""
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim, **kw))
        n = self.native_grid[0] * self.native_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, self.embed_dim, **kw))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(self.embed_dim, eps=norm_eps, **kw)

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) init of embeddings and linear weights; zero biases; unit norms."""
        params: list[Tensor] = [self.pos_embed, self.cls_token]
        table = getattr(self, "channel_embed", None)
        if table is not None:
            params.append(table.weight)
        for p in params:
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @abc.abstractmethod
    def check_values(self, values: Tensor) -> None:
        """Raise ``ValueError`` for an image layout the family does not take."""

    @abc.abstractmethod
    def embed_patches(self, tokens: Tensor, grid: tuple[int, int], batch: ChannelBatch) -> Tensor:
        """Add the channel and positional embeddings to patch tokens ``[B, C, h*w, D]`` (same shape back)."""

    def prepare_tokens(self, batch: ChannelBatch) -> tuple[Tensor, Tensor]:
        """Block-0 input: ``(tokens [B, 1 + C*h*w, D], key_mask [B, 1 + C*h*w])``.

        ``key_mask`` is True for the CLS token and the tokens of present channels.
        """
        values, mask = batch.values, batch.mask
        self.check_values(values)
        b, c = mask.shape
        tokens, grid = self.patch_embed(values, mask)  # [B, C, n, D], zeros for padded channels
        n = grid[0] * grid[1]
        tokens = self.embed_patches(tokens, grid, batch)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, tokens.reshape(b, c * n, self.embed_dim)], dim=1)
        key_mask = torch.cat([mask.new_ones(b, 1), mask.repeat_interleave(n, dim=1)], dim=1)
        return self.pos_drop(x), key_mask

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, H, W]`` -> final-normed tokens ``[B, 1 + C*h*w, D]``.

        Token 0 is CLS, then channel-major patch tokens (``h, w = H // p, W // p``); the length
        grows linearly with the padded channel count ``C``. Rows of padded channels are computed
        but meaningless; :meth:`channel_tokens` returns the real ones.
        """
        x, key_mask = self.prepare_tokens(batch)
        x = run_blocks(self.blocks, x, None if bool(key_mask.all()) else key_mask, self.grad_checkpointing)
        return self.norm(x)

    @staticmethod
    def channel_tokens(features: Tensor, batch: ChannelBatch) -> Tensor:
        """Patch tokens of present channels, flattened: ``[sum_b C_b * h*w, D]``.

        Sample-major, then channel, then patch (ChAda-ViT's ``return_all_tokens=True`` output).
        """
        b, c = batch.mask.shape
        patches = features[:, 1:].reshape(b, c, -1, features.shape[-1])
        return patches[batch.mask].reshape(-1, features.shape[-1])

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Ragged ``[B, <=example_channels, img_size, img_size]`` images."""
        return self._example_batch((self.img_size, self.img_size), self.example_channels, batch_size, seed)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """CLS token -> ``[B, D]``."""
        return features[:, 0]
