"""Converters from original implementations' checkpoints to chanformer models.

Each converter knows one original class (repository + ``path.py:Class``), builds OUR model
from the original's constructor arguments (any valid configuration, not one size), renames
the original state dict onto ours, and runs a reference fixture's inputs through our model.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from chanformer.registry import lookup, names, register

__all__ = ["Converter", "find_converter", "get_converter", "list_converters", "register_converter"]



class Converter(abc.ABC):
    """Maps one original implementation onto a chanformer model."""

    #: Short name used on the command line (``chanformer reference convert --converter NAME``).
    name: str
    #: ``owner/repo`` of the original implementation.
    repo: str
    #: ``path/to/file.py:Class`` of the original class.
    reference_class: str

    @abc.abstractmethod
    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        """Our model for the original's constructor arguments ``kwargs`` (as in fixture.json)."""

    @abc.abstractmethod
    def convert_state_dict(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Rename/reshape the original's ``state_dict`` into ours."""

    @abc.abstractmethod
    def run(self, model: nn.Module, inputs: Mapping[str, Tensor], fixture: Mapping[str, Any]) -> dict[str, Tensor]:
        """Feed a fixture's inputs (names without ``input.``) and return outputs by fixture name."""

    def load(self, state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> nn.Module:
        """Build our model and load the converted original weights strictly."""
        model = self.build(kwargs)
        converted = self.convert_state_dict(state, kwargs)
        missing, unexpected = model.load_state_dict(converted, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{self.name} converter: checkpoint does not match the configuration: "
                f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        return model.eval()


def register_converter(cls: type[Converter]) -> type[Converter]:
    """Class decorator: register one instance of a :class:`Converter` subclass in the core registry."""
    inst = cls()
    register("converter", inst.name, inst)
    return cls


def list_converters() -> list[str]:
    return names("converter")


def get_converter(name: str) -> Converter:
    return lookup("converter", name)  # type: ignore[no-any-return]


def find_converter(fixture: Mapping[str, Any]) -> Converter:
    """The converter whose repository and class match a fixture.json's ``reference_*`` fields."""
    repo = fixture.get("reference_repo", "")
    cls = str(fixture.get("reference_class", "")).split(" ")[0]
    for name in names("converter"):
        conv: Converter = lookup("converter", name)
        if conv.repo.lower() == str(repo).lower() and conv.reference_class == cls:
            return conv
    raise ValueError(
        f"no converter for {repo} {cls} (model {fixture.get('model')!r}); converters: {names('converter')}"
    )
