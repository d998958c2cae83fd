"""The kernel layout and its import rules, checked on the source with ``ast`` (nothing is imported).

* ``kernels/`` (``chanformer.kernels``) imports nothing from the rest of chanformer (not ``nn``,
  encoders, hub, tasks): blocks import kernels, never the reverse;
* ``chanformer/nn`` reaches kernels only through module-level imports of the op packages' dispatch
  functions: no function-local ``chanformer.kernels`` import, no backend decision (``config``);
* every op package ``kernels/<op>/`` holds ``reference.py``, ``triton.py``, ``autograd.py``, a
  ``README.md`` and one dispatch function named ``<op>`` in its ``__init__``; only ``triton.py``
  imports triton at module level (``TRITON_INTERPRET`` is read when triton is imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
NN = ROOT / "chanformer" / "nn"
OPS = ("mvpa", "ragged_attention", "selective_scan")


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    """Every absolute import in ``tree`` as ``(statement, module)``; ``from a import b`` also yields ``a.b``."""
    found: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import at line {node.lineno}: write the absolute chanformer.* name"
            found.append((node, node.module or ""))
            found += [(node, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _module_level(tree: ast.Module) -> set[int]:
    """ids of the import statements at module level (also inside a module-level ``if``/``try``)."""
    top: set[int] = set()
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            top.add(id(node))
        elif isinstance(node, ast.If | ast.Try):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]
    return top


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_the_folders_exist():
    assert _modules(KERNELS) and _modules(NN)


@pytest.mark.parametrize("path", _modules(KERNELS), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernels_import_only_kernels(path):
    for node, name in _imports(_parse(path)):
        if name == "chanformer" or name.startswith("chanformer."):
            assert name.startswith("chanformer.kernels"), f"{path.name}:{node.lineno} imports {name}"


@pytest.mark.parametrize("path", _modules(NN), ids=lambda p: str(p.relative_to(ROOT)))
def test_nn_calls_kernels_through_module_level_dispatch_imports(path):
    tree = _parse(path)
    top = _module_level(tree)
    for node, name in _imports(tree):
        if not name.startswith("chanformer.kernels"):
            continue
        assert id(node) in top, f"{path.name}:{node.lineno}: function-local import of {name}"
        assert not name.startswith("chanformer.kernels.config"), f"{path.name}:{node.lineno}: nn decides no backend ({name})"
        assert name.split(".")[-1] not in {"use_triton", "backend", "interpreting"}, f"{path.name}:{node.lineno}: {name}"


def test_every_op_folder_is_listed():
    folders = {p.name for p in KERNELS.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(OPS)


@pytest.mark.parametrize("op", OPS)
def test_op_package_has_reference_triton_autograd_and_one_dispatch(op):
    folder = KERNELS / op
    for name in ("__init__.py", "reference.py", "triton.py", "autograd.py", "README.md"):
        assert (folder / name).is_file(), f"kernels/{op}/{name} is missing"
    init = _parse(folder / "__init__.py")
    functions = [n.name for n in init.body if isinstance(n, ast.FunctionDef)]
    assert functions == [op], f"kernels/{op}/__init__.py must define exactly one function, the dispatch {op}()"
    exported = next(n.value for n in init.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "__all__")
    assert op in ast.literal_eval(exported)
    jitted = [n for n in ast.walk(_parse(folder / "triton.py")) if isinstance(n, ast.FunctionDef)
              and any(ast.unparse(d).startswith("triton.jit") for d in n.decorator_list)]
    assert jitted, f"kernels/{op}/triton.py holds no @triton.jit kernel"
    autograd = _parse(folder / "autograd.py")
    assert any(isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "torch.autograd.Function" for b in n.bases)
               for n in autograd.body), f"kernels/{op}/autograd.py holds no torch.autograd.Function"
    launchers = {n.name for n in autograd.body if isinstance(n, ast.FunctionDef)}
    assert {f"{op}_fwd", f"{op}_bwd", f"{op}_triton"} <= launchers


@pytest.mark.parametrize("path", _modules(KERNELS), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_triton_modules_import_triton_at_module_level(path):
    if path.name == "triton.py":
        return
    tree = _parse(path)
    top = _module_level(tree)
    for node, name in _imports(tree):
        if name == "triton" or name.startswith("triton.") or name.endswith(".triton"):
            assert id(node) not in top, f"{path.relative_to(ROOT)}:{node.lineno} imports {name} at module level"
