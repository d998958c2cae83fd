"""Batched, on-device augmentation of time-series ChannelBatches (training only)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from chanformer.batch import ChannelBatch

__all__ = ["RandomShiftScale"]


class RandomShiftScale(nn.Module):
    """Random circular time shift, per-channel gain and additive noise on ``values [B, C, T]``.

    The same shift applies to every channel of a sample (inter-channel timing is kept); gains
    and noise are drawn per channel. Padded channels stay exactly zero.

    Args:
        max_shift: largest shift as a fraction of ``T`` (0 = off).
        scale: standard deviation of the multiplicative gain ``1 + scale * N(0, 1)``.
        noise: standard deviation of additive Gaussian noise (in normalised units).
        channel_drop: probability of hiding each present channel
            (:meth:`ChannelBatch.drop_channels`; at least one stays per sample).
    """

    def __init__(self, max_shift: float = 0.1, scale: float = 0.1, noise: float = 0.05, channel_drop: float = 0.0) -> None:
        super().__init__()
        for name, val in (("max_shift", max_shift), ("scale", scale), ("noise", noise), ("channel_drop", channel_drop)):
            if val < 0:
                raise ValueError(f"RandomShiftScale({name}={val}): must be >= 0")
        if max_shift >= 1:
            raise ValueError(f"RandomShiftScale(max_shift={max_shift}): must be a fraction of T below 1")
        if channel_drop >= 1:
            raise ValueError(f"RandomShiftScale(channel_drop={channel_drop}): must be below 1")
        self.max_shift, self.scale, self.noise, self.channel_drop = max_shift, scale, noise, channel_drop

    def forward(self, batch: ChannelBatch, generator: torch.Generator | None = None) -> ChannelBatch:
        v = batch.values
        if v.ndim != 3:
            raise ValueError(f"RandomShiftScale expects values [B, C, T], got {tuple(v.shape)}")
        b, c, t = v.shape
        dev = v.device

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator).to(dev, v.dtype)

        out = v
        limit = int(self.max_shift * t)
        if limit > 0:
            shifts = torch.randint(-limit, limit + 1, (b,), generator=generator).to(dev)
            idx = (torch.arange(t, device=dev)[None, :] - shifts[:, None]) % t  # [B, T]
            out = torch.gather(out, 2, idx[:, None, :].expand(b, c, t))
        if self.scale > 0:
            out = out * (1 + self.scale * randn(b, c, 1))
        if self.noise > 0:
            out = out + self.noise * randn(b, c, t)
        out = out * batch.mask[..., None].to(out.dtype)
        out_batch = replace(batch, values=out)
        if self.channel_drop > 0:
            out_batch = out_batch.drop_channels(self.channel_drop, generator=generator)
        return out_batch
