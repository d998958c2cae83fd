"""Pretrained export/import, converters from original checkpoints, reference fixtures."""

from chanformer.hub.fixtures import check_reference_fixture, load_fixture, run_reference_fixture
from chanformer.hub.pretrained import adapt_model_to_vocab, load_pretrained, register_model_kind, save_pretrained

__all__ = [
    "adapt_model_to_vocab",
    "check_reference_fixture",
    "load_fixture",
    "load_pretrained",
    "register_model_kind",
    "run_reference_fixture",
    "save_pretrained",
]
