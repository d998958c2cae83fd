"""MkDocs hooks for the chanformer site (registered in ``mkdocs.yml``; not part of the package).

The notebooks live in ``notebooks/`` at the repository root, outside ``docs/``. These hooks put
them on the site as ``notebooks/<name>.ipynb`` pages (rendered, never executed, by mkdocs-jupyter)
and rewrite the links that docs pages make to them (``../notebooks/wsi.ipynb``, correct when the
Markdown is read on a forge) into links between site pages, so MkDocs can check them.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

NOTEBOOK_DIR = "notebooks"

# An inline Markdown link target (no scheme, no leading slash), optionally followed by a fragment.
_LINK = re.compile(r"\]\((?P<target>(?![a-z][a-z0-9+.-]*:|/|#)[^)\s#]+)(?P<fragment>#[^)\s]*)?\)")


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps the .ipynb files it finds
def on_files(files: Files, config: Any) -> Files:
    root = _repo_root(config)
    for notebook in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        uri = f"{NOTEBOOK_DIR}/{notebook.name}"
        if files.get_file_from_path(uri) is None:
            use_dirs = config["use_directory_urls"]
            files.append(File(uri, src_dir=str(root), dest_dir=config["site_dir"], use_directory_urls=use_dirs))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.abs_src_path is None:
        return markdown
    root = _repo_root(config)
    docs_dir = Path(config["docs_dir"]).resolve()
    page_dir = Path(page.file.abs_src_path).resolve().parent
    if not page_dir.is_relative_to(docs_dir):
        return markdown  # a page added from outside docs/ (a notebook): nothing to rewrite

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        resolved = (page_dir / target).resolve()
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(root):
            return match.group(0)  # an ordinary docs link: MkDocs checks it as written
        uri = resolved.relative_to(root).as_posix()
        if files.get_file_from_path(uri) is None:
            return match.group(0)  # not on the site: MkDocs reports it as a broken link
        new_target = posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".")
        return f"]({new_target}{match.group('fragment') or ''})"

    return _LINK.sub(rewrite, markdown)
