"""Encoder registry: one small builder per variant, ``create_encoder`` as the single entry."""

from __future__ import annotations

import fnmatch
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from chanformer.encoders.base import Encoder
from chanformer.spec import DataSpec

__all__ = ["create_encoder", "encoder_class", "encoder_entrypoint", "list_encoders", "register_encoder"]

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


def encoder_class(name: str) -> type[Encoder]:
    """The :class:`Encoder` subclass a registered builder returns (from its return annotation)."""
    fn = encoder_entrypoint(name)
    cls = typing.get_type_hints(fn).get("return")
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise TypeError(f"encoder builder {name!r} must be annotated to return an Encoder subclass")
    return cls


def create_encoder(name: str, data_spec: DataSpec | None = None, **overrides: Any) -> Encoder:
    """Build a registered encoder; ``overrides`` replace the variant's default arguments.

    With ``data_spec``, constructor arguments the encoder declares in ``data_args`` (e.g. its
    input length) are filled from the data unless given in ``overrides``. The name and the
    final arguments are recorded on the model (``encoder_name``, ``encoder_kwargs``) so that
    :func:`chanformer.hub.save_pretrained` can rebuild it without pickling.
    """
    kwargs = dict(overrides)
    if data_spec is not None:
        kwargs = data_spec.encoder_kwargs(encoder_class(name).data_args) | kwargs
    model = encoder_entrypoint(name)(**kwargs)
    model.encoder_name = name
    model.encoder_kwargs = kwargs
    if data_spec is not None and model.vocab is None:
        model.vocab = data_spec.vocab
    return model


def _import_all() -> None:
    # Importing the package registers every encoder module's builders.
    import chanformer.encoders  # noqa: F401
