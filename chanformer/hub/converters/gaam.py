"""gioannides/Gaussian-Adaptive-Attention ``GaussianBlock.py`` -> :mod:`chanformer.nn.gaam`.

Two converters: ``gaam`` (``MultiHeadGaussianAdaptiveAttention``) and ``gaam_block``
(``GaussianBlock``). The original keeps one module per head
(``attention_heads.{h}.mean_offsets`` / ``.c``, each ``[num_gaussians]``); ours stacks them
into ``mean_offsets`` / ``scales`` of shape ``[num_heads, num_gaussians]``.

The original's ``MultiHeadGaussianAdaptiveAttention`` passes its ``eps`` into an unused
positional slot of the per-head constructor, so the heads always use ``eps = 1e-8``;
``build`` reproduces that whatever ``eps`` the configuration names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.hub.converters import Converter, register_converter
from chanformer.nn.gaam import GaussianBlock, MultiHeadGaussianAdaptiveAttention

_REPO = "gioannides/Gaussian-Adaptive-Attention"
_HEAD_EPS = 1e-8  # the original heads' default eps, the only one ever used (see module docstring)
_PARAMS = {"mean_offsets": "mean_offsets", "c": "scales"}


def _stack_heads(state: Mapping[str, Tensor], prefix: str, num_heads: int, what: str) -> dict[str, Tensor]:
    """``{prefix}attention_heads.{h}.{mean_offsets,c}`` -> ``{prefix}{mean_offsets,scales}`` ``[H, G]``."""
    out = {}
    for theirs, ours in _PARAMS.items():
        rows = []
        for h in range(num_heads):
            key = f"{prefix}attention_heads.{h}.{theirs}"
            if key not in state:
                raise ValueError(f"{what} checkpoint has no {key!r} (num_heads={num_heads})")
            rows.append(state[key].reshape(-1))
        out[prefix + ours] = torch.stack(rows)
    return out


def _check_keys(state: Mapping[str, Tensor], pattern: str, what: str) -> None:
    for key in state:
        if not re.fullmatch(pattern, key):
            raise ValueError(f"{what} checkpoint key {key!r} is not part of the {what} model")


@register_converter
class GAAMConverter(Converter):
    name = "gaam"
    repo = _REPO
    reference_class = "gaussian_adaptive_attention/GaussianBlock.py:MultiHeadGaussianAdaptiveAttention"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        missing = [k for k in ("norm_axis", "num_heads", "num_gaussians") if k not in kwargs]
        if missing:
            raise ValueError(f"MultiHeadGaussianAdaptiveAttention kwargs are missing {missing}")
        return MultiHeadGaussianAdaptiveAttention(
            norm_axis=int(kwargs["norm_axis"]),
            num_heads=int(kwargs["num_heads"]),
            num_gaussians=int(kwargs["num_gaussians"]),
            padding_value=kwargs.get("padding_value"),
            eps=_HEAD_EPS,
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        _check_keys(state, r"attention_heads\.\d+\.(mean_offsets|c)", "GAAM")
        n = len({k.split(".")[1] for k in state})
        if n != int(kwargs["num_heads"]):
            raise ValueError(f"GAAM checkpoint has {n} heads, configuration num_heads={kwargs['num_heads']}")
        return _stack_heads(state, "", n, "GAAM")

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, MultiHeadGaussianAdaptiveAttention):
            raise TypeError(
                f"gaam converter runs a MultiHeadGaussianAdaptiveAttention, got {type(model).__name__}"
            )
        out, attention = model(inputs["x"], return_attention=True)
        return {"out": out, "attention": attention}


@register_converter
class GaussianBlockConverter(Converter):
    name = "gaam_block"
    repo = _REPO
    reference_class = "gaussian_adaptive_attention/GaussianBlock.py:GaussianBlock"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        missing = [k for k in ("norm_axes", "num_heads", "num_gaussians") if k not in kwargs]
        if missing:
            raise ValueError(f"GaussianBlock kwargs are missing {missing}")
        return GaussianBlock(
            norm_axes=list(kwargs["norm_axes"]),
            num_heads=list(kwargs["num_heads"]),
            num_gaussians=list(kwargs["num_gaussians"]),
            num_layers=int(kwargs.get("num_layers", len(kwargs["norm_axes"]))),
            padding_value=kwargs.get("padding_value"),
            eps=_HEAD_EPS,
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        _check_keys(state, r"layers\.\d+\.attention_heads\.\d+\.(mean_offsets|c)", "GaussianBlock")
        heads = list(kwargs["num_heads"])
        n_layers = len({k.split(".")[1] for k in state})
        if n_layers != len(heads):
            raise ValueError(f"GaussianBlock checkpoint has {n_layers} layers, configuration {len(heads)}")
        out: dict[str, Tensor] = {}
        for i, h in enumerate(heads):
            n = len({k.split(".")[3] for k in state if k.startswith(f"layers.{i}.")})
            if n != int(h):
                raise ValueError(
                    f"GaussianBlock checkpoint layer {i} has {n} heads, configuration num_heads={h}"
                )
            out.update(_stack_heads(state, f"layers.{i}.", int(h), "GaussianBlock"))
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, GaussianBlock):
            raise TypeError(f"gaam_block converter runs a GaussianBlock, got {type(model).__name__}")
        out, weights = model(inputs["x"], return_attention=True)
        return {"out": out, **{f"attention.layer_{i}": w for i, w in enumerate(weights)}}
