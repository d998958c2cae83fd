"""insitro/ChannelViT ``channelvit/backbone/channel_vit.py:ChannelVisionTransformer`` -> ChannelViT."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders import create_encoder
from chanformer.encoders.channelvit import ChannelViT
from chanformer.hub.converters import Converter, register_converter

_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)")
_SAME = {"cls_token", "pos_embed", "patch_embed.proj.bias", "norm.weight", "norm.bias"}


def norm_eps(kwargs: Mapping[str, Any], default: float = 1e-5) -> float:
    """LayerNorm epsilon from a fixture's ``norm_layer`` entry (``{"class", "eps"}``)."""
    norm = kwargs.get("norm_layer")
    if isinstance(norm, Mapping):
        cls = str(norm.get("class", "torch.nn.LayerNorm"))
        if not cls.endswith("LayerNorm"):
            raise ValueError(f"norm_layer={cls!r}: only LayerNorm is supported")
        return float(norm.get("eps", default))
    if norm is None or (isinstance(norm, str) and norm.endswith("LayerNorm")):
        return default
    raise ValueError(f"norm_layer={norm!r}: expected a {{'class', 'eps'}} mapping for a LayerNorm")


def img_side(kwargs: Mapping[str, Any], default: int = 224) -> int:
    """Return the original's ``img_size`` (a one-element list, as in DINO, or an int)."""
    size = kwargs.get("img_size", [default])
    return int(size[0] if isinstance(size, (list, tuple)) else size)


@register_converter
class ChannelViTConverter(Converter):
    """The released ``channelvit_*`` checkpoints and any other configuration of the class.

    The classifier ``head.*`` (present when ``num_classes > 0``) is dropped: the original
    ``forward`` never applies it.
    """

    name = "channelvit"
    repo = "insitro/ChannelViT"
    reference_class = "channelvit/backbone/channel_vit.py:ChannelVisionTransformer"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        return create_encoder(
            "channelvit_small_p16",
            img_size=img_side(kwargs),
            patch_size=int(kwargs.get("patch_size", 16)),
            num_channels=int(kwargs.get("in_chans", 3)),
            embed_dim=int(kwargs.get("embed_dim", 768)),
            depth=int(kwargs.get("depth", 12)),
            num_heads=int(kwargs.get("num_heads", 12)),
            mlp_ratio=float(kwargs.get("mlp_ratio", 4.0)),
            qkv_bias=bool(kwargs.get("qkv_bias", False)),
            qk_scale=None if kwargs.get("qk_scale") is None else float(kwargs["qk_scale"]),
            norm_eps=norm_eps(kwargs),
            drop_rate=float(kwargs.get("drop_rate", 0.0)),
            attn_drop_rate=float(kwargs.get("attn_drop_rate", 0.0)),
            drop_path_rate=float(kwargs.get("drop_path_rate", 0.0)),
            pos_embed_resample="always",
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if key in _SAME or _BLOCK_KEY.fullmatch(key):
                out[key] = val
            elif key == "patch_embed.proj.weight":  # Conv3d [D, 1, 1, p, p] -> Conv2d [D, 1, p, p]
                out[key] = val.squeeze(2)
            elif key == "patch_embed.channel_embed":  # [1, D, C, 1, 1] -> [C, D]
                out["channel_embed.weight"] = val.reshape(val.shape[1], val.shape[2]).t().contiguous()
            elif key in ("head.weight", "head.bias"):
                continue
            else:
                raise ValueError(f"ChannelViT checkpoint key {key!r} is not part of ChannelVisionTransformer")
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, ChannelViT):
            raise TypeError(f"ChannelViT converter runs a ChannelViT, got {type(model).__name__}")
        outs: dict[str, Tensor] = {}
        for prefix, x_key, ch_key in (("", "x", "channels"), ("subset_", "subset_x", "subset_channels")):
            if x_key not in inputs:
                continue
            x = inputs[x_key]
            # the original reads only row 0 of the channel ids: every row gets those
            ids = inputs[ch_key][0].to(torch.long).expand(x.shape[0], -1).clone()
            batch = ChannelBatch(x, ids, torch.ones(ids.shape, dtype=torch.bool))
            outs[f"{prefix}prepared_tokens"] = model.prepare_tokens(batch)[0]
            tokens = model.forward_features(batch)
            outs[f"{prefix}embedding"] = model.pool(tokens, batch)
            if not prefix:
                outs["last_tokens"] = tokens
        return outs
