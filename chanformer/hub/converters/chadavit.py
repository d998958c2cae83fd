"""nicoboou/chada_vit ``src/backbones/vit/chada_vit.py:ChAdaViT`` -> :class:`ChAdaViT`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import PAD_ID, ChannelBatch
from chanformer.encoders import create_encoder
from chanformer.encoders.chadavit import ChAdaViT
from chanformer.hub.converters import Converter, register_converter
from chanformer.hub.converters.channelvit import img_side, norm_eps

#: The original pads every image to this many channel slots (hard-coded) and adds its
#: channel tokens only when ``max_number_channels`` equals it.
ORIGINAL_PAD_SLOTS = 10

_BLOCK_KEYS = {
    "self_attn.in_proj_weight": "attn.qkv.weight",
    "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj.weight": "attn.proj.weight",
    "self_attn.out_proj.bias": "attn.proj.bias",
    "linear1.weight": "mlp.fc1.weight",
    "linear1.bias": "mlp.fc1.bias",
    "linear2.weight": "mlp.fc2.weight",
    "linear2.bias": "mlp.fc2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
_TOP_KEYS = {
    "token_learner.proj.weight": "patch_embed.proj.weight",
    "token_learner.proj.bias": "patch_embed.proj.bias",
    "cls_token": "cls_token",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
#: Constructor arguments of the original that do not change the converted model.
_IGNORED = {
    "num_classes", "return_all_tokens", "img_size", "in_chans", "embed_dim", "patch_size", "depth",
    "num_heads", "drop_rate", "drop_path_rate", "max_number_channels", "norm_layer", "device", "dtype",
}  # fmt: skip
_LAYER_KWARGS = {"activation", "layer_norm_eps", "norm_first", "batch_first", "attn_type"}


def _activation(value: Any) -> str:
    name = str(value).rsplit(".", 1)[-1].lower()
    for act in ("relu", "gelu"):
        if act in name:
            return act
    raise ValueError(f"ChAdaViT activation={value!r}: only relu and gelu are supported")


@register_converter
class ChAdaViTConverter(Converter):
    """Any ``ChAdaViT`` configuration.

    ``head.*`` (``num_classes > 0``) is dropped (never applied
    in ``forward``), and so is ``channel_token`` when ``max_number_channels != 10`` (the original
    then never adds it).
    """

    name = "chadavit"
    repo = "nicoboou/chada_vit"
    reference_class = "src/backbones/vit/chada_vit.py:ChAdaViT"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        unknown = sorted(set(kwargs) - _IGNORED - _LAYER_KWARGS)
        if unknown:
            raise ValueError(f"ChAdaViT constructor arguments not understood: {unknown}")
        if str(kwargs.get("attn_type", "torch")).startswith("xFormers"):
            raise ValueError("ChAdaViT attn_type='xFormers...' has no forward in the original; use 'torch'")
        slots = int(kwargs.get("max_number_channels", 10))
        depth = int(kwargs.get("depth", 12))
        return create_encoder(
            "chadavit_small",
            img_size=img_side(kwargs),
            patch_size=int(kwargs.get("patch_size", 16)),
            embed_dim=int(kwargs.get("embed_dim", 192)),
            depth=depth,
            num_heads=int(kwargs.get("num_heads", 12)),
            max_number_channels=slots,
            channel_embedding="slot" if slots == ORIGINAL_PAD_SLOTS else "none",
            in_chans=int(kwargs.get("in_chans", 1)),
            dim_feedforward=2048,
            activation=_activation(kwargs.get("activation", "relu")),
            norm_first=bool(kwargs.get("norm_first", False)),
            block_norm_eps=float(kwargs.get("layer_norm_eps", 1e-5)),
            norm_eps=norm_eps(kwargs, default=1e-5),
            drop_rate=float(kwargs.get("drop_rate", 0.0)),
            dropout=float(kwargs.get("drop_path_rate", 0.0)),
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        slots = int(kwargs.get("max_number_channels", 10))
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if key in _TOP_KEYS:
                out[_TOP_KEYS[key]] = val
            elif key == "pos_embed":  # [1, 1, 1 + N, D] -> [1, 1 + N, D]
                out[key] = val.reshape(1, val.shape[-2], val.shape[-1])
            elif key == "channel_token":  # [1, M, 1, D] -> [M, D]
                if slots == ORIGINAL_PAD_SLOTS:
                    out["channel_embed.weight"] = val.reshape(val.shape[1], val.shape[-1])
            elif key in ("head.weight", "head.bias"):
                continue
            elif (m := re.fullmatch(r"blocks\.(\d+)\.(.+)", key)) and m.group(2) in _BLOCK_KEYS:
                out[f"blocks.{m.group(1)}.{_BLOCK_KEYS[m.group(2)]}"] = val
            else:
                raise ValueError(f"ChAdaViT checkpoint key {key!r} is not part of ChAdaViT")
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, ChAdaViT):
            raise TypeError(f"ChAdaViT converter runs a ChAdaViT, got {type(model).__name__}")
        batch = stacked_to_batch(inputs["x"], inputs["num_channels"].tolist())
        tokens, key_mask = model.prepare_tokens(batch)
        feats = model.forward_features(batch)
        return {
            "embeddings": model.channel_tokens(feats, batch),
            "cls_embedding": model.pool(feats, batch),
            "tokenized": tokens,
            "key_padding_mask": ~key_mask,
        }


def stacked_to_batch(x: Tensor, num_channels: list[int], slots: int = ORIGINAL_PAD_SLOTS) -> ChannelBatch:
    """Convert the original's input layout into a :class:`ChannelBatch`.

    The original stacks all channels of all images as 1-channel images ``[sum C_b, k, H, W]``
    with ``num_channels = [C_0, C_1, ...]``; the batch is padded to ``max(slots, max C_b)`` channel
    slots (the original's sequence layout); ids = slot index.
    """
    if sum(num_channels) != x.shape[0]:
        raise ValueError(f"num_channels={num_channels} sums to {sum(num_channels)}; x has {x.shape[0]} rows")
    width = max([slots, *num_channels])
    planes = x if x.shape[1] > 1 else x[:, 0]
    values = planes.new_zeros(len(num_channels), width, *planes.shape[1:])
    mask = torch.zeros(len(num_channels), width, dtype=torch.bool)
    for i, chunk in enumerate(torch.split(planes, num_channels)):
        values[i, : chunk.shape[0]] = chunk
        mask[i, : chunk.shape[0]] = True
    ids = torch.where(mask, torch.arange(width), torch.full_like(mask, PAD_ID, dtype=torch.long))
    return ChannelBatch(values, ids, mask)
