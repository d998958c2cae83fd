"""NikolaiKyhne/MambAttention ``models/generator.py:MambAttention(cfg)`` -> :class:`MambAttention`.

The original takes ``cfg = {"model_cfg": {...}, "stft_cfg": {...}}``. Key names are the
original's except ``TFMambAttention.<i>.`` -> ``blocks.<i>.`` and the attention's
``nn.MultiheadAttention`` names (``in_proj_weight`` / ``in_proj_bias`` / ``out_proj``) ->
``qkv.weight`` / ``qkv.bias`` / ``proj`` (:class:`chanformer.nn.attention.MultiHeadSelfAttention`);
the Mamba parameters keep mamba-ssm's names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.encoders.mambattention import MambAttention
from chanformer.hub.converters import Converter, register_converter

__all__ = ["MambAttentionConverter"]

_ATTN = {  # nn.MultiheadAttention -> MultiHeadSelfAttention
    "in_proj_weight": "qkv.weight",
    "in_proj_bias": "qkv.bias",
    "out_proj.weight": "proj.weight",
    "out_proj.bias": "proj.bias",
}

_MIXER = (
    r"mixer\.(in_proj\.(weight|bias)|conv1d\.(weight|bias)|x_proj\.weight|dt_proj\.(weight|bias)|A_log|D|out_proj\.(weight|bias))"
)
_MAMBA = rf"(forward|backward)_blocks\.\d+\.(norm\.weight|{_MIXER})"
_KEYS = re.compile(
    r"(dense_encoder|mask_decoder|phase_decoder)\..+"
    rf"|TFMambAttention\.\d+\.((time|freq)_mamba\.{_MAMBA}"
    r"|attention\.(layernorm\.(weight|bias)|attn\.(in_proj_weight|in_proj_bias|out_proj\.(weight|bias)))"
    r"|[tf]linear\.(weight|bias))"
)


def _cfg(kwargs: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    cfg = kwargs.get("cfg", kwargs)
    if "model_cfg" not in cfg or "stft_cfg" not in cfg:
        raise ValueError("MambAttention constructor_kwargs need cfg = {'model_cfg': {...}, 'stft_cfg': {...}}")
    return cfg["model_cfg"], cfg["stft_cfg"]


def _norm_factor(wav: Tensor) -> Tensor:
    return torch.sqrt(wav.shape[-1] / wav.pow(2).sum(-1, keepdim=True))


@register_converter
class MambAttentionConverter(Converter):
    name = "mambattention"
    repo = "NikolaiKyhne/MambAttention"
    reference_class = "models/generator.py:MambAttention"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        model_cfg, stft_cfg = _cfg(kwargs)
        missing = [k for k in ("hid_feature", "d_state", "d_conv", "expand") if k not in model_cfg]
        missing += [f"stft_cfg.{k}" for k in ("n_fft", "hop_size", "win_size") if k not in stft_cfg]
        if missing:
            raise ValueError(f"MambAttention cfg is missing {missing}")
        if int(model_cfg.get("input_channel", 2)) != 2:
            raise ValueError(
                f"MambAttention model_cfg.input_channel={model_cfg['input_channel']}: the model takes "
                "[magnitude; phase], i.e. 2 channels"
            )
        if int(model_cfg.get("output_channel", 1)) != 1:
            raise ValueError(
                f"MambAttention model_cfg.output_channel={model_cfg['output_channel']}: only 1 is valid "
                "(the mask decoder squeezes a single output channel)"
            )
        blocks = model_cfg.get("num_tfmamba")
        return MambAttention(
            hid_feature=int(model_cfg["hid_feature"]),
            num_tfmamba=4 if blocks is None else int(blocks),
            d_state=int(model_cfg["d_state"]),
            d_conv=int(model_cfg["d_conv"]),
            expand=model_cfg["expand"],
            norm_epsilon=float(model_cfg.get("norm_epsilon", 1e-5)),
            beta=float(model_cfg.get("beta", 2.0)),
            compress_factor=float(model_cfg.get("compress_factor", 0.3)),
            n_fft=int(stft_cfg["n_fft"]),
            hop_size=int(stft_cfg["hop_size"]),
            win_size=int(stft_cfg["win_size"]),
            sampling_rate=int(stft_cfg.get("sampling_rate", 16000)),
        )

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for key, val in state.items():
            if not _KEYS.fullmatch(key):
                raise ValueError(f"MambAttention checkpoint key {key!r} is not part of the MambAttention generator")
            key = re.sub(r"^TFMambAttention\.", "blocks.", key)
            head, sep, tail = key.partition(".attention.attn.")
            out[head + sep + _ATTN[tail] if sep else key] = val
        return out

    def run(self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]) -> dict[str, Tensor]:
        if not isinstance(model, MambAttention):
            raise TypeError(f"MambAttention converter runs a MambAttention, got {type(model).__name__}")
        wav = inputs["noisy_wav"]
        norm = _norm_factor(wav)
        mag, pha, _ = model.stft(wav * norm)
        den_mag, den_pha, den_com = model.forward_spectrum(mag, pha)  # type: ignore[operator]
        return {
            "noisy_mag": mag,
            "noisy_pha": pha,
            "denoised_mag": den_mag,
            "denoised_pha": den_pha,
            "denoised_com": den_com,
            "denoised_wav": model.istft(den_mag, den_pha, wav.shape[-1]) / norm,
        }
