"""Secilia-Cxy/SOFTS ``models/SOFTS.py:Model`` -> :class:`ChannelForecaster` around SOFTS."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders import create_encoder
from chanformer.forecasting import ChannelForecaster
from chanformer.hub.converters import Converter, register_converter

_LAYER_KEYS = {
    "attention.gen1": "star.core_hidden",
    "attention.gen2": "star.core_proj",
    "attention.gen3": "star.fuse",
    "attention.gen4": "star.out",
    "conv1": "mlp.fc1",
    "conv2": "mlp.fc2",
    "norm1": "norm1",
    "norm2": "norm2",
}


def _configs(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    return kwargs.get("configs", kwargs)


@register_converter
class SOFTSConverter(Converter):
    name = "softs"
    repo = "Secilia-Cxy/SOFTS"
    reference_class = "models/SOFTS.py:Model"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        cfg = _configs(kwargs)
        missing = [k for k in ("seq_len", "pred_len", "d_model", "d_core", "d_ff", "e_layers") if k not in cfg]
        if missing:
            raise ValueError(f"SOFTS configs is missing {missing}")
        encoder = create_encoder(
            "softs",
            seq_len=int(cfg["seq_len"]),
            d_model=int(cfg["d_model"]),
            d_core=int(cfg["d_core"]),
            d_ff=int(cfg["d_ff"]),
            e_layers=int(cfg["e_layers"]),
            dropout=float(cfg.get("dropout", 0.0)),
            activation="relu" if cfg.get("activation", "gelu") == "relu" else "gelu",
        )
        return ChannelForecaster(encoder, int(cfg["pred_len"]), instance_norm=bool(cfg.get("use_norm", True)))

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if key.startswith("enc_embedding.value_embedding."):
                out["encoder.embed." + key.rsplit(".", 1)[1]] = val
            elif key.startswith("projection."):
                out["head." + key.rsplit(".", 1)[1]] = val
            elif m := re.fullmatch(r"encoder\.attn_layers\.(\d+)\.(.+)\.(weight|bias)", key):
                i, mod, p = m.groups()
                if mod not in _LAYER_KEYS:
                    raise ValueError(f"SOFTS checkpoint key {key!r} is not part of the SOFTS model")
                out[f"encoder.layers.{i}.{_LAYER_KEYS[mod]}.{p}"] = val.squeeze(-1) if mod.startswith("conv") else val
            else:
                raise ValueError(f"SOFTS checkpoint key {key!r} is not part of the SOFTS model")
        return out

    def run(self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]) -> dict[str, Tensor]:
        if not isinstance(model, ChannelForecaster):
            raise TypeError(f"SOFTS converter runs a ChannelForecaster, got {type(model).__name__}")
        x = inputs["x_enc"].transpose(1, 2)  # [B, T, C] -> [B, C, T]
        ids = torch.arange(x.shape[1]).expand(x.shape[0], -1)
        mask = torch.ones(ids.shape, dtype=torch.bool)
        marks = inputs.get("x_mark_enc")
        outs: dict[str, Tensor] = {}
        runs = [("", marks), ("_no_mark", None)] if marks is not None else [("_no_mark", None)]
        for suffix, cov in runs:
            batch = ChannelBatch(x, ids, mask, covariates=None if cov is None else cov.transpose(1, 2))
            forecast, tokens = model.forecast_with_tokens(batch)
            outs[f"forecast{suffix}"] = forecast.transpose(1, 2)
            outs[f"encoder_out{suffix}"] = tokens
        if marks is None:  # the original's x_mark=None path is the only forecast
            outs["forecast"] = outs["forecast_no_mark"]
        return outs
