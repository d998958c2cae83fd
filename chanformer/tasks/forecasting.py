"""Multivariate forecasting with a channel-token forecaster (SOFTS and friends)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.forecasting import ChannelForecaster
from chanformer.tasks.base import ChannelTask

__all__ = ["ForecastingTask"]


class ForecastingTask(ChannelTask):
    """Forecast ``[B, C, H]`` from history ``[B, C, T]``; MSE loss on the normalised scale.

    Metrics follow Time-Series-Library: ``mse``/``mae`` on the scale the dataset normalised
    to (train-split statistics), and ``mse_orig``/``mae_orig`` after inverting that scaler,
    when ``data_spec.channel_mean``/``channel_std`` are known.

    Args:
        horizon: forecast length; defaults to ``data_spec.horizon``.
        instance_norm: normalise each window per channel (RevIN-style, no affine).
        **kwargs: see :class:`ChannelTask`.
    """

    scale_mean: Tensor  # buffers: the dataset scaler's per-vocabulary-id statistics (empty: none)
    scale_std: Tensor

    def __init__(self, *args: Any, horizon: int | None = None, instance_norm: bool = True, **kwargs: Any) -> None:
        self._horizon_arg = horizon
        self.instance_norm = instance_norm
        super().__init__(*args, **kwargs)
        spec = self.data_spec
        mean = torch.tensor(spec.channel_mean or [], dtype=torch.float32)
        std = torch.tensor(spec.channel_std or [], dtype=torch.float32)
        self.register_buffer("scale_mean", mean, persistent=True)
        self.register_buffer("scale_std", std, persistent=True)

    def configure_head(self) -> None:
        horizon = self._horizon_arg or self.data_spec.horizon
        if not horizon:
            raise ValueError("ForecastingTask needs horizon= (or a datamodule spec with horizon)")
        self.forecaster = ChannelForecaster(self.encoder, int(horizon), instance_norm=self.instance_norm)

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({
            "mse": MeanSquaredError(), "mae": MeanAbsoluteError(),
            "mse_orig": MeanSquaredError(), "mae_orig": MeanAbsoluteError(),
        })

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Forecast ``[B, C, H]`` on the dataset's normalised scale."""
        return self.forecaster(batch)

    def exportable(self) -> nn.Module:
        return self.forecaster

    def to_original_scale(self, x: Tensor, channel_ids: Tensor) -> Tensor:
        """Invert the dataset scaler on ``x [B, C, H]`` using per-vocabulary-id statistics."""
        if self.scale_mean.numel() == 0:
            return x
        return x * self.scale_std[channel_ids][..., None] + self.scale_mean[channel_ids][..., None]

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        pred = self(batch)
        target = batch.target.to(pred.dtype)  # type: ignore[union-attr]
        mask = batch.mask[..., None].expand_as(pred)
        return F.mse_loss(pred[mask], target[mask]), pred, target

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        mask = batch.mask[..., None].expand_as(preds)
        p_orig = self.to_original_scale(preds, batch.channel_ids)
        t_orig = self.to_original_scale(target, batch.channel_ids)
        metrics["mse"].update(preds[mask], target[mask])
        metrics["mae"].update(preds[mask], target[mask])
        metrics["mse_orig"].update(p_orig[mask], t_orig[mask])
        metrics["mae_orig"].update(p_orig[mask], t_orig[mask])

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.to_original_scale(self(batch), batch.channel_ids)
