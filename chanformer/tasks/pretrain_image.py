"""Self-supervised pretraining of channel-adaptive image encoders by masked-channel reconstruction.

Per image, a random share of the present channels is hidden (``mask=False``, zero values, as
padding) and a random share of the patches of the remaining channels is blanked (zero pixels).
The encoder (ChannelViT, ChAda-ViT or any encoder whose :meth:`forward_features` returns
``[B, 1 + C*h*w, D]`` channel-major patch tokens with a CLS token) embeds what is left; a light
decoder then predicts the pixels of every hidden channel and blanked patch from

* the token of that (channel, patch) - a learned mask token when it was hidden or blanked,
* the mean token of the visible channels at the same patch position (cross-channel context),
* the CLS token, and
* a learned embedding of the target channel's identity (vocabulary id), so the decoder knows
  *which* stain or band it must draw.

The loss is the mean squared error over hidden pixels only. Random channel dropping
(:meth:`ChannelBatch.drop_channels`) can be added as augmentation before masking. At the end of
``fit`` the encoder (not the decoder) is exported with ``save_pretrained``, as for every task.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.tasks.base import ChannelTask

__all__ = ["MaskedChannelPretrainTask", "patchify"]


def patchify(values: Tensor, patch: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, C, h*w, p*p]`` patches, row-major (trailing pixels cropped)."""
    b, c, hh, ww = values.shape
    h, w = hh // patch, ww // patch
    x = values[..., : h * patch, : w * patch].reshape(b, c, h, patch, w, patch)
    return x.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * w, patch * patch)


