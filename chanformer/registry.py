"""The one registry: every model variant, pretrained-spec builder and checkpoint converter by name.

Three tables share one mechanism (duplicate check, module -> names map, glob listing):

* ``"model"``: builders of model variants (``softs_small``, ``acmil``, ``mambattention_test``),
  each with a ``family`` (``"encoder"``, ``"mil"``, ``"enhancement"``); :func:`create_model`;
* ``"spec"``: functions rebuilding a saved model from its JSON spec (``kind`` in ``config.json``);
* ``"converter"``: converters from original implementations' checkpoints.

The registry lives in the core layer and imports no model: the modules that register
themselves are listed by name in :data:`PROVIDERS` and imported on the first look-up, so a fresh
process finds every model without the caller importing its family first.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "PROVIDERS",
    "RegistryEntry",
    "create_model",
    "list_models",
    "lookup",
    "model_family",
    "modules",
    "names",
    "register",
    "register_model",
    "register_spec",
]

#: Modules whose import registers models, spec builders and converters (in import order).
PROVIDERS: tuple[str, ...] = (
    "chanformer.encoders.softs",
    "chanformer.encoders.gat",
    "chanformer.encoders.channelvit",
    "chanformer.encoders.chadavit",
    "chanformer.encoders.dbconformer",
    "chanformer.encoders.mvpformer",
    "chanformer.encoders.ecapa_tdnn",
    "chanformer.encoders.mambattention",
    "chanformer.encoders._registry",
    "chanformer.forecasting",
    "chanformer.mil.acmil",
    "chanformer.mil.meanpool",
    "chanformer.nn.gaam",
    "chanformer.hub.converters.softs",
    "chanformer.hub.converters.acmil",
    "chanformer.hub.converters.chadavit",
    "chanformer.hub.converters.channelvit",
    "chanformer.hub.converters.dbconformer",
    "chanformer.hub.converters.gaam",
    "chanformer.hub.converters.mvpformer",
    "chanformer.hub.converters.ecapa_tdnn",
    "chanformer.hub.converters.mambattention",
)

TABLES = ("model", "spec", "converter")


@dataclass(frozen=True)
class RegistryEntry:
    """One registered object: its table, name, the object, its family (models) and module."""

    table: str
    name: str
    obj: Any
    family: str
    module: str


_ENTRIES: dict[tuple[str, str], RegistryEntry] = {}
_loaded = False
F = TypeVar("F", bound=Callable[..., Any])


def register(table: str, name: str, obj: Any, family: str = "") -> Any:
    """Add ``obj`` under ``(table, name)``; a second registration of the same name is an error."""
    if table not in TABLES:
        raise ValueError(f"register(table={table!r}): expected one of {TABLES}")
    key = (table, name)
    module = getattr(obj, "__module__", "") or ""
    if key in _ENTRIES and _ENTRIES[key].obj is not obj:
        raise ValueError(f"{table} {name!r} is registered twice (by {_ENTRIES[key].module} and {module})")
    _ENTRIES[key] = RegistryEntry(table, name, obj, family, module)
    return obj


def register_model(family: str, name: str | None = None) -> Callable[[F], F]:
    """Decorator: register a builder of one model variant (``name`` defaults to the function's)."""

    def deco(fn: F) -> F:
        register("model", name or fn.__name__, fn, family)
        return fn

    return deco


def register_spec(kind: str) -> Callable[[F], F]:
    """Decorator: register ``fn(spec) -> module`` rebuilding saved models whose spec ``kind`` is ``kind``."""

    def deco(fn: F) -> F:
        register("spec", kind, fn)
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True  # before importing: a provider may look something up while it loads
        try:
            for mod in PROVIDERS:
                importlib.import_module(mod)
        except BaseException:
            _loaded = False
            raise


def names(table: str, pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names in ``table`` matching the glob ``pattern`` (and ``family`` for models)."""
    _load()
    return sorted(
        e.name
        for e in _ENTRIES.values()
        if e.table == table and fnmatch.fnmatch(e.name, pattern) and (family is None or e.family == family)
    )


def lookup(table: str, name: str, family: str | None = None) -> Any:
    """The object registered as ``name``; an unknown name lists close matches."""
    _load()
    entry = _ENTRIES.get((table, name))
    if entry is None or (family is not None and entry.family != family):
        pool = names(table, family=family)
        close = fnmatch.filter(pool, f"*{name.split('_')[0]}*")
        hint = f"; did you mean one of {close}?" if close else f"; known: {pool}"
        what = family or table
        raise ValueError(f"unknown {what} name {name!r}{hint}")
    return entry.obj


def model_family(name: str) -> str:
    """The family (``"encoder"``, ``"mil"``, ``"enhancement"``) of registered model ``name``."""
    lookup("model", name)
    return _ENTRIES[("model", name)].family


def list_models(family: str | None = None, pattern: str = "*") -> list[str]:
    """Registered model variants, optionally of one family and matching a glob."""
    return names("model", pattern, family)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build registered model variant ``name`` with ``kwargs`` overriding its defaults."""
    return lookup("model", name)(**kwargs)


def modules() -> dict[str, list[str]]:
    """Module -> ``table:name`` entries it registered (which file provides what)."""
    _load()
    out: dict[str, list[str]] = {}
    for e in sorted(_ENTRIES.values(), key=lambda e: (e.module, e.table, e.name)):
        out.setdefault(e.module, []).append(f"{e.table}:{e.name}")
    return out
