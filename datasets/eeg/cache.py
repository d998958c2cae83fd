"""Zarr cache of EEG windows: cut once with :class:`EEGWindowDataset`, stream from disk after.

:func:`cache_windows` writes every window of a dataset to one Zarr store; :class:`CachedWindowDataset`
reads it back one window per ``__getitem__``, yielding the same :class:`ChannelSample`s.

Store layout (channel axis padded to the widest recording, ``C_max``):

* ``values``      float32 ``[N, C_max, T]`` (padded slots 0), chunked one window per chunk,
* ``mask``        bool    ``[N, C_max]`` (``True`` = channel present),
* ``channel_ids`` int64   ``[N, C_max]`` (padded slots :data:`~chanformer.batch.PAD_ID`),
* ``coords``      float32 ``[N, C_max, 3]`` (NaN where a channel has no position),
* ``targets``     int64   ``[N]`` (``-1`` in ``"windows"`` mode),
* ``recording``   int64   ``[N]`` (index into the ``sources`` attribute),

and attributes ``vocab`` (the vocabulary JSON, iEEG keys included), ``sfreq``, ``n_times``,
``mode``, ``window_s``, ``stride_s``, ``tmin``, ``tmax``, ``num_classes``, ``sources``,
``reference`` and, written last, ``complete``. The store is written in a temporary sibling
directory and renamed into place, and readers refuse a store without ``complete``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from chanformer.batch import PAD_ID, ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.io import atomic_directory

__all__ = ["CACHE_FORMAT", "CachedWindowDataset", "cache_key", "cache_windows", "is_complete"]

CACHE_FORMAT = 1
"""Layout version, part of :func:`cache_key` (bump it when the layout changes)."""

PathLike = str | os.PathLike[str]


def _attr(dataset: Any, name: str, default: Any = None) -> Any:
    value = getattr(dataset, name, default)
    return value.item() if isinstance(value, np.generic) else value


def cache_windows(dataset: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write every window of ``dataset`` (an :class:`EEGWindowDataset`) to a Zarr store at ``path``.

    The store is written in a temporary sibling directory, its ``complete`` attribute set
    last, then renamed to ``path``; an interrupted write leaves no store at ``path`` (and
    :class:`CachedWindowDataset` refuses any store lacking ``complete``). An existing ``path``
    raises ``FileExistsError`` unless ``overwrite``. Returns ``path``.
    """
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    n, t = len(dataset), int(dataset.n_times)
    c_max = max(len(k) for k in dataset.channel_keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)

        def array(name: str, shape: tuple[int, ...], dtype: Any, fill: Any) -> Any:
            chunks = (1, *shape[1:]) if name == "values" else (min(n, 4096), *shape[1:])
            return root.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)

        values = array("values", (n, c_max, t), "float32", 0.0)
        mask = array("mask", (n, c_max), "bool", False)
        ids = array("channel_ids", (n, c_max), "int64", PAD_ID)
        coords = array("coords", (n, c_max, 3), "float32", np.nan)
        mask_np = np.zeros((n, c_max), bool)
        ids_np = np.full((n, c_max), PAD_ID, np.int64)
        coords_np = np.full((n, c_max, 3), np.nan, np.float32)
        targets = np.full(n, -1, np.int64)
        recording = np.zeros(n, np.int64)
        for i in range(n):  # one window at a time: the source may itself be lazy
            s = dataset[i]
            c = s.values.shape[0]
            values[i, :c] = s.values.detach().cpu().numpy().astype(np.float32, copy=False)
            mask_np[i, :c] = True
            ids_np[i, :c] = s.channel_ids.numpy()
            if s.coords is not None:
                coords_np[i, :c] = s.coords.detach().cpu().numpy()
            if s.target is not None:
                targets[i] = int(s.target)
        if hasattr(dataset, "recording_of"):
            recording[:] = np.asarray(dataset.recording_of, dtype=np.int64)
        mask[:], ids[:], coords[:] = mask_np, ids_np, coords_np
        array("targets", (n,), "int64", -1)[:] = targets
        array("recording", (n,), "int64", 0)[:] = recording
        vocab: ChannelVocab = dataset.vocab
        root.attrs.update(
            {
                "format": CACHE_FORMAT,
                "vocab": json.dumps(vocab.to_json()),
                "sfreq": float(dataset.sfreq),
                "n_times": t,
                "mode": _attr(dataset, "mode", "windows"),
                "window_s": _attr(dataset, "window_s"),
                "stride_s": _attr(dataset, "stride_s"),
                "tmin": _attr(dataset, "tmin"),
                "tmax": _attr(dataset, "tmax"),
                "num_classes": _attr(dataset, "num_classes"),
                "reference": _attr(dataset, "reference", "none"),
                "sources": [str(s) for s in getattr(dataset, "sources", [])],
                "has_target": bool((targets >= 0).any()) or _attr(dataset, "mode") == "events",
            }
        )
        root.attrs["complete"] = True  # last: a store without it was interrupted
    return path


