"""Encoder registry: one small builder per variant, ``create_encoder`` as the single entry."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from chanformer.encoders.base import Encoder

__all__ = ["create_encoder", "encoder_entrypoint", "list_encoders", "register_encoder"]

_BUILDERS: dict[str, Callable[..., Encoder]] = {}
F = TypeVar("F", bound=Callable[..., Encoder])


def register_encoder(fn: F) -> F:
    """Decorator: register ``fn`` (a builder returning an :class:`Encoder`) under its name."""
    name = fn.__name__
    if name in _BUILDERS:
        raise ValueError(f"encoder {name!r} is registered twice")
    _BUILDERS[name] = fn
    return fn


def list_encoders(pattern: str = "*") -> list[str]:
    """Sorted names of registered encoders, optionally filtered by a glob ``pattern``."""
    _import_all()
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))


def encoder_entrypoint(name: str) -> Callable[..., Encoder]:
    _import_all()
    try:
        return _BUILDERS[name]
    except KeyError:
        close = fnmatch.filter(_BUILDERS, f"*{name.split('_')[0]}*")
        hint = f"; did you mean one of {close}?" if close else ""
        raise ValueError(
            f"unknown encoder name {name!r}{hint} (`chanformer encoders` lists all {len(_BUILDERS)})"
        ) from None


def create_encoder(name: str, **overrides: Any) -> Encoder:
    """Build a registered encoder; ``overrides`` replace the variant's default arguments.

    The name and overrides are recorded on the model (``encoder_name``, ``encoder_kwargs``)
    so that :func:`chanformer.hub.save_pretrained` can rebuild it without pickling.
    """
    model = encoder_entrypoint(name)(**overrides)
    model.encoder_name = name
    model.encoder_kwargs = dict(overrides)
    return model


def _import_all() -> None:
    # Importing the package registers every encoder module's builders.
    import chanformer.encoders  # noqa: F401
