"""Checkpoint I/O: never a half-written file, never unpickled code.

* :func:`load_checkpoint_file` is the one way chanformer reads a ``torch.save`` pickle
  (Lightning ``.ckpt``, original ``.pt``/``.bin`` weights, SpeechBrain ``.ckpt``): local files
  only, with ``weights_only=True`` (tensors, numbers, strings and plain containers; no class is
  imported and no code runs). URLs are refused: download the file and pass the local copy.
* :class:`AtomicCheckpointIO` writes checkpoints atomically (mode ``0o666`` minus the umask) and
  loads them with :func:`load_checkpoint_file`, whatever ``weights_only`` Lightning asks for.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from chanformer.io import write_file_atomic

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointMismatchError",
    "RemoteCheckpointError",
    "is_url",
    "load_checkpoint_file",
    "refuse_url",
]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors (keys or shapes) do not fit the model it is loaded into."""


class RemoteCheckpointError(ValueError):
    """A URL was given where chanformer only loads local checkpoint files."""


def _text(path: object) -> str | None:
    if isinstance(path, str):
        return path
    if isinstance(path, os.PathLike):
        value = os.fspath(path)
        return value if isinstance(value, str) else None
    return None


def is_url(path: object) -> bool:
    """True for ``scheme://...`` strings (http, https, s3, gs, hf, file, ...)."""
    text = _text(path)
    return text is not None and bool(_SCHEME.match(text))


def refuse_url(path: object, what: str) -> None:
    """Raise :class:`RemoteCheckpointError` naming ``what`` when ``path`` is a URL."""
    if is_url(path):
        raise RemoteCheckpointError(
            f"{what} {_text(path)!r}: remote checkpoints are not loaded (a checkpoint is a pickle, and fetching "
            "one hands it to an unpickler); download it yourself and pass the local file"
        )


def load_checkpoint_file(path: str | os.PathLike[str], what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of a local file, with errors that name ``what`` and the file.

    Raises:
        RemoteCheckpointError: ``path`` is a URL.
        FileNotFoundError: no such file.
        ValueError: the file is not a PyTorch checkpoint, or it holds Python objects other than
            tensors and plain values (it is then not unpickled: no code in it runs).
    """
    refuse_url(path, what)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p}: no such file")
    # Errors are raised after the except blocks, so no chained low-level error is taken for the
    # cause (the CLI reports the innermost error of a chain).
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _detail(e)
        if "GLOBAL" in detail:  # an import the tensors-only unpickler blocked: code, or a class
            reason = f"refused: it holds Python objects other than tensors and plain values, which are never unpickled ({detail})"
        else:
            reason = f"not a PyTorch checkpoint ({detail})"
    except (KeyError, IndexError):  # a text file read as a pickle fails on a memo look-up
        reason = "not a PyTorch checkpoint (neither a zip archive nor a pickle: a text file?)"
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, TypeError) as e:
        reason = f"not a readable PyTorch checkpoint, or a truncated one ({_first_line(e)})"
    raise ValueError(f"{what} {p}: {reason}")


def _detail(e: BaseException) -> str:
    """The line of torch's long weights-only message that says what was wrong."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for key in ("GLOBAL", "Unsupported", "invalid load key"):
        for ln in lines:
            if key in ln:
                return ln
    return lines[-1] if lines else type(e).__name__


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _keep_storage(storage: Any, location: str) -> Any:
    return storage


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the target folder, then rename it; load
    checkpoints tensors-only.

    A run killed while saving leaves the previous checkpoint intact (``os.replace`` is atomic on
    POSIX and Windows file systems) and its temporary file is removed by the next save to that
    path; a failed write (disk full) raises :class:`~chanformer.io.WriteError` naming the file.
    Loading refuses URLs and always unpickles with ``weights_only=True``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO got storage_options={storage_options!r}, which it does not support")
        if is_url(path):
            raise RemoteCheckpointError(f"checkpoint {_text(path)!r}: AtomicCheckpointIO writes local files only")
        write_file_atomic(Path(path), lambda f: torch.save(checkpoint, f), fsync=True)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        # ``weights_only`` is ignored on purpose: nothing chanformer loads may run code. Storages
        # stay where they were saved unless asked otherwise, as in Lightning's TorchCheckpointIO.
        where = _keep_storage if map_location is None else map_location
        state = load_checkpoint_file(path, "--ckpt_path", map_location=where)
        if not isinstance(state, dict):
            raise ValueError(f"--ckpt_path {path}: not a Lightning checkpoint (holds a {type(state).__name__})")
        return state
