"""Pretrained folders from a local path or a Hugging Face Hub id (``owner/name``).

A pretrained folder is Hub-compatible as it is (``config.json`` + ``model.safetensors`` +
``vocab.json`` + ``README.md``, never pickle): push one with
``huggingface_hub.upload_folder(repo_id="owner/name", folder_path="my-model")`` and load it
with ``load_pretrained("owner/name")`` or ``Pipeline.from_pretrained("owner/name")``.
``huggingface_hub`` is optional (``pip install 'chanformer[hub]'``); with ``HF_HUB_OFFLINE=1``
only the local Hub cache is read, and nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["HUB_FILES", "is_hub_id", "resolve_pretrained"]

#: The files of a pretrained folder fetched from the Hub (nothing else, never a pickle).
HUB_FILES = ("config.json", "model.safetensors", "vocab.json", "README.md")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def is_hub_id(value: str) -> bool:
    """Whether ``value`` is spelt like a Hub repository id (``owner/name``, no other slashes)."""
    return bool(_HUB_ID.match(value)) and ".." not in value


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_pretrained(
    path_or_id: str | os.PathLike[str], *, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The local folder of a pretrained model: ``path_or_id`` itself when it is a folder, else the
    snapshot of the Hub repository it names (downloaded through ``huggingface_hub`` when online,
    read from the cache, ``cache_dir`` or the default, when ``HF_HUB_OFFLINE=1``).

    Raises:
        FileNotFoundError: naming what was tried (no such folder; not a Hub id; ``huggingface_hub``
            missing; the repository or revision not in the offline cache; download errors).
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if path.exists():
        raise FileNotFoundError(f"{text} is a file; a pretrained model is a folder (config.json + model.safetensors)")
    if not is_hub_id(text):
        raise FileNotFoundError(f"pretrained folder not found: {text} (and it is not a Hugging Face Hub id owner/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(
            f"pretrained folder not found: {text}; to load it as a Hugging Face Hub id install huggingface_hub "
            "(pip install 'chanformer[hub]')"
        ) from None
    offline = _offline()
    try:
        local = snapshot_download(
            repo_id=text,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=offline,
            allow_patterns=list(HUB_FILES),
        )
    except Exception as e:  # huggingface_hub raises its own error types (offline miss, 404, network)
        where = f" in the local Hub cache{f' {cache_dir}' if cache_dir else ''} (HF_HUB_OFFLINE=1)" if offline else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileNotFoundError(
            f"pretrained folder not found: {text}; as a Hugging Face Hub id it is not available{where}: {first}"
        ) from None
    return Path(local)
