"""Per-channel patch tokeniser: one shared convolution applied to every channel separately.

Channel-adaptive image encoders (ChannelViT, ChAda-ViT, ...) split each channel of an image
into ``p x p`` patches with the SAME projection, so the token count grows with the number of
channels and any channel set can be embedded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ChannelPatchEmbed"]


class ChannelPatchEmbed(nn.Module):
    """Shared patch projection applied to each channel: ``[B, C, H, W] -> [B, C, h*w, D]``.

    Equivalent to ChannelViT's ``Conv3d(1, D, kernel=(1, p, p))`` over ``[B, 1, C, H, W]`` and to
    ChAda-ViT's ``Conv2d(1, D, p)`` over channels stacked on the batch axis. Only present channels
    (``mask=True``) are projected; padded channels get all-zero tokens (not the conv bias).

    Args:
        patch_size: patch side ``p`` (stride = kernel = ``p``; trailing pixels that do not fill a
            patch are dropped, as in the original ViTs).
        embed_dim: token width ``D``.
        in_chans: planes per channel (1 = every channel is one grey image ``[H, W]``; with
            ``k > 1`` values are ``[B, C, k, H, W]``).
        bias: whether the projection has a bias.

    """

    def __init__(
        self,
        patch_size: int,
        embed_dim: int,
        in_chans: int = 1,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("patch_size", patch_size), ("embed_dim", embed_dim), ("in_chans", in_chans)):
            if int(val) < 1:
                raise ValueError(f"ChannelPatchEmbed({arg}={val}): must be a positive integer")
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.embed_dim = int(embed_dim)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=bias, **kw)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid ``(h, w)`` for an image of ``height x width`` pixels."""
        return height // self.patch_size, width // self.patch_size

    def forward(self, values: Tensor, mask: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Tokenise every channel.

        Args:
            values: ``[B, C, H, W]`` (or ``[B, C, k, H, W]`` with ``k = in_chans > 1``).
            mask: optional ``[B, C]`` bool, True = present; absent channels are not projected.

        Returns:
            ``(tokens [B, C, h*w, D], (h, w))``; tokens row-major within each channel.

        """
        want = 4 if self.in_chans == 1 else 5
        if values.ndim != want or (want == 5 and values.shape[2] != self.in_chans):
            layout = "[B, C, H, W]" if want == 4 else f"[B, C, {self.in_chans}, H, W]"
            raise ValueError(f"ChannelPatchEmbed expects values {layout}, got shape {tuple(values.shape)}")
        b, c = values.shape[:2]
        h, w = self.grid(values.shape[-2], values.shape[-1])
        if h < 1 or w < 1:
            raise ValueError(
                f"image {tuple(values.shape[-2:])} is smaller than one patch (patch_size={self.patch_size})"
            )
        planes = values.reshape(b * c, self.in_chans, *values.shape[-2:])
        if mask is None or bool(mask.all()):
            tokens = self.proj(planes).flatten(2).transpose(1, 2)
            return tokens.reshape(b, c, h * w, self.embed_dim), (h, w)
        flat_mask = mask.reshape(-1)
        present = self.proj(planes[flat_mask]).flatten(2).transpose(1, 2)  # [P, h*w, D]
        tokens = present.new_zeros(b * c, h * w, self.embed_dim)
        tokens = tokens.index_put((flat_mask.nonzero().squeeze(1),), present)
        return tokens.reshape(b, c, h * w, self.embed_dim), (h, w)
