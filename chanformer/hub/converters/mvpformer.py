"""IBM/multi-variate-parallel-transformer ``models/mvpformer.py:MVPFormerModel`` -> :class:`MVPFormer`.

The checkpoint may also hold the ``models/fftencoder.py:WaveEncoder`` segment encoder under ``encoder.*``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from chanformer.encoders import create_encoder
from chanformer.encoders.mvpformer import MVPFormer, segment_samples_for_coeffs
from chanformer.hub.converters import Converter, register_converter

_ATTN = {
    "q_attn": "q_proj",
    "c_attn": "kv_proj",
    "position_net": "time_proj",
    "channel_net": "chan_proj",
    "c_proj": "out_proj",
}
_MLP = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
_BLOCK_KEY = re.compile(r"h\.(\d+)\.(.+)")
_DROPPED = (
    "ln_2.weight",
    "ln_2.bias",
    "attn.time_bias",
    "attn.masked_bias",
)  # unused by the original forward
_TOP = {
    "positional_embedding.weight": "backbone.time_embed.weight",
    "channel_embedding.weight": "backbone.channel_embed.weight",
    "ln_f.weight": "backbone.norm.weight",
    "encoder.ln.weight": "segment_encoder.norm.weight",
    "encoder.proj.weight": "segment_encoder.proj.weight",
}


def _wave_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Collect ``WaveEncoder`` arguments (top-level or under ``wave_encoder_kwargs``)."""
    top = {k: kwargs[k] for k in ("size_input", "size_output", "wavelet") if k in kwargs}
    return top | dict(kwargs.get("wave_encoder_kwargs") or {})


