"""Feature bags of whole-slide images in a Zarr store, and MIL datamodules (extraction: chanformer.pipelines.wsi_features).

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import BagBatch
from chanformer.channels import Channel, ChannelVocab
from chanformer.datasets.wsi import SlideReadError, TileGrid
from chanformer.io import named_write_error, safe_id
from chanformer.spec import DataSpec

__all__ = [
    "Bag",
    "BagBatch",
    "BagDataModule",
    "BagDataset",
    "BagError",
    "BagStore",
    "rgb_vocab",
]

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


class BagDataset(Dataset[Bag]):
    """Bags of a :class:`BagStore`, loaded once into memory and checked.

    Args:
        store: the store (or its path).
        slides: which slides (default: every complete bag).
        max_instances: training-time cap; larger bags are randomly subsampled each time they are read.
        seed: seed of that subsampling.

    Raises:
        BagError: empty bags, NaN features, or feature widths that differ between bags (names the slide).
    """

    def __init__(self, store: str | os.PathLike[str] | BagStore, slides: Sequence[str] | None = None,
                 max_instances: int | None = None, seed: int = 0) -> None:  # fmt: skip
        self.store = store if isinstance(store, BagStore) else BagStore(store)
        names = list(slides) if slides is not None else self.store.slides()
        if not names:
            raise BagError(f"bag store {self.store.path} holds no complete bag")
        self.bags = [self.store.read_bag(s) for s in names]
        d = self.bags[0].features.shape[1]
        for b in self.bags:
            if b.features.shape[1] != d:
                first = self.bags[0].slide
                raise BagError(f"slide {b.slide}: {b.features.shape[1]} features per tile, but slide {first} has {d}")
        self.feature_dim = d
        self.max_instances = max_instances
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> Bag:
        b = self.bags[i]
        if self.max_instances and len(b.features) > self.max_instances:
            idx = torch.from_numpy(np.sort(self._rng.choice(len(b.features), self.max_instances, replace=False)))
            return Bag(b.features[idx], b.coords[idx], b.label, b.slide, b.attrs)
        return b

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if b.label is None else b.label for b in self.bags])


class BagLoaders:
    """The loaders of a bag datamodule: ``self.datasets[split]`` batched into padded
    :class:`BagBatch` es (training order reshuffled per epoch from ``self.seed``)."""

    datasets: dict[str, Any]
    batch_size: int
    num_workers: int
    seed: int

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self.datasets.get(split)
        if ds is None:
            return []  # type: ignore[return-value]
        from chanformer.datasets.base import EpochShuffleSampler

        return DataLoader(ds, batch_size=self.batch_size, collate_fn=BagBatch.collate, num_workers=self.num_workers,
                          sampler=EpochShuffleSampler(len(ds), self.seed) if shuffle else None)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


class BagDataModule(BagLoaders, L.LightningDataModule):
    """Train/val/test bags from one store, split by slide (stratified by label).

    Args:
        store: bag store path (``chanformer wsi extract --store ...``).
        batch_size: bags per step; bags of different sizes are padded with a mask (1 = no padding).
        val_fraction / test_fraction: share of each class held out for validation / test.
        split_file: optional JSON ``{"train": [...], "val": [...], "test": [...]}`` of slide names.
        num_classes: default: ``max(label) + 1``.
        max_instances: random subsample of larger training bags (None = all tiles).
        normalize: standardise every feature with the mean/std of the training tiles.
        seed: split and shuffling seed.
    """

    def __init__(
        self,
        store: str = "runs/wsi/bags.zarr",
        batch_size: int = 1,
        val_fraction: float = 0.25,
        test_fraction: float = 0.25,
        split_file: str | None = None,
        num_classes: int | None = None,
        max_instances: int | None = None,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.store = BagStore(store)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        full = BagDataset(self.store)
        labels = full.labels
        if (labels < 0).any():
            bad = full.bags[int(np.argmax(labels < 0))].slide
            raise BagError(f"slide {bad}: bag has no label (pass labels= when extracting)")
        self._num_classes = num_classes or int(labels.max()) + 1
        self.feature_dim = full.feature_dim
        names = [b.slide for b in full.bags]
        if split_file:
            split = json.loads(Path(split_file).read_text())
            parts = {k: [names.index(s) for s in split.get(k, [])] for k in ("train", "val", "test")}
        else:
            from chanformer.datasets.base import stratified_split

            rest, test = stratified_split(labels, test_fraction, seed) if test_fraction > 0 else (np.arange(len(labels)), [])
            tr, va = stratified_split(labels[rest], val_fraction / max(1e-9, 1 - test_fraction), seed + 1) if val_fraction > 0 \
                else (np.arange(len(rest)), np.zeros(0, int))  # fmt: skip
            parts = {"train": list(rest[tr]), "val": list(rest[va]), "test": list(test)}
        self.splits = {k: [names[i] for i in v] for k, v in parts.items()}
        sub = {k: [full.bags[i] for i in v] for k, v in parts.items()}
        if normalize and sub["train"]:
            tiles = torch.cat([b.features for b in sub["train"]])
            mean, std = tiles.mean(0), tiles.std(0).clamp_min(1e-6)
            sub = {k: [Bag((b.features - mean) / std, b.coords, b.label, b.slide, b.attrs) for b in v] for k, v in sub.items()}
        self.datasets: dict[str, BagDataset | None] = {}
        for k, bags in sub.items():
            if not bags:
                self.datasets[k] = None
                continue
            ds = BagDataset.__new__(BagDataset)
            ds.store, ds.bags, ds.feature_dim, ds._rng = self.store, bags, full.feature_dim, np.random.default_rng(seed)
            ds.max_instances = max_instances if k == "train" else None
            self.datasets[k] = ds

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def spec(self) -> DataSpec:
        return DataSpec(num_classes=self.num_classes, class_names=[str(i) for i in range(self.num_classes)],
                        feature_dim=self.feature_dim)  # fmt: skip



def read_grids(directory: str | os.PathLike[str]) -> dict[str, TileGrid]:
    """Tile grids written by ``chanformer wsi tile`` (``<slide>.tiles.json`` files) by slide name."""
    out = {}
    for p in sorted(Path(directory).glob("*.tiles.json")):
        g = TileGrid.from_json(json.loads(p.read_text()))
        out[g.slide] = g
    return out


__all__ += ["read_grids", "SlideReadError"]
