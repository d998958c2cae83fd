"""The Zarr store of whole-slide feature bags and the :class:`Bag` it returns (extraction: chanformer.pipelines.wsi_features).

Store layout (a local directory store)::

    bags.zarr/
      zarr.json | .zgroup          root group; attrs: encoder, encoder_config, feature_dim, tile_size, level
      bags/<slide>/                one group per slide, attrs: slide, path, label, n_tiles, complete=True
        features  [N, D] float16
        coords    [N, 2] int64     level-0 (y, x) of each tile's top-left corner

A bag is written under ``bags/.tmp-<slide>-<pid>`` and renamed to ``bags/<slide>`` only after
its arrays and its ``complete`` attribute are on disk, so a killed extraction never leaves a
half-written bag that looks complete; the next run deletes leftovers and continues with the
slides that have no complete bag. A bag that is replaced is first moved to ``bags/.old-<slide>-<pid>``.

Slide ids become folder names only after :func:`~chanformer.io.safe_id` accepts them (no ``.``,
``..``, separators, control characters; no leading ``.``, which is reserved for the temporary
names above), and the store only ever deletes its own temporary folders and bag folders it wrote.
One extraction at a time writes to a store (``.extract.lock`` at its root, where ``fcntl`` exists).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from chanformer.channels import Channel, ChannelVocab
from chanformer.io import named_write_error, safe_id

__all__ = ["RGB_KEYS", "Bag", "BagError", "BagStore", "rgb_vocab"]


RGB_KEYS = ("rgb/R", "rgb/G", "rgb/B")


class BagError(ValueError):
    """A bag that cannot be used (empty, NaN features, wrong width); the message names the slide."""


def rgb_vocab() -> ChannelVocab:
    """Vocabulary of the three RGB channels tiles are given to chanformer encoders with."""
    return ChannelVocab("rgb", [Channel(k, kind="rgb") for k in RGB_KEYS])


# -- the store ----------------------------------------------------------------------------------
def _open_group(path: Path, mode: str) -> Any:
    import zarr

    return zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]  # callers pass the Literal modes zarr takes


def _write_array(group: Any, name: str, data: np.ndarray) -> None:
    if hasattr(group, "create_array"):  # zarr 3
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(max(1, min(len(data), 4096)), *data.shape[1:]))
        arr[...] = data
    else:  # zarr 2
        group.create_dataset(name, data=data, chunks=(max(1, min(len(data), 4096)), *data.shape[1:]))


class BagStore:
    """A Zarr directory store of per-slide feature bags (see the module docstring).

    Args:
        path: the store folder (created by :meth:`init`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def bags_dir(self) -> Path:
        return self.path / "bags"

    def exists(self) -> bool:
        return self.bags_dir.is_dir()

    @property
    def attrs(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"bag store {self.path} does not exist (run `chanformer wsi extract` first)")
        return dict(_open_group(self.path, "r").attrs)

    def init(self, **attrs: Any) -> None:
        """Create the store, or check that an existing one was made with the same ``attrs``."""
        json.dumps(attrs)
        if self.exists():
            old = self.attrs
            diff = {k: (old.get(k), v) for k, v in attrs.items() if old.get(k) != v}
            if diff:
                raise ValueError(f"bag store {self.path} was written with other settings {diff} (old, new); "
                                 "use a new store path or delete it")  # fmt: skip
            return
        root = _open_group(self.path, "a")
        root.attrs.update(attrs)
        _open_group(self.bags_dir, "a")

    def bag_path(self, slide: str) -> Path:
        """``bags/<slide>``, after checking that ``slide`` is a plain name (``ValueError`` otherwise)."""
        safe_id(slide, f"bag store {self.path}: slide id")
        if slide.startswith("."):
            raise ValueError(f"bag store {self.path}: slide id {slide!r} starts with '.', which is reserved for "
                             "the store's temporary folders")  # fmt: skip
        return self.bags_dir / slide

    @staticmethod
    def _is_temporary(name: str) -> bool:
        """``.tmp-<slide>-<pid>`` / ``.old-<slide>-<pid>``: the only hidden names the store creates."""
        head, _, pid = name.rpartition("-")
        return name.startswith((".tmp-", ".old-")) and len(head) > 5 and pid.isdigit()

    def clean(self) -> list[str]:
        """Remove leftovers of killed writes (``bags/.tmp-<slide>-<pid>``, ``bags/.old-<slide>-<pid>``);
        returns their names. Nothing else is touched. Call it only while no other process writes bags
        to this store (:func:`extract_features` holds the store's lock when it does)."""
        if not self.exists():
            return []
        stale = [p for p in self.bags_dir.iterdir() if self._is_temporary(p.name) and p.is_dir() and not p.is_symlink()]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return [p.name for p in stale]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's writer lock (``.extract.lock``, ``fcntl.flock``); a second writer gets a
        :class:`BagError` naming the store instead of racing the first. A no-op without ``fcntl``."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer at a time is then up to the user
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / ".extract.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BagError(f"bag store {self.path}: another extraction is writing to it ({lock} is locked); "
                               "wait for it to finish or use another store") from None  # fmt: skip
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def slides(self) -> list[str]:
        """Slides with a complete bag, sorted."""
        if not self.exists():
            return []
        out = []
        for p in sorted(self.bags_dir.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                try:
                    if _open_group(p, "r").attrs.get("complete") is True:
                        out.append(p.name)
                except Exception:  # noqa: S112 - an unreadable folder is not a complete bag
                    continue
        return out

    def __contains__(self, slide: object) -> bool:
        return isinstance(slide, str) and slide in self.slides()

    @staticmethod
    def _is_bag_folder(path: Path) -> bool:
        """A real folder holding a Zarr group: what :meth:`write_bag` leaves (never a link or a file)."""
        return path.is_dir() and not path.is_symlink() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())

    def write_bag(self, slide: str, features: np.ndarray, coords: np.ndarray, label: int | None, **meta: Any) -> None:
        """Write one bag atomically (temporary group, ``complete`` attribute, then rename).

        An existing bag of the same slide is replaced; anything else at ``bags/<slide>`` (a file,
        a link, a folder that is no Zarr group) is refused, never deleted.
        """
        final = self.bag_path(slide)
        features = np.asarray(features)
        if features.ndim != 2 or len(features) == 0:
            raise BagError(f"slide {slide}: features must be a non-empty [N, D] array, got shape {features.shape}")
        if len(coords) != len(features):
            raise BagError(f"slide {slide}: {len(features)} feature rows but {len(coords)} coordinates")
        if not np.isfinite(features).all():
            n_bad = int((~np.isfinite(features)).any(1).sum())
            raise BagError(f"slide {slide}: the encoder produced NaN/inf features for {n_bad} tiles")
        if (final.exists() or final.is_symlink()) and not self._is_bag_folder(final):
            raise BagError(f"slide {slide}: {final} exists and is not a bag folder; the store does not delete it "
                           "(move it away, or use another store)")  # fmt: skip
        tmp = self.bags_dir / f".tmp-{slide}-{os.getpid()}"
        old = self.bags_dir / f".old-{slide}-{os.getpid()}"
        for leftover in (tmp, old):  # this process's own leftovers (a pid is reused only after a kill)
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
        try:
            g = _open_group(tmp, "w")
            _write_array(g, "features", features.astype(np.float16))
            _write_array(g, "coords", np.asarray(coords, np.int64).reshape(-1, 2))
            g.attrs.update({"slide": slide, "label": None if label is None else int(label), "n_tiles": len(features),
                            "feature_dim": int(features.shape[1]), **meta})  # fmt: skip
            g.attrs["complete"] = True  # last: only a bag whose arrays are written is marked complete
            if final.exists():
                os.replace(final, old)  # the old bag stays whole until the new one is in place
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if _is_storage_error(e):
                raise named_write_error(e, final) from e
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read_bag(self, slide: str) -> Bag:
        path = self.bag_path(slide)
        if not path.is_dir():
            raise BagError(f"slide {slide}: no bag in {self.path}")
        g = _open_group(path, "r")
        attrs = dict(g.attrs)
        if attrs.get("complete") is not True:
            raise BagError(f"slide {slide}: the bag in {self.path} is incomplete (re-run the extraction)")
        feats = np.asarray(g["features"][...])
        coords = np.asarray(g["coords"][...])
        if feats.ndim != 2 or len(feats) == 0:
            raise BagError(f"slide {slide}: empty bag (features shape {feats.shape}) in {self.path}")
        if not np.isfinite(feats).all():
            raise BagError(f"slide {slide}: {int((~np.isfinite(feats)).any(1).sum())} tiles have NaN/inf features in {self.path}")
        return Bag(torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(coords), attrs.get("label"), slide, attrs)


def _is_storage_error(e: OSError) -> bool:
    import errno

    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


# -- datasets -------------------------------------------------------------------------------------
@dataclass
class Bag:
    """One slide's bag: ``features [N, D]`` float32, ``coords [N, 2]``, ``label``, ``slide`` name."""

    features: Tensor
    coords: Tensor
    label: int | None
    slide: str
    attrs: dict[str, Any] = field(default_factory=dict)
