"""Channel-token forecaster: any encoder that emits one token per channel + a linear head."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders import Encoder, create_encoder
from chanformer.nn import InstanceNorm
from chanformer.registry import register_spec

__all__ = ["ChannelForecaster"]


class ChannelForecaster(nn.Module):
    """Forecast every channel ``horizon`` steps ahead: ``[B, C, T] -> [B, C, H]``.

    The encoder's :meth:`~Encoder.forward_features` must return channel tokens first
    (``[B, C (+ K), D]``, as SOFTS does); extra tokens (covariates) are dropped before the
    head. With ``instance_norm`` each channel is normalised over its history and the
    forecast is mapped back to the original scale.
    """

    def __init__(self, encoder: Encoder, horizon: int, instance_norm: bool = True) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"ChannelForecaster(horizon={horizon}): must be >= 1")
        self.encoder = encoder
        self.horizon = horizon
        self.norm = InstanceNorm() if instance_norm else None
        self.head = nn.Linear(encoder.embed_dim, horizon)

    def forward(self, batch: ChannelBatch) -> Tensor:
        """``batch.values [B, C, T]`` -> forecast ``[B, C, H]`` on the input's scale."""
        return self.forecast_with_tokens(batch)[0]

    def forecast_with_tokens(self, batch: ChannelBatch) -> tuple[Tensor, Tensor]:
        """Forecast ``[B, C, H]`` and the encoder's tokens ``[B, C (+ K), D]``."""
        stats = None
        batch = self.encoder.check_batch(batch)
        if self.norm is not None:
            values, stats = self.norm(batch.values)
            batch = replace(batch, values=values * batch.mask[..., None])
        tokens = self.encoder.forward_features(batch)
        out = self.head(tokens[:, : batch.n_channels])
        if stats is not None:
            out = InstanceNorm.inverse(out, stats)
        return out * batch.mask[..., None], tokens

    def pretrained_spec(self) -> dict[str, Any]:
        return {
            "kind": "forecaster",
            "encoder": self.encoder.pretrained_spec(),
            "horizon": self.horizon,
            "instance_norm": self.norm is not None,
        }


@register_spec("forecaster")
def _build_forecaster(spec: dict[str, Any]) -> nn.Module:
    enc = spec["encoder"]
    encoder = create_encoder(enc["name"], **enc.get("kwargs", {}))
    return ChannelForecaster(encoder, int(spec["horizon"]), bool(spec.get("instance_norm", True)))
