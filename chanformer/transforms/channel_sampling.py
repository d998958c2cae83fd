"""Hierarchical Channel Sampling (HCS, Bao et al., ChannelViT, ICLR 2024) as a batch transform.

For each sample: draw how many channels to keep, ``k ~ Uniform{1, ..., C_b}`` (``C_b`` = its
present channels), then which ``k`` channels, uniformly without replacement. Two-level sampling
makes every channel COUNT equally likely, unlike independent per-channel dropout, which
concentrates on ``~C_b / 2``. The batch keeps its shape: dropped channels get ``mask=False``
and zero values, which channel-adaptive encoders treat exactly like padding.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from chanformer.batch import ChannelBatch

__all__ = ["HierarchicalChannelSampling", "hierarchical_channel_sampling"]


def hierarchical_channel_sampling(
    batch: ChannelBatch, generator: torch.Generator | None = None, min_channels: int = 1
) -> ChannelBatch:
    """Apply HCS to every sample of ``batch`` independently.

    Args:
        batch: ``values [B, C, *S]``, ``mask [B, C]``.
        generator: CPU ``torch.Generator`` for reproducible draws (``None`` = global RNG).
        min_channels: smallest number of channels kept (``k ~ Uniform{min(min_channels, C_b), ..., C_b}``).

    Returns:
        A new batch with the same shapes; sample ``b`` keeps ``k_b`` of its present channels.
        Samples without present channels are returned unchanged.

    """
    if not isinstance(batch, ChannelBatch):
        name = type(batch).__name__
        raise TypeError(f"hierarchical_channel_sampling(batch=...): need a ChannelBatch, not {name}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"hierarchical_channel_sampling(min_channels={min_channels!r}): must be an int >= 1")
    mask = batch.mask.cpu()
    b, c = mask.shape
    n_present = mask.sum(1)  # [B]
    low = n_present.clamp(max=min_channels)
    # level 1: number of channels, uniform over low..C_b
    u = torch.rand(b, generator=generator)
    k = low + (u * (n_present - low + 1).to(u.dtype)).floor().long()
    k = torch.minimum(k, n_present)
    # level 2: which channels: a uniform random ranking of the present channels, keep the first k
    scores = torch.rand(b, c, generator=generator).masked_fill(~mask, float("inf"))
    rank = scores.argsort(1).argsort(1)
    keep = (mask & (rank < k[:, None])).to(batch.device)
    values = batch.values * keep.view(b, c, *([1] * (batch.values.ndim - 2))).to(batch.values.dtype)
    coords = None if batch.coords is None else batch.coords * keep[..., None].to(batch.coords.dtype)
    return replace(batch, values=values, mask=keep, coords=coords)


class HierarchicalChannelSampling:
    """Callable HCS transform for training loops: ``batch -> batch`` (see module docstring).

    Args:
        seed: seeds a private ``torch.Generator`` (reproducible sequence of draws); ``None``
            uses the global RNG.
        min_channels: smallest number of channels kept per sample.

    """

    def __init__(self, seed: int | None = None, min_channels: int = 1) -> None:
        if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
            raise ValueError(f"HierarchicalChannelSampling(min_channels={min_channels!r}): need an int >= 1")
        self.min_channels = min_channels
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, batch: ChannelBatch) -> ChannelBatch:
        return hierarchical_channel_sampling(batch, self.generator, self.min_channels)

    def __repr__(self) -> str:
        return f"HierarchicalChannelSampling(min_channels={self.min_channels})"
