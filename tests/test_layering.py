"""Import layering: every module imports only from its own layer and the layers below it.

The layers and rules are documented in docs/architecture.md. Function-local imports count too:
a late import that dodges a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"chanformer": ROOT / "chanformer", "chanformer.datasets": ROOT / "datasets",
           "chanformer.kernels": ROOT / "kernels", "chanformer.cli": ROOT / "cli"}  # fmt: skip

LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("chanformer.channels", "chanformer.batch", "chanformer.spec", "chanformer.io", "chanformer.registry",
             "chanformer.remap", "chanformer.checkpoint", "chanformer.transforms", "chanformer.recipes", "chanformer.contract",
             "chanformer.provenance"),
    "kernels": ("chanformer.kernels",),
    "nn": ("chanformer.nn",),
    "datasets": ("chanformer.datasets",),
    "models": ("chanformer.encoders", "chanformer.mil", "chanformer.forecasting"),
    "hub": ("chanformer.hub",),
    "tasks": ("chanformer.tasks", "chanformer.pipelines", "chanformer.eval", "chanformer.importance", "chanformer.viz",
              "chanformer.callbacks", "chanformer.estimators", "chanformer.export"),
    "cli": ("chanformer.cli",),
}  # fmt: skip
ORDER = list(LAYERS)
MAY_IMPORT = {name: set(ORDER[: i + 1]) for i, name in enumerate(ORDER)}
MAY_IMPORT["datasets"] = {"core", "datasets"}
MAY_IMPORT["models"] = {"core", "kernels", "nn", "models"}


def _module_name(path: Path) -> str:
    for pkg, folder in sorted(FOLDERS.items(), key=lambda kv: -len(kv[0])):
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([pkg, *parts])
    raise AssertionError(path)


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), name)
    return None if best is None else best[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder in FOLDERS.values():
        for path in sorted(folder.rglob("*.py")):
            name = _module_name(path)
            if name != "chanformer":  # the facade re-exports the public API
                out.append((name, path))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m == "chanformer" or m.startswith("chanformer.")]


def test_every_module_has_a_layer():
    assert [name for name, _ in _modules() if layer_of(name) is None] == []


@pytest.mark.parametrize(("name", "path"), _modules(), ids=[n for n, _ in _modules()])
def test_no_upward_import(name, path):
    mine = layer_of(name)
    bad = []
    for line, target in _imports(path):
        if target == "chanformer":
            bad.append(f"line {line}: the facade `chanformer` (import the defining module)")
            continue
        theirs = layer_of(target)
        if theirs is not None and theirs not in MAY_IMPORT[mine]:  # type: ignore[index]
            bad.append(f"line {line}: {target} ({theirs})")
    assert not bad, f"{name} ({mine}) imports upward: {bad}"


def test_the_rules_catch_an_upward_import(tmp_path):
    """The checker itself: a datasets module importing an encoder is flagged."""
    fake = tmp_path / "reader.py"
    fake.write_text("def f():\n    from chanformer.encoders import create_encoder\n")
    targets = [layer_of(t) for _, t in _imports(fake)]
    assert targets == ["models"] and "models" not in MAY_IMPORT["datasets"]


# -- chanformer.datasets: one subpackage per field -----------------------------------------------------------------
DATASET_FIELDS = {"timeseries", "eeg", "imaging", "speech", "wsi"}
DATASET_SHARED = {"__init__", "base", "xarray_io"}  # package facade, generic datamodule base, storage for any field


def test_datasets_are_grouped_by_field():
    folder = FOLDERS["chanformer.datasets"]
    loose = sorted(p.name for p in folder.glob("*.py") if p.stem not in DATASET_SHARED)
    assert loose == [], f"datasets/ holds modules outside a field subpackage: {loose}"
    fields = {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert fields == DATASET_FIELDS


def test_datasets_list_each_public_name_once_with_its_defining_module():
    import importlib

    import chanformer.datasets as ds

    listed = [name for names in ds._MODULES.values() for name in names]
    assert len(listed) == len(set(listed)), "a name is listed under two modules"
    assert ds.__all__ == sorted(listed)
    for name, module in ds._EXPORTS.items():
        value = getattr(importlib.import_module(f"chanformer.datasets.{module}"), name)
        defined_in = getattr(value, "__module__", None)
        if callable(value) and defined_in is not None:
            assert defined_in == f"chanformer.datasets.{module}", f"{name}: listed under {module}, defined in {defined_in}"
        assert getattr(ds, name) is value
