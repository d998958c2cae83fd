"""dazhangyu123/ACMIL ``architecture/transformer.py:ACMIL_GA`` -> :class:`chanformer.mil.ACMIL`.

The original is built as ``ACMIL_GA(conf, D, droprate, n_token, n_masked_patch, mask_drop)``
with ``conf`` holding ``D_feat``, ``D_inner``, ``n_class`` (and ``n_token``); the branch count
is the ``n_token`` argument. Its forward takes one bag ``[1, N, D_feat]`` and returns
``(branch_logits [K, C], slide_logits [1, C], attention logits [1, K, N])``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from chanformer.hub.converters import Converter, register_converter
from chanformer.mil.acmil import ACMIL

_KEYS = {
    "dimreduction.fc1.weight": "reduce.weight",
    "attention.attention_V.0.weight": "attention.value.weight",
    "attention.attention_V.0.bias": "attention.value.bias",
    "attention.attention_U.0.weight": "attention.gate.weight",
    "attention.attention_U.0.bias": "attention.gate.bias",
    "attention.attention_weights.weight": "attention.score.weight",
    "attention.attention_weights.bias": "attention.score.bias",
    "Slide_classifier.fc.weight": "slide_classifier.weight",
    "Slide_classifier.fc.bias": "slide_classifier.bias",
}


def _conf(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    conf = kwargs.get("conf", kwargs)
    return conf if isinstance(conf, Mapping) else vars(conf)


@register_converter
class ACMILConverter(Converter):
    name = "acmil"
    repo = "dazhangyu123/ACMIL"
    reference_class = "architecture/transformer.py:ACMIL_GA"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        conf = _conf(kwargs)
        missing = [k for k in ("D_feat", "D_inner", "n_class") if k not in conf]
        if missing:
            raise ValueError(f"ACMIL_GA conf is missing {missing}")
        return ACMIL(
            in_dim=int(conf["D_feat"]),
            n_classes=int(conf["n_class"]),
            embed_dim=int(conf["D_inner"]),
            attn_dim=int(kwargs.get("D", 128)),
            n_token=int(kwargs.get("n_token", 1)),
            n_masked_patch=int(kwargs.get("n_masked_patch", 0)),
            mask_drop=float(kwargs.get("mask_drop", 0.0)),
            dropout=float(kwargs.get("droprate", 0.0)),
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if key in _KEYS:
                out[_KEYS[key]] = val
            elif m := re.fullmatch(r"classifier\.(\d+)\.fc\.(weight|bias)", key):
                out[f"classifiers.{m.group(1)}.{m.group(2)}"] = val
            else:
                raise ValueError(f"ACMIL_GA checkpoint key {key!r} is not part of the ACMIL_GA model")
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, ACMIL):
            raise TypeError(f"acmil converter runs an ACMIL, got {type(model).__name__}")
        x = inputs["x"]
        if x.ndim != 3 or x.shape[0] != 1:
            raise ValueError(f"ACMIL_GA takes one bag [1, N, D], got {tuple(x.shape)}")
        out = model.forward_tensors(x)  # type: ignore[operator]
        return {
            "branch_logits": out.branch_logits[0],
            "slide_logits": out.slide_logits,
            "attention": out.attention,
        }
