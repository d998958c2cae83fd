"""Atomic writes and safe names: nothing a user saved is ever lost, half-written, or written elsewhere.

Files and folders are written under a temporary hidden sibling name and renamed into place
(``os.replace`` is atomic within one file system); an interrupted write leaves the previous
version intact and no partial file that looks complete. Temporary siblings carry the writer's
process id (``.<name>.tmp-<pid>-<random>``); the next write to the same destination deletes the
ones whose process is gone, so a killed export or checkpoint leaves nothing behind for long.

Every file created here gets mode ``0o666`` reduced by the umask (``0644`` under the usual
umask 022), like a file created with ``open()``; a failed write (disk full, quota, I/O error)
raises :class:`WriteError`, which names the destination and leaves it untouched.

:func:`safe_id` checks that an identifier taken from user data (a slide, bag, subject or
speaker name) is usable as one path component before it is joined to a folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath
from typing import IO, Any

__all__ = [
    "WriteError",
    "atomic_directory",
    "named_write_error",
    "process_alive",
    "remove_stale_temporaries",
    "safe_id",
    "write_bytes_atomic",
    "write_file_atomic",
    "write_text_atomic",
]

_MAX_ID_BYTES = 255  # longest file name on ext4, XFS, APFS, NTFS


class WriteError(OSError):
    """Writing ``path`` failed (disk full, quota, I/O error); nothing at ``path`` was changed.

    Keeps the ``errno`` of the underlying error; the message names the destination.
    """

    def __str__(self) -> str:
        return str(self.strerror)


# Errors of the storage itself; other OSErrors raised while filling a folder (a missing input
# file, say) keep their own type and message.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def safe_id(value: object, what: str) -> str:
    r"""Return ``value`` if it can be used as a single path component, else raise ``ValueError``.

    Refused: non-strings, the empty string, ``.`` and ``..``, anything holding ``/`` or ``\``
    (or the platform's separators), drive or absolute forms such as ``C:x``, NUL and other
    control characters, and names longer than 255 bytes in UTF-8. ``what`` names the value in
    the message (e.g. ``"slide id"``, ``"speaker"``).
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} {value!r}: must be a string, got {type(value).__name__}")
    shown = repr(value)
    if value in ("", ".", ".."):
        raise ValueError(f"{what} {shown}: not usable as a file or folder name (empty, '.' or '..')")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in value for s in seps):
        raise ValueError(f"{what} {shown}: must not contain a path separator ('/' or '\\')")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} {shown}: must not contain NUL or other control characters")
    if os.path.isabs(value) or PureWindowsPath(value).drive:
        raise ValueError(f"{what} {shown}: must be a plain name, not an absolute or drive path")
    if len(value.encode("utf-8", "surrogateescape")) > _MAX_ID_BYTES:
        raise ValueError(f"{what} {value[:40]!r}...: longer than {_MAX_ID_BYTES} bytes, too long for a file name")
    return value


# -- temporary siblings ---------------------------------------------------------------------------
def _temp_name(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when it cannot be told)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists under another user (or cannot tell): leave its files alone
    return True


