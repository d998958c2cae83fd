"""Griffe extensions for the API reference (registered in ``mkdocs.yml``; not part of the package).

``PackageDirLayout``: three subpackages of ``chanformer`` live outside ``chanformer/`` in the repository and are mapped
into place by ``[tool.setuptools] package-dir`` (``chanformer.datasets`` = ``datasets/``,
``chanformer.cli`` = ``cli/``, ``chanformer.kernels`` = ``kernels/``). Griffe reads source files
without importing them and only walks ``chanformer/``, so without this extension ``::: chanformer.cli``
is "not found". After Griffe loads the ``chanformer`` package, this attaches each mapped directory
as the submodule that setuptools installs it as. It reads the mapping from ``pyproject.toml``, so a
docs build needs neither an install nor an import of the package.

``GroupedArgs``: our docstrings document arguments that share a description on one line, as
``a / b: ...`` or ``a, b: ...`` (the name list may wrap onto a second line). Google style has no
such form, so Griffe would read ``a / b`` as one unknown parameter. This rewrites each group into
one entry per name with the shared description before Griffe parses the docstring; every name is
then still checked against the signature.

``SphinxRoles``: many docstrings cross-reference with Sphinx roles (``:class:`~chanformer.batch.ChannelBatch```),
which Markdown would show literally. This turns each into an optional cross-reference: a link
where the target is on the site, plain code otherwise (so it never fails the strict build). A bare
name is looked up in the docstring's own module (its class, for ``:meth:`` and ``:attr:``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[2]


def _package_dirs() -> dict[str, Path]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        mapping = tomllib.load(fh)["tool"]["setuptools"].get("package-dir", {})
    return {name: ROOT / path for name, path in mapping.items() if "." in name}


class PackageDirLayout(griffe.Extension):
    """Attach the ``package-dir`` subpackages to their parent package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for name, path in sorted(_package_dirs().items()):
            parent_path, _, child = name.rpartition(".")
            if parent_path.split(".", 1)[0] != pkg.name:
                continue
            parent = pkg if parent_path == pkg.name else pkg.get_member(parent_path.split(".", 1)[1])
            if child in parent.members and parent.members[child].is_module:
                continue
            init = path / "__init__.py"
            if not init.is_file():
                raise FileNotFoundError(f"pyproject.toml maps {name} to {path}, which has no __init__.py")
            # Griffe has no public call to load a directory under a given parent; `_load_module`
            # is what it uses for its own submodules (griffe 1.x and 2.x).
            module = loader._load_module(child, init, submodules=True, parent=parent)
            parent.set_member(child, module)


_ARGS_HEADER = re.compile(r"^(?P<indent> *)(Args|Arguments|Parameters|Params|Other Parameters|Keyword Args):\s*$")
_NAME = r"\*{0,2}[A-Za-z_]\w*"
_GROUP = re.compile(rf"^(?P<names>{_NAME}(?:\s*[,/]\s*{_NAME})+)\s*:(?P<rest>.*)$")
_GROUP_START = re.compile(rf"^{_NAME}(?:\s*[,/]\s*{_NAME})*\s*,$")  # a name list that wraps


def split_grouped_args(text: str) -> str:
    """Rewrite ``a / b: text`` (or ``a, b: text``) entries of Args sections as one entry per name."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        header = _ARGS_HEADER.match(lines[i])
        i += 1
        if header is None:
            continue
        section_indent = len(header.group("indent"))
        item_indent: int | None = None
        while i < len(lines):
            line = lines[i]
            indent = len(line) - len(line.lstrip(" "))
            if line.strip() and indent <= section_indent:
                break  # the next section
            if not line.strip() or (item_indent is not None and indent > item_indent):
                out.append(line)
                i += 1
                continue
            item_indent = indent if item_indent is None else item_indent
            head, j = line.strip(), i + 1
            while _GROUP_START.match(head) and j < len(lines) and len(lines[j]) - len(lines[j].lstrip(" ")) == indent:
                head, j = f"{head} {lines[j].strip()}", j + 1
            group = _GROUP.match(head)
            if group is None:
                out.append(line)
                i += 1
                continue
            body = []
            while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip(" ")) > indent:
                body.append(lines[j])
                j += 1
            for name in re.split(r"\s*[,/]\s*", group.group("names")):
                out.append(f"{' ' * indent}{name}:{group.group('rest')}")
                out.extend(body)
            i = j
    return "\n".join(out)


class GroupedArgs(griffe.Extension):
    """Expand grouped argument entries (see :func:`split_grouped_args`) in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ("/" in obj.docstring.value or "," in obj.docstring.value):
            obj.docstring.value = split_grouped_args(obj.docstring.value)


_ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|const):`(?P<tilde>~?)(?P<target>[\w.]+)(?P<call>\(\))?`"
)


def sphinx_roles_to_autorefs(text: str, obj: griffe.Object) -> str:
    """Replace Sphinx cross-reference roles in ``text`` (the docstring of ``obj``) by optional autorefs."""
    module = obj.module.path
    scope = obj.path if obj.is_class else (obj.parent.path if obj.parent is not None and obj.parent.is_class else module)

    def replace(match: re.Match[str]) -> str:
        target = match.group("target")
        shown = target.rsplit(".", 1)[-1] if match.group("tilde") else target.lstrip(".")
        if target.startswith("."):
            identifier = module + target
        elif target.split(".", 1)[0] in {"chanformer", "torch", "numpy", "np"}:
            identifier = target
        elif match.group("role") in {"meth", "attr"} and "." not in target:
            identifier = f"{scope}.{target}"
        else:
            identifier = f"{module}.{target}"
        return f'<autoref identifier="{identifier}" optional><code>{shown}{match.group("call") or ""}</code></autoref>'

    return _ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Render Sphinx roles in docstrings as cross-references (see :func:`sphinx_roles_to_autorefs`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = sphinx_roles_to_autorefs(obj.docstring.value, obj)
