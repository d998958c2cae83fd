"""wzwvv/DBConformer ``models/DBConformer.py:DBConformer`` -> :class:`DBConformer` (with its classifier).

Written from the paper, the reference fixture's README and the checkpoint's tensor names and shapes
(the original code's licence is non-commercial; none of it is used here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders import create_encoder
from chanformer.encoders.dbconformer import DBConformer
from chanformer.hub.converters import Converter, register_converter

_STEM = {"sconv.conv.weight": "pointwise.weight", "tconv.0.conv.weight": "depthwise.weight"}
_BN = {"sconv.bn": "bn1", "tconv.0.bn": "bn2"}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BLOCK = re.compile(r"(temporal|spatial)_transformer\.(\d+)\.([01])\.fn\.(.+)\.(weight|bias)")
_BLOCK_PARTS = {
    ("0", "0"): "norm1",
    ("0", "1.projection"): "attn.proj",
    ("1", "0"): "norm2",
    ("1", "1.0"): "mlp.fc1",
    ("1", "1.3"): "mlp.fc2",
}
_TOP = {
    "pos_embedding_temporal": "temporal_pos",
    "pos_embedding_spatial": "spatial_pos",
    "channel_embedding.encoder.0.weight": "spatial_embed.conv.weight",
    "channel_embedding.encoder.0.bias": "spatial_embed.conv.bias",
    "channel_embedding.encoder.4.weight": "spatial_embed.proj.weight",
    "channel_embedding.encoder.4.bias": "spatial_embed.proj.bias",
    "spatial_attn_pool.0.weight": "channel_pool.fc1.weight",
    "spatial_attn_pool.0.bias": "channel_pool.fc1.bias",
    "spatial_attn_pool.2.weight": "channel_pool.fc2.weight",
    "spatial_attn_pool.2.bias": "channel_pool.fc2.bias",
}


def _args(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    args = kwargs.get("args", {})
    return args if isinstance(args, Mapping) else vars(args)


def _dense_pointwise(weight: Tensor, n_chans: int) -> Tensor:
    """Expand a grouped 1x1 conv weight ``[E, C / g, 1]`` to the equivalent block-diagonal ``[E, C, 1]``."""
    emb, per_group = weight.shape[0], weight.shape[1]
    if per_group == n_chans:
        return weight
    if n_chans % per_group:
        raise ValueError(f"DBConformer stem weight {tuple(weight.shape)} does not fit {n_chans} channels")
    groups = n_chans // per_group
    dense = weight.new_zeros(emb, n_chans, 1)
    out_per_group = emb // groups
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * per_group : (g + 1) * per_group] = weight[rows]
    return dense


@register_converter
class DBConformerConverter(Converter):
    """``DBConformer(args, emb_size, tem_depth, chn_depth, chn, n_classes)`` -> :class:`DBConformer`.

    Our encoder has the classifier head built in (``n_outputs``); ``run`` gives ``features`` and ``logits``.

    ``args`` fields used: ``chn``, ``time_sample_num``, ``patch_size``, ``spa_dim``, ``data_name``
    (``"MI1-7"`` keeps the last sample), ``posemb_flag``, ``chn_atten_flag``, ``branch``; ``gate_flag=True``
    is refused (its fusion gate is not described by the paper or the fixture).
    """

    name = "dbconformer"
    repo = "wzwvv/DBConformer"
    reference_class = "models/DBConformer.py:DBConformer"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        args = _args(kwargs)
        if bool(args.get("gate_flag", False)):
            raise ValueError("DBConformer converter: args.gate_flag=True (gated fusion) is not supported")
        n_times = int(args["time_sample_num"])
        patch = int(args.get("patch_size", 125))
        drop_last = str(args.get("data_name", "")) != "MI1-7"
        if (n_times - drop_last) // patch != n_times // patch:
            raise ValueError(
                f"DBConformer converter: time_sample_num={n_times} with patch_size={patch} gives "
                f"{(n_times - drop_last) // patch} temporal tokens after dropping the last sample but the "
                f"original sizes its positional embedding for {n_times // patch}; it cannot run this "
                "configuration"
            )
        return create_encoder(
            "dbconformer",
            n_chans=int(kwargs.get("chn", args.get("chn", 22))),
            n_times=n_times,
            emb_size=int(kwargs.get("emb_size", 40)),
            temporal_depth=int(kwargs.get("tem_depth", 2)),
            spatial_depth=int(kwargs.get("chn_depth", 2)),
            num_heads=int(kwargs.get("num_heads", 10)),
            patch_size=patch,
            spatial_dim=int(args.get("spa_dim", 16)),
            drop_last_sample=drop_last,
            pos_embed=bool(args.get("posemb_flag", True)),
            channel_attention=bool(args.get("chn_atten_flag", True)),
            branch=str(args.get("branch", "all")),
            n_outputs=int(kwargs.get("n_classes", args.get("class_num", 2))),
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        n_chans = int(kwargs.get("chn", _args(kwargs).get("chn", 22)))
        out: dict[str, Tensor] = {}
        qkv: dict[tuple[str, str, str], dict[str, Tensor]] = {}
        for key, val in state.items():
            if key in _TOP:
                out[_TOP[key]] = val
            elif key.startswith("embedding.stem."):
                rest = key.removeprefix("embedding.stem.")
                module, _, param = rest.rpartition(".")
                if rest in _STEM:
                    out[f"temporal_stem.{_STEM[rest]}"] = (
                        _dense_pointwise(val, n_chans) if rest.startswith("sconv") else val
                    )
                elif module in _BN and param in _BN_PARAMS:
                    out[f"temporal_stem.{_BN[module]}.{param}"] = val
                else:
                    raise ValueError(f"DBConformer checkpoint key {key!r} is not part of the model")
            elif m := _BLOCK.fullmatch(key):
                branch, i, sub, inner, param = m.groups()
                pre = f"{branch}_blocks.{i}."
                if sub == "0" and inner in ("1.queries", "1.keys", "1.values"):
                    qkv.setdefault((branch, i, param), {})[inner[2:]] = val
                elif (sub, inner) in _BLOCK_PARTS:
                    out[pre + f"{_BLOCK_PARTS[sub, inner]}.{param}"] = val
                else:
                    raise ValueError(f"DBConformer checkpoint key {key!r} is not part of the model")
            elif m := re.fullmatch(r"classifier\.fc\.(0|3|6)\.(weight|bias)", key):
                out[f"classifier.{m[1]}.{m[2]}"] = val
            else:
                raise ValueError(f"DBConformer checkpoint key {key!r} is not part of the model")
        for (branch, i, param), parts in qkv.items():
            if set(parts) != {"queries", "keys", "values"}:
                raise ValueError(
                    f"DBConformer {branch} block {i}: incomplete attention {param}s {sorted(parts)}"
                )
            out[f"{branch}_blocks.{i}.attn.qkv.{param}"] = torch.cat(
                [parts["queries"], parts["keys"], parts["values"]], dim=0
            )
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, DBConformer):
            raise TypeError(f"DBConformer converter runs a DBConformer, got {type(model).__name__}")
        x = inputs["x"]
        x = x.squeeze(1) if x.ndim == 4 else x  # [B, 1, C, T] -> [B, C, T]
        ids = torch.arange(x.shape[1]).expand(x.shape[0], -1)
        batch = ChannelBatch(x, ids, torch.ones(ids.shape, dtype=torch.bool))
        features = model(batch)
        if model.classifier is None:
            raise ValueError("DBConformer converter: the model has no classifier head (n_outputs=None)")
        return {"features": features, "logits": model.classifier(features)}
