"""Pretrained folders: ``config.json`` + ``model.safetensors`` (+ ``vocab.json``) + ``README.md``, never pickle.

``config.json`` also holds the model's input contract (:class:`~chanformer.contract.InputContract`:
the preprocessing it was trained with) and ``README.md`` is a model card with YAML front matter,
so a folder is Hugging Face Hub-compatible as it is (:mod:`chanformer.hub.remote`).

Any module that answers ``pretrained_spec() -> dict`` can be saved; the spec's ``kind`` names
a builder registered with :func:`register_model_kind` that rebuilds the module from JSON.
Encoders built with :func:`chanformer.create_encoder` are saved as kind ``"encoder"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from chanformer.channels import ChannelVocab
from chanformer.contract import InputContract
from chanformer.hub.card import ModelCard, read_model_card, render_model_card
from chanformer.hub.remote import resolve_pretrained
from chanformer.io import atomic_directory, write_text_atomic
from chanformer.nn.state_keys import upgrade_state_dict
from chanformer.registry import lookup, names, register_spec

__all__ = [
    "FORMAT_VERSION",
    "PretrainedFolderError",
    "PretrainedMismatchError",
    "adapt_model_to_vocab",
    "load_input_contract",
    "load_pretrained",
    "model_spec",
    "register_model_kind",
    "save_pretrained",
    "update_model_card",
]

FORMAT_VERSION = 1

#: Decorator registering ``fn(spec) -> module`` for pretrained specs of a kind
#: (an alias of :func:`chanformer.registry.register_spec`; models import it from the core).
register_model_kind = register_spec


def model_spec(model: nn.Module) -> dict[str, Any]:
    """JSON-able description from which :func:`build_from_spec` rebuilds ``model``
    (its ``pretrained_spec()``; encoders built with ``create_encoder`` have one)."""
    spec_fn = getattr(model, "pretrained_spec", None)
    if not callable(spec_fn):
        raise TypeError(
            f"save_pretrained(model=...): {type(model).__name__} has no pretrained_spec(); build encoders with "
            "chanformer.create_encoder(name, ...)"
        )
    return dict(spec_fn())


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its JSON spec through the registry's ``spec`` table."""
    kind = spec.get("kind")
    known = names("spec")
    if kind not in known:
        raise ValueError(f"unknown pretrained model kind {kind!r}; known kinds: {known}")
    return lookup("spec", str(kind))(spec)  # type: ignore[no-any-return]


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    vocab: ChannelVocab | None = None,
    input_contract: InputContract | None = None,
    card: ModelCard | str | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` to ``directory`` atomically (all files appear together, or none change).

    Files: ``config.json`` (spec, format version, the ``input_contract`` when given, ``extra``
    metadata), ``model.safetensors`` (the state dict, contiguous CPU tensors), ``vocab.json``
    when the model (or the ``vocab`` argument) has a channel vocabulary, and ``README.md``: the
    model card (``card``: a :class:`~chanformer.hub.card.ModelCard`, ready Markdown, or ``None``
    for a minimal card naming the model).
    """
    directory = Path(directory)
    vocab = vocab if vocab is not None else getattr(model, "vocab", None)
    spec = model_spec(model)
    config: dict[str, Any] = {"format_version": FORMAT_VERSION, "model": spec}
    if input_contract is not None:
        if not isinstance(input_contract, InputContract):
            got = type(input_contract).__name__
            raise TypeError(f"save_pretrained(input_contract=...): expected an InputContract, got {got}")
        config["input_contract"] = input_contract.to_json()
    config.update(extra)
    json.dumps(config)  # fail before touching the disk when metadata is not JSON-able
    if card is None:
        card = ModelCard(model=str(spec.get("name") or spec.get("kind") or type(model).__name__))
    if isinstance(card, ModelCard) and input_contract is not None and not card.contract_summary:
        card.contract_summary = input_contract.describe()
    readme = card if isinstance(card, str) else render_model_card(card)
    with atomic_directory(directory) as tmp:
        tmp.mkdir()
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(_untie(state), str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "README.md").write_text(readme)
        if vocab is not None:
            vocab.save(tmp / "vocab.json")
    return directory


def update_model_card(directory: str | os.PathLike[str], *, metrics: dict[str, float] | None = None) -> Path:
    """Merge ``metrics`` into the model card of a saved folder (atomically; the weights are untouched).

    Used after ``test`` runs that follow the export of ``fit``, so the card lists test metrics too.
    """
    path = Path(directory) / "README.md"
    front, _ = read_model_card(path.read_text()) if path.is_file() else ({}, "")
    known = {"model", "task", "training_data", "intended_use", "limitations", "license", "citation", "tags"}
    card = ModelCard(**{k: front[k] for k in known if k in front})
    card.tags = [t for t in card.tags if t not in ("chanformer", "channel-adaptive")]
    card.metrics = {**front.get("metrics", {}), **{k: float(v) for k, v in (metrics or {}).items()}}
    card.extra = {k: v for k, v in front.items() if k not in known | {"metrics", "library_name", "datasets"}}
    contract = load_input_contract(directory)
    if contract is not None:
        card.contract_summary = contract.describe()
    write_text_atomic(path, render_model_card(card))
    return path


def load_input_contract(directory: str | os.PathLike[str]) -> InputContract | None:
    """The input contract stored in a pretrained folder's ``config.json`` (``None`` if it has none)."""
    cfg_path = Path(directory) / "config.json"
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{cfg_path} is missing; is {directory} a chanformer pretrained folder?") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from None
    data = config.get("input_contract")
    if data is None:
        return None
    try:
        return InputContract.from_json(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: input_contract: {e}") from None


def load_pretrained(
    directory: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    vocab: ChannelVocab | None = None,
    strict: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained`; reads JSON and safetensors only.

    ``directory`` is a folder or a Hugging Face Hub id ``owner/name`` (``revision`` and
    ``cache_dir`` are passed to ``huggingface_hub.snapshot_download``; with ``HF_HUB_OFFLINE=1``
    only the local cache is read; see :func:`~chanformer.hub.remote.resolve_pretrained`). The
    stored input contract, if any, is attached as ``model.input_contract``.

    With ``vocab`` (the vocabulary of the data the model will see), every channel-indexed
    table is re-indexed by channel key onto it (:func:`adapt_model_to_vocab`): the same
    channels in another order give identical embeddings, channels the model never saw are
    initialised from metadata with a warning, or refused with ``strict=True``.
    """
    directory = resolve_pretrained(directory, revision=revision, cache_dir=cache_dir)
    cfg_path = directory / "config.json"
    weights = directory / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"load_pretrained(): {p} is missing; is {directory} a chanformer pretrained folder?")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainedFolderError(f"load_pretrained(): {cfg_path} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise PretrainedFolderError(f"{cfg_path}: expected a JSON object with a 'model' object (written by save_pretrained)")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise PretrainedFolderError(f"{cfg_path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise PretrainedFolderError(f"{cfg_path}: format_version {version} is newer than this chanformer "
                                    f"(reads up to {FORMAT_VERSION}); upgrade chanformer")  # fmt: skip
    try:
        model = build_from_spec(config["model"])
    except (TypeError, ValueError, KeyError) as e:
        raise PretrainedFolderError(f"{cfg_path}: cannot build the model it describes ({_one_line(e)})") from None
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise PretrainedFolderError(f"load_pretrained(): cannot read {weights}: {_one_line(e)}") from None
    state = upgrade_state_dict(model, state)  # folders saved before a module renamed its keys
    ours = model.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(ours[k].shape)}" for k, v in state.items()
              if k in ours and tuple(v.shape) != tuple(ours[k].shape)]  # fmt: skip
    missing = sorted(k for k in set(ours) - set(state) if k not in _tied_keys(model))
    unexpected = sorted(set(state) - set(ours))
    if missing or unexpected or shapes:
        raise PretrainedMismatchError(
            f"{weights} does not match the model in {cfg_path}: shapes (weights vs config) {shapes[:5]}, "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            + (" (first 5 of each)" if max(len(shapes), len(missing), len(unexpected)) > 5 else "")
        )
    model.load_state_dict(state, strict=False)
    if (directory / "vocab.json").is_file():
        try:
            saved = ChannelVocab.load(directory / "vocab.json")
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
            raise PretrainedFolderError(f"{directory / 'vocab.json'}: not a channel vocabulary ({_one_line(e)})") from None
        setattr(model, "vocab", saved)  # noqa: B010 (not an nn attribute)
        for module in model.modules():  # nested encoders (a forecaster's) index the same vocabulary
            if module is not model and getattr(module, "channel_table", None) is not None:
                setattr(module, "vocab", saved)  # noqa: B010
    contract = config.get("input_contract")
    try:
        setattr(model, "input_contract", None if contract is None else InputContract.from_json(contract))  # noqa: B010
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: input_contract: {e}") from None
    if vocab is not None:
        adapt_model_to_vocab(model, vocab, strict=strict, where=str(directory))
    return model.eval()


class PretrainedFolderError(ValueError):
    """A pretrained folder that cannot be read: its file and what is wrong are named."""


class PretrainedMismatchError(PretrainedFolderError):
    """``model.safetensors`` does not fit the model ``config.json`` describes (keys and shapes listed)."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def adapt_model_to_vocab(model: nn.Module, vocab: ChannelVocab, *, strict: bool = False, where: str = "") -> nn.Module:
    """Re-index every encoder inside ``model`` onto ``vocab`` by channel key (in place).

    Each :class:`~chanformer.encoders.Encoder` remaps its channel table
    (:meth:`~chanformer.encoders.Encoder.adapt_to_vocab`); fixed layouts check that ``vocab``
    holds their keys. Errors are :class:`~chanformer.remap.ChannelRemapError` naming the keys
    (and ``where`` the model came from).
    """
    from chanformer.remap import ChannelRemapError

    adapted = False
    for module in model.modules():
        adapt = getattr(module, "adapt_to_vocab", None)
        if callable(adapt):
            try:
                adapt(vocab, strict=strict)
            except ChannelRemapError as e:
                raise ChannelRemapError(f"{where}: {e}" if where else str(e)) from None
            adapted = True
    if adapted or getattr(model, "vocab", None) is not None:
        setattr(model, "vocab", vocab)  # noqa: B010
    return model


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Safetensors refuses shared storage; keep the first name of every shared tensor."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}  # (storage, offset, shape) -> first name
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), int(v.storage_offset()), tuple(int(d) for d in v.shape))
        if v.numel() and key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def _tied_keys(model: nn.Module) -> set[str]:
    state = model.state_dict()
    return set(state) - set(_untie(state))