class MaskedChannelPretrainTask(ChannelTask):
    """Masked channel + patch reconstruction (see module docstring); works on ragged channel sets.

    Args:
        channel_mask_ratio: share of each image's present channels hidden (rounded down; at
            least one hidden and one kept when the image has >= 2 channels).
        patch_mask_ratio: probability that a patch of a kept channel is blanked and reconstructed.
        channel_drop: training-only channel dropout before masking (augmentation), per channel.
        decoder_dim: width of the decoder MLP.
        norm_pix_loss: reconstruct per-patch standardised pixels (MAE's ``norm_pix_loss``).
        **kwargs: see :class:`ChannelTask` (encoder, encoder_kwargs, data_spec, optimizer, ...).

    Batches need no target. Logged: ``{stage}/loss`` and ``{stage}/recon_mse``.
    """

    requires_target = False

    def __init__(
        self, *args: Any, channel_mask_ratio: float = 0.5, patch_mask_ratio: float = 0.25, channel_drop: float = 0.0,
        decoder_dim: int = 128, norm_pix_loss: bool = False, **kwargs: Any,
    ) -> None:  # fmt: skip
        if not 0.0 <= channel_mask_ratio < 1.0:
            raise ValueError(f"MaskedChannelPretrainTask(channel_mask_ratio={channel_mask_ratio}): must be in [0, 1)")
        if not 0.0 <= patch_mask_ratio < 1.0:
            raise ValueError(f"MaskedChannelPretrainTask(patch_mask_ratio={patch_mask_ratio}): must be in [0, 1)")
        if not 0.0 <= channel_drop < 1.0:
            raise ValueError(f"MaskedChannelPretrainTask(channel_drop={channel_drop}): must be in [0, 1)")
        self.channel_mask_ratio, self.patch_mask_ratio = float(channel_mask_ratio), float(patch_mask_ratio)
        self.channel_drop, self.decoder_dim, self.norm_pix_loss = float(channel_drop), int(decoder_dim), norm_pix_loss
        self._eval_gen: torch.Generator | None = None
        super().__init__(*args, **kwargs)

    # -- head ---------------------------------------------------------------------------------
    def configure_head(self) -> None:
        pe = getattr(self.encoder, "patch_embed", None)
        if pe is None or not hasattr(pe, "patch_size"):
            raise TypeError(f"MaskedChannelPretrainTask needs a patch encoder (ChannelViT, ChAda-ViT), "
                            f"got {type(self.encoder).__name__}")  # fmt: skip
        if getattr(pe, "in_chans", 1) != 1:
            raise ValueError("MaskedChannelPretrainTask supports single-plane channels (in_chans=1) only")
        self.patch_size = int(pe.patch_size)
        d, dd = self.encoder.embed_dim, self.decoder_dim
        n_ids = max(1, len(self.data_spec.vocab))
        self.mask_token = nn.Parameter(torch.zeros(d))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.dec_token = nn.Linear(d, dd)
        self.dec_context = nn.Linear(d, dd)
        self.dec_cls = nn.Linear(d, dd, bias=False)
        self.dec_channel = nn.Embedding(n_ids, dd)
        self.decoder = nn.Sequential(nn.LayerNorm(dd), nn.Linear(dd, dd), nn.GELU(), nn.Linear(dd, self.patch_size**2))

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"recon_mse": MeanMetric()})

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        metrics.update(preds)

    # -- masking ------------------------------------------------------------------------------
    def _rand(self, *shape: int) -> Tensor:
        gen = None if self.training else self._eval_gen
        return torch.rand(*shape, generator=gen).to(self.device)

    def on_validation_epoch_start(self) -> None:
        self._eval_gen = torch.Generator().manual_seed(0)  # the same masks every validation

    def on_test_epoch_start(self) -> None:
        self._eval_gen = torch.Generator().manual_seed(0)

    def make_masks(self, batch: ChannelBatch) -> tuple[Tensor, Tensor]:
        """``(hidden [B, C], blanked [B, C, h*w])``: hidden channels, and blanked patches of kept ones."""
        mask = batch.mask
        b, c = mask.shape
        n_present = mask.sum(1)
        n_hide = (n_present.to(torch.float32) * self.channel_mask_ratio).floor().long()
        n_hide = torch.where(n_present >= 2, n_hide.clamp(1), torch.zeros_like(n_hide))
        n_hide = torch.minimum(n_hide, (n_present - 1).clamp(min=0))
        rank = self._rand(b, c).masked_fill(~mask, float("inf")).argsort(1).argsort(1)
        hidden = mask & (rank < n_hide[:, None])
        h, w = batch.values.shape[-2] // self.patch_size, batch.values.shape[-1] // self.patch_size
        blanked = (self._rand(b, c, h * w) < self.patch_mask_ratio) & (mask & ~hidden)[:, :, None]
        return hidden, blanked

    # -- step ---------------------------------------------------------------------------------
    def forward(self, batch: ChannelBatch) -> Tensor:
        """Encoder embedding ``[B, D]`` (what the pretrained encoder is used for)."""
        return self.encoder(batch)

    def reconstruct(self, batch: ChannelBatch, hidden: Tensor, blanked: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted and target patches ``[B, C, h*w, p*p]`` for a batch and its masks."""
        if batch.values.ndim != 4:
            raise ValueError(f"MaskedChannelPretrainTask takes images [B, C, H, W], got {tuple(batch.values.shape)}")
        p = self.patch_size
        b, c, hh, ww = batch.values.shape
        h, w = hh // p, ww // p
        target = patchify(batch.values, p)
        kept = batch.mask & ~hidden
        pix = blanked.reshape(b, c, h, 1, w, 1).expand(-1, -1, -1, p, -1, p).reshape(b, c, h * p, w * p)
        dt = batch.values.dtype
        values = batch.values[..., : h * p, : w * p] * kept[:, :, None, None].to(dt) * (~pix).to(dt)
        feats = self.encoder.forward_features(replace(batch, values=values, mask=kept))
        cls, tok = feats[:, 0], feats[:, 1:].reshape(b, c, h * w, -1)
        seen = kept[:, :, None] & ~blanked  # [B, C, n] tokens computed from real pixels
        wts = seen[..., None].to(tok.dtype)
        context = (tok * wts).sum(1) / wts.sum(1).clamp_min(1.0)  # [B, n, D]
        tok = torch.where(seen[..., None], tok, self.mask_token.to(tok.dtype))
        q = self.dec_token(tok) + self.dec_context(context)[:, None] + self.dec_cls(cls)[:, None, None]
        q = q + self.dec_channel(batch.channel_ids.clamp(0, self.dec_channel.num_embeddings - 1))[:, :, None]
        return self.decoder(q), target

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        if self.training and self.channel_drop > 0:
            batch = batch.drop_channels(self.channel_drop)
        hidden, blanked = self.make_masks(batch)
        pred, target = self.reconstruct(batch, hidden, blanked)
        if self.norm_pix_loss:
            mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        where = (hidden[:, :, None] | blanked) & batch.mask[:, :, None]  # [B, C, n]
        err = F.mse_loss(pred, target, reduction="none").mean(-1)
        wts = where.to(err.dtype)
        loss = (err * wts).sum() / wts.sum().clamp_min(1.0)
        return loss, loss.detach(), loss.detach()

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self(batch)