def _open_group(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise FileNotFoundError(f"EEG window cache not found: {path}")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as e:
        raise ValueError(f"cannot open EEG window cache {path}: {type(e).__name__}: {e}") from e
    if not root.attrs.get("complete", False):
        raise ValueError(f"EEG window cache {path} is incomplete (no 'complete' attribute: interrupted write?)")
    return root


def is_complete(path: PathLike) -> bool:
    """Whether ``path`` holds a complete window cache."""
    try:
        _open_group(Path(path))
    except (FileNotFoundError, ValueError):
        return False
    return True


class CachedWindowDataset(Dataset[ChannelSample]):
    """Windows of a :func:`cache_windows` store, read lazily one window per ``__getitem__``.

    The store is opened once per process (each DataLoader worker opens its own handle); only
    the per-window ``targets`` and ``recording`` indices are held in memory. ``vocab`` is the
    vocabulary saved with the store (iEEG keys included). Attributes mirror
    :class:`EEGWindowDataset`: ``sfreq``, ``n_times``, ``mode``, ``num_classes``, ``targets``,
    ``recording_of``, ``sources``.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        root = _open_group(self.path)
        attrs = dict(root.attrs)
        self.vocab = ChannelVocab.from_json(json.loads(attrs["vocab"]))
        self.sfreq = float(attrs["sfreq"])
        self.n_times = int(attrs["n_times"])
        self.mode = attrs.get("mode", "windows")
        self.window_s, self.stride_s = attrs.get("window_s"), attrs.get("stride_s")
        self.tmin, self.tmax = attrs.get("tmin"), attrs.get("tmax")
        self.reference = attrs.get("reference", "none")
        self.num_classes = attrs.get("num_classes")
        self.sources = list(attrs.get("sources", []))
        self._has_target = bool(attrs.get("has_target", False))
        self.targets = np.asarray(root["targets"][:], dtype=np.int64)
        self.recording_of = np.asarray(root["recording"][:], dtype=np.int64)
        self._root: Any = None
        self._arrays: dict[str, Any] = {}
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_root"], state["_arrays"], state["_pid"] = None, {}, None  # reopened in each worker
        return state

    def _array(self, name: str) -> Any:
        if self._root is None or self._pid != os.getpid():  # first read in this process
            self._root, self._arrays, self._pid = _open_group(self.path), {}, os.getpid()
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self._root[name]
        return arr

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, idx: int) -> ChannelSample:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"window {idx} out of range for {n} windows")
        i = int(idx) % n
        c = int(np.asarray(self._array("mask")[i], dtype=bool).sum())  # present channels come first
        values = np.asarray(self._array("values")[i, :c], dtype=np.float32)
        ids = np.asarray(self._array("channel_ids")[i, :c], dtype=np.int64)
        coords = np.asarray(self._array("coords")[i, :c], dtype=np.float32)
        target = torch.tensor(int(self.targets[i])) if self._has_target else None
        return ChannelSample(
            values=torch.from_numpy(values),
            channel_ids=torch.from_numpy(ids),
            coords=torch.from_numpy(coords),
            target=target,
        )


def _file_stamp(path: PathLike) -> list[Any]:
    """``[path, size, mtime_ns]`` of a recording and its side files (same stem, same folder)."""
    p = Path(path).resolve()
    files = sorted({p, *p.parent.glob(f"{p.stem}.*")}) if p.parent.is_dir() else [p]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append([str(f), st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append([str(f), None, None])
    return out


def cache_key(paths: Sequence[PathLike], kwargs: Mapping[str, Any]) -> str:
    """Hash of the dataset arguments, the cache format and each file's path, size and mtime."""
    payload = {
        "format": CACHE_FORMAT,
        "kwargs": {k: kwargs[k] for k in sorted(kwargs)},
        "files": [_file_stamp(p) for p in paths],
    }
    blob = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
