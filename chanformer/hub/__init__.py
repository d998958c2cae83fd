"""Pretrained export/import, converters from original checkpoints, reference fixtures, model cards,
Hugging Face Hub ids."""

from chanformer.hub.card import ModelCard, read_model_card, render_model_card
from chanformer.hub.fixtures import check_reference_fixture, load_fixture, run_reference_fixture
from chanformer.hub.pretrained import (
    adapt_model_to_vocab,
    load_input_contract,
    load_pretrained,
    register_model_kind,
    save_pretrained,
    update_model_card,
)
from chanformer.hub.remote import is_hub_id, resolve_pretrained

__all__ = [
    "ModelCard",
    "adapt_model_to_vocab",
    "check_reference_fixture",
    "is_hub_id",
    "load_fixture",
    "load_input_contract",
    "load_pretrained",
    "read_model_card",
    "register_model_kind",
    "render_model_card",
    "resolve_pretrained",
    "run_reference_fixture",
    "save_pretrained",
    "update_model_card",
]