@register_converter
class MVPFormerConverter(Converter):
    """``MVPFormerConfig(**kwargs)`` backbone plus the ``WaveEncoder`` segment encoder.

    ``kwargs`` are the config's arguments; the segment length comes from ``size_input`` (top level
    or under ``wave_encoder_kwargs``) or, when absent, from the ``encoder.ln.weight`` width.
    Keys may carry the ``mvpformer.`` prefix of ``HMVPFormer`` checkpoints. LoRA adapters
    (``lora_A``/``lora_B`` of ``q_attn`` and of the value half of ``c_attn``) are merged into the
    weights with scale ``lora_alpha / rank``. Unused tensors (``ln_2``, the ``time_bias``/``masked_bias``
    buffers) are dropped. Without ``encoder.*`` keys the segment encoder keeps its fresh initialisation
    (a warning says so).
    """

    name = "mvpformer"
    repo = "IBM/multi-variate-parallel-transformer"
    reference_class = "models/mvpformer.py:MVPFormerModel"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        wave = _wave_kwargs(kwargs)
        if str(wave.get("wavelet", "db4")) != "db4":
            raise ValueError(
                f"MVPFormer converter: wavelet={wave['wavelet']!r} is not supported (only 'db4')"
            )
        n_embd = int(kwargs.get("n_embd", 768))
        if int(wave.get("size_output", n_embd)) != n_embd:
            raise ValueError(
                f"MVPFormer converter: WaveEncoder size_output={wave['size_output']} != n_embd={n_embd}"
            )
        n_head = int(kwargs.get("n_head", 12))
        return create_encoder(
            "mvpformer_s",
            segment_samples=int(wave.get("size_input", 2560)),
            embed_dim=n_embd,
            depth=int(kwargs.get("n_layer", 12)),
            num_heads=n_head,
            num_kv_heads=int(kwargs.get("n_head_kv", n_head)),
            mlp_hidden=int(kwargs.get("n_inner") or 2048),
            n_positions=int(kwargs.get("n_positions", 100)),
            n_channels=int(kwargs.get("n_channels", 128)),
            window=10,
            content=bool(kwargs.get("global_att", True)),
            scale_attn=bool(kwargs.get("scale_attn_weights", True)),
            scale_by_layer=bool(kwargs.get("scale_attn_by_inverse_layer_idx", False)),
            norm_eps=float(kwargs.get("layer_norm_epsilon", 1e-5)),
            drop_rate=float(kwargs.get("resid_pdrop", 0.1)),
            attn_drop_rate=float(kwargs.get("attn_pdrop", 0.1)),
        )

    def load(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> nn.Module:
        state = {k.removeprefix("mvpformer."): v for k, v in state.items()}
        kwargs = dict(kwargs)
        if "size_input" not in _wave_kwargs(kwargs) and "encoder.ln.weight" in state:
            kwargs["size_input"] = segment_samples_for_coeffs(state["encoder.ln.weight"].numel())
        if any(k.startswith("encoder.") for k in state):
            return super().load(state, kwargs)
        warnings.warn(
            "MVPFormer checkpoint has no segment-encoder ('encoder.*') weights; it keeps its initialisation",
            stacklevel=2,
        )
        model = self.build(kwargs)
        fresh = {k: v for k, v in model.state_dict().items() if k.startswith("segment_encoder.")}
        missing, unexpected = model.load_state_dict(
            self.convert_state_dict(state, kwargs) | fresh, strict=False
        )
        if missing or unexpected:
            raise ValueError(
                f"mvpformer converter: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        return model.eval()

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        n_embd = int(kwargs.get("n_embd", 768))
        n_head = int(kwargs.get("n_head", 12))
        n_kv = int(kwargs.get("n_head_kv", n_head))
        head_dim = n_embd // n_head
        lora_scale = float(kwargs.get("lora_alpha", 16))
        state = {k.removeprefix("mvpformer."): v for k, v in state.items()}
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if key in _TOP:
                out[_TOP[key]] = val
                continue
            m = _BLOCK_KEY.fullmatch(key)
            if m is None:
                raise ValueError(
                    f"MVPFormer checkpoint key {key!r} is not part of MVPFormerModel/WaveEncoder"
                )
            i, rest = m.groups()
            pre = f"backbone.blocks.{i}."
            parts = rest.split(".")
            if rest in _DROPPED or "lora_" in rest:
                continue
            if rest == "ln_1.weight":
                out[pre + "norm.weight"] = val
            elif parts[0] == "attn" and parts[1] in _ATTN and parts[2:] == ["weight"]:
                weight = val
                if parts[1] in ("q_attn", "c_attn") and f"h.{i}.attn.{parts[1]}.lora_A" in state:
                    a, b = state[f"h.{i}.attn.{parts[1]}.lora_A"], state[f"h.{i}.attn.{parts[1]}.lora_B"]
                    delta = (b @ a) * (lora_scale / a.shape[0])
                    weight = val.clone()
                    weight[-delta.shape[0] :] += delta  # c_attn adapts only its value half
                out[pre + f"attn.{_ATTN[parts[1]]}.weight"] = weight
            elif rest == "attn.attn_bias":
                u, v, z = val.reshape(3, n_kv, head_dim).unbind(0)
                if bool(kwargs.get("global_att", True)):
                    out[pre + "attn.content_bias"] = u
                out[pre + "attn.time_bias"] = v
                out[pre + "attn.chan_bias"] = z
            elif parts[0] == "mlp" and parts[1] in _MLP and parts[2:] == ["weight"]:
                out[pre + f"mlp.{_MLP[parts[1]]}.weight"] = val
            else:
                raise ValueError(f"MVPFormer checkpoint key {key!r} is not part of MVPFormerModel")
        return out

    def run(
        self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        if not isinstance(model, MVPFormer):
            raise TypeError(f"MVPFormer converter runs an MVPFormer, got {type(model).__name__}")
        outs: dict[str, Tensor] = {}
        if "inputs_embeds" in inputs:
            outs["last_hidden_state"] = model.backbone(inputs["inputs_embeds"])
        if "segments" in inputs:
            outs["segment_embedding"] = model.segment_encoder(inputs["segments"])
        return outs