def _owner_pid(name: str, prefix: str) -> int | None:
    """The pid in ``<prefix>tmp-<pid>-<hex>`` / ``<prefix>old-<pid>-<hex>``; -1 for the older,
    pid-less ``tmp-<hex>`` names (always stale); None when ``name`` is no temporary of ours."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    for kind in ("tmp-", "old-"):
        if rest.startswith(kind):
            parts = rest[len(kind) :].split("-")
            if len(parts) == 2 and parts[0].isdigit():
                return int(parts[0])
            if len(parts) == 1 and len(parts[0]) == 8 and all(c in "0123456789abcdef" for c in parts[0]):
                return -1
            return None
    return None


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary siblings of ``path`` left by killed writers; returns what was removed.

    Only names this module creates for ``path`` are considered (``.<name>.tmp-<pid>-<hex>``,
    ``.<name>.old-<pid>-<hex>`` and the older ``.<name>.tmp-<hex>``); one is stale when its
    process no longer runs on this machine. Writers on other machines sharing the folder are
    not detected, so do not point two hosts at one destination at the same time.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for p in entries:
        pid = _owner_pid(p.name, prefix)
        if pid is None or (pid >= 0 and process_alive(pid)):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not ours to fight over; the next write tries again
    return removed


def _umask() -> int:
    """The process umask; read from /proc on Linux (setting it to read it races with threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def named_write_error(e: OSError, path: Path) -> WriteError:
    """``e`` as a :class:`WriteError` whose message names ``path`` (kept as is if it already is one)."""
    if isinstance(e, WriteError):
        return e
    reason = e.strerror or str(e) or type(e).__name__
    hint = " (disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return WriteError(e.errno or errno.EIO, f"cannot write {path}: {reason}{hint}; {path} was left unchanged")


def _storage_errno(exc: BaseException) -> int | None:
    """The storage errno (disk full, ...) behind an error that a library raised in its own type
    (safetensors: ``SafetensorError('... No space left on device (os error 28)')``), else None."""
    node: BaseException | None = exc
    seen = 0
    while node is not None and seen < 8:
        if isinstance(node, OSError) and node.errno in _STORAGE_ERRNOS:
            return node.errno
        match = re.search(r"os error (\d+)", str(node))
        if match and int(match.group(1)) in _STORAGE_ERRNOS:
            return int(match.group(1))
        node, seen = node.__cause__ or node.__context__, seen + 1
    return None


# -- files --------------------------------------------------------------------------------------------
class _RecordingFile:
    """A binary file that remembers the first ``OSError`` of a write: serialisers such as
    ``torch.save`` turn it into their own error type, which would hide "disk full"."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_file_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], *, fsync: bool = False) -> Path:
    """Create ``path`` by calling ``write(f)`` on a binary file that is renamed into place.

    The temporary file is created with mode ``0o666`` minus the umask (never ``tempfile``'s
    ``0600``); ``fsync`` flushes it to disk before the rename. An ``OSError`` while writing
    (disk full, ...), also one that ``write`` wrapped in its own error type, becomes
    :class:`WriteError` naming ``path``; any error removes the temporary file, so nothing
    half-written is ever visible.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise named_write_error(e, path) from e
    remove_stale_temporaries(path)
    tmp = _temp_name(path)
    recorder: _RecordingFile | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            recorder = _RecordingFile(f)
            write(recorder)  # type: ignore[arg-type]
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise named_write_error(e, path) from e
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if recorder is not None and recorder.error is not None:
            raise named_write_error(recorder.error, path) from e
        code = _storage_errno(e)
        if code is not None:
            raise named_write_error(OSError(code, os.strerror(code)), path) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_file_atomic`)."""
    return write_file_atomic(path, lambda f: f.write(data), fsync=fsync)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder, then rename."""
    write_file_atomic(path, lambda f: f.write(text.encode("utf-8")))


# -- folders ------------------------------------------------------------------------------------------
def _normalise_modes(root: Path) -> None:
    """Give every file under ``root`` mode ``0o666 & ~umask`` and every folder ``0o777 & ~umask``
    (libraries that write through ``tempfile`` would otherwise leave ``0600`` files behind)."""
    mask = _umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    for p in [root, *root.rglob("*")]:
        st = p.lstat()
        if stat.S_ISDIR(st.st_mode):
            p.chmod(dir_mode)
        elif stat.S_ISREG(st.st_mode):
            # keep execute bits a writer set on purpose, but nothing beyond the umask
            p.chmod((file_mode | (st.st_mode & 0o111)) & ~mask)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a not-yet-existing temporary sibling of ``path`` to fill; on success it replaces
    ``path`` (an existing folder is swapped out and deleted), on error it is removed.

    Leftovers of killed writers to ``path`` are deleted first (see :func:`remove_stale_temporaries`).
    File modes inside are set to ``0o666`` minus the umask before the rename. An ``OSError`` while
    filling or renaming (disk full, ...) is re-raised as :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise named_write_error(e, path) from e
    remove_stale_temporaries(path)
    tmp = _temp_name(path)
    filled = False
    try:
        try:
            yield tmp
            filled = True
            if tmp.exists():
                _normalise_modes(tmp)
            if path.exists():
                trash = _temp_name(path, "old")
                os.replace(path, trash)
                os.replace(tmp, path)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as e:
            if isinstance(e, WriteError) or (not filled and e.errno not in _STORAGE_ERRNOS):
                raise
            raise named_write_error(e, path) from e
        except Exception as e:
            code = _storage_errno(e)
            if code is None:
                raise
            raise named_write_error(OSError(code, os.strerror(code)), path) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
