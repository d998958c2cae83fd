"""Encoder variants in the core registry (:mod:`chanformer.registry`), ``create_encoder`` as the single entry."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, TypeVar

from chanformer.encoders.base import Encoder
from chanformer.registry import lookup, names, register, register_spec
from chanformer.spec import DataSpec

__all__ = ["create_encoder", "encoder_class", "encoder_entrypoint", "list_encoders", "register_encoder"]

F = TypeVar("F", bound=Callable[..., Encoder])


def register_encoder(fn: F) -> F:
    """Decorator: register ``fn`` (a builder returning an :class:`Encoder`) under its name, family ``"encoder"``."""
    register("model", fn.__name__, fn, "encoder")
    return fn


def list_encoders(pattern: str = "*") -> list[str]:
    """Sorted names of registered encoders, optionally filtered by a glob ``pattern``."""
    return names("model", pattern, family="encoder")


def encoder_entrypoint(name: str) -> Callable[..., Encoder]:
    """The builder registered as encoder ``name``."""
    try:
        return lookup("model", name, family="encoder")  # type: ignore[no-any-return]
    except ValueError as e:
        raise ValueError(f"{e} (`chanformer encoders` lists them)") from None


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
        kwargs = encoder_class(name).data_kwargs(data_spec, kwargs) | kwargs
    model = encoder_entrypoint(name)(**kwargs)
    model.encoder_name = name
    model.encoder_kwargs = kwargs
    if data_spec is not None and model.vocab is None:
        model.vocab = data_spec.vocab
    return model


@register_spec("encoder")
def _build_encoder(spec: dict[str, Any]) -> Encoder:
    """Rebuild a saved encoder from its spec ``{"kind": "encoder", "name", "kwargs"}``."""
    return create_encoder(spec["name"], **spec.get("kwargs", {}))
