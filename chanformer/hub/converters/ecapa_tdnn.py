"""speechbrain/speechbrain ``speechbrain/lobes/models/ECAPA_TDNN.py:ECAPA_TDNN`` -> :class:`ECAPA_TDNN`.

SpeechBrain wraps ``nn.Conv1d``/``nn.BatchNorm1d`` in modules that hold them as ``.conv`` /
``.norm``, and its TDNN blocks hold those wrappers as ``.conv`` / ``.norm`` again, so its keys
double the names (``blocks.0.conv.conv.weight``, ``blocks.0.norm.norm.running_mean``,
``asp_bn.norm.weight``, ``fc.conv.weight``). Ours drop the wrapper level. The same layout is
used by the published VoxCeleb checkpoint's ``embedding_model.ckpt``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.checkpoint import load_checkpoint_file
from chanformer.encoders import create_encoder
from chanformer.encoders.ecapa_tdnn import ECAPA_TDNN, activation_name
from chanformer.hub.converters import Converter, get_converter, register_converter
from chanformer.transforms.audio import Fbank

__all__ = ["ECAPATDNNConverter", "fbank_from_frontend", "load_speechbrain_checkpoint", "speechbrain_key_to_ours"]

_P = r"(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
# TDNN blocks: the first block, the SE-Res2Net 1x1 TDNNs and Res2Net TDNNs, aggregation, pooling.
_TDNN = r"(blocks\.0|blocks\.\d+\.tdnn[12]|blocks\.\d+\.res2net_block\.blocks\.\d+|mfa|asp\.tdnn)"
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_TDNN}\.conv\.conv\.{_P}"), r"\1.conv.\2"),
    (re.compile(rf"{_TDNN}\.norm\.norm\.{_BN}"), r"\1.norm.\2"),
    (re.compile(rf"(blocks\.\d+\.se_block\.conv[12])\.conv\.{_P}"), r"\1.\2"),
    (re.compile(rf"(blocks\.\d+\.shortcut)\.conv\.{_P}"), r"\1.\2"),
    (re.compile(rf"asp\.conv\.conv\.{_P}"), r"asp.conv.\1"),
    (re.compile(rf"asp_bn\.norm\.{_BN}"), r"asp_bn.\1"),
    (re.compile(rf"fc\.conv\.{_P}"), r"fc.\1"),
]
_MODEL_ARGS = (
    "input_size",
    "channels",
    "kernel_sizes",
    "dilations",
    "attention_channels",
    "res2net_scale",
    "se_channels",
    "lin_neurons",
    "global_context",
    "groups",
    "activation",
    "dropout",
)
_SB_DEFAULTS: dict[str, Any] = {
    "channels": [512, 512, 512, 512, 1536],
    "kernel_sizes": [5, 3, 3, 3, 1],
    "dilations": [1, 2, 3, 4, 1],
    "attention_channels": 128,
    "res2net_scale": 8,
    "se_channels": 128,
    "lin_neurons": 192,
    "global_context": True,
}


def speechbrain_key_to_ours(key: str) -> str:
    """Rename one SpeechBrain ECAPA-TDNN state-dict key; ``ValueError`` for foreign keys."""
    for pattern, repl in _RULES:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key)
    raise ValueError(f"ECAPA-TDNN checkpoint key {key!r} is not part of SpeechBrain's ECAPA_TDNN")


@register_converter
class ECAPATDNNConverter(Converter):
    name = "ecapa_tdnn"
    repo = "speechbrain/speechbrain"
    reference_class = "speechbrain/lobes/models/ECAPA_TDNN.py:ECAPA_TDNN"

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        if "input_size" not in kwargs:
            raise ValueError("ECAPA_TDNN constructor_kwargs need 'input_size' (the number of mel bins)")
        unknown = sorted(set(kwargs) - set(_MODEL_ARGS) - {"device"})
        if unknown:
            raise ValueError(f"ECAPA_TDNN constructor_kwargs has unknown arguments {unknown}")
        cfg = _SB_DEFAULTS | {k: v for k, v in kwargs.items() if k in _MODEL_ARGS}
        cfg["input_size"] = int(cfg["input_size"])
        if "activation" in cfg:  # SpeechBrain passes a class; keep the JSON-able name
            cfg["activation"] = activation_name(cfg["activation"])
        return create_encoder("ecapa_tdnn", **cfg)

    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        out = {speechbrain_key_to_ours(k): v for k, v in state.items()}
        for key in list(out):  # checkpoints saved without BatchNorm step counters
            if key.endswith("running_mean"):
                out.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
        return out

    def run(self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]) -> dict[str, Tensor]:
        if not isinstance(model, ECAPA_TDNN):
            raise TypeError(f"ECAPA-TDNN converter runs an ECAPA_TDNN, got {type(model).__name__}")
        outs: dict[str, Tensor] = {}
        if "x" in inputs:  # SpeechBrain layout [B, T, F]
            # The tensor helper, not the batch: the fixture's frames past each length hold random
            # values that SpeechBrain's convolutions see; a ChannelBatch zeroes them (as SpeechBrain's
            # own zero-padding collate would), which is the package's padding contract.
            outs["embedding"] = model.embed(inputs["x"].transpose(1, 2), inputs.get("lengths"))[:, None]
        if "wav" in inputs:
            fbank = fbank_from_frontend(fixture.get("frontend", {}), model.input_size)(inputs["wav"])
            outs["fbank"] = fbank
            ones = torch.ones(fbank.shape[0], dtype=fbank.dtype)
            outs["fbank_embedding"] = model(model.batch_from_features(fbank.transpose(1, 2), ones))[:, None]
        return outs


def fbank_from_frontend(frontend: Mapping[str, Any], n_mels: int) -> Fbank:
    """:class:`Fbank` from a fixture's SpeechBrain ``Fbank`` description (``{"kwargs": {...}}``)."""
    kw = dict(frontend.get("kwargs", {}))
    for flag in ("deltas", "context"):
        if kw.get(flag):
            raise ValueError(f"SpeechBrain Fbank({flag}=True) is not supported")
    if kw.get("filter_shape", "triangular") != "triangular":
        raise ValueError(f"SpeechBrain Fbank(filter_shape={kw['filter_shape']!r}): only 'triangular' is supported")
    return Fbank(
        sample_rate=int(kw.get("sample_rate", frontend.get("sample_rate", 16000))),
        n_fft=int(kw.get("n_fft", 400)),
        n_mels=int(kw.get("n_mels", n_mels)),
        win_length_ms=float(kw.get("win_length", 25)),
        hop_length_ms=float(kw.get("hop_length", 10)),
        f_min=float(kw.get("f_min", 0.0)),
        f_max=None if kw.get("f_max") is None else float(kw["f_max"]),
    )


def load_speechbrain_checkpoint(path: str | os.PathLike[str], **config: Any) -> ECAPA_TDNN:
    """Load SpeechBrain's ``embedding_model.ckpt`` (tensors only, ``weights_only=True``).

    ``config`` holds SpeechBrain's ``ECAPA_TDNN`` constructor arguments (default: the
    VoxCeleb model, i.e. :func:`ecapa_tdnn`); keys are renamed by the ``ecapa_tdnn``
    converter and loaded strictly. Returns the model in eval mode.
    """
    # Local files only (URLs refused), tensors-only unpickling; errors name the file.
    state = load_checkpoint_file(path, "SpeechBrain checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    defaults = {"input_size": 80, "channels": [1024, 1024, 1024, 1024, 3072], "lin_neurons": 192}
    model = get_converter("ecapa_tdnn").load(state, defaults | config)
    return model  # type: ignore[return-value]
