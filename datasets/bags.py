"""Feature bags of whole-slide images in a Zarr store, their extraction, and MIL datamodules.

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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import BagBatch
from chanformer.channels import Channel, ChannelVocab
from chanformer.datasets.wsi import Slide, SlideReadError, TileGrid, _name, iter_slides, slide_id, tile_slide
from chanformer.io import named_write_error, safe_id
from chanformer.spec import DataSpec

__all__ = [
    "Bag",
    "BagBatch",
    "BagDataModule",
    "BagDataset",
    "BagError",
    "BagStore",
    "TileStatsExtractor",
    "extract_features",
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

    return zarr.open_group(str(path), mode=mode)


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


# -- feature extraction ----------------------------------------------------------------------------
class TileStatsExtractor(nn.Module):
    """Fixed, deterministic tile features for tests and recipes (no training, no download).

    ``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, 6 + width]``: per-channel mean and standard deviation,
    followed by the spatially averaged responses of a two-layer conv net (5x5 stride 2 -> ReLU ->
    3x3 stride 2 -> ReLU) whose weights are drawn once from ``seed`` and kept as buffers. It is a
    texture/colour descriptor, not a pathology foundation model: on real slides use a real encoder.
    """

    def __init__(self, width: int = 26, seed: int = 0) -> None:
        super().__init__()
        self.width, self.seed = width, seed
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w1", torch.randn(16, 3, 5, 5, generator=g) * (2 / 75) ** 0.5)
        self.register_buffer("w2", torch.randn(width, 16, 3, 3, generator=g) * (2 / 144) ** 0.5)

    @property
    def config(self) -> dict[str, Any]:
        return {"width": self.width, "seed": self.seed}

    def forward(self, x: Tensor) -> Tensor:
        stats = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
        h = torch.relu(torch.nn.functional.conv2d(x - 0.5, self.w1, stride=2))
        h = torch.relu(torch.nn.functional.conv2d(h, self.w2, stride=2))
        return torch.cat([stats, h.mean((2, 3))], 1)


def _encoder_identity(encoder: nn.Module, name: str | None) -> tuple[str, dict[str, Any]]:
    spec = getattr(encoder, "pretrained_spec", None)
    if callable(spec):
        return name or type(encoder).__name__, dict(spec())
    if getattr(encoder, "encoder_name", None):
        return name or str(encoder.encoder_name), dict(getattr(encoder, "encoder_kwargs", {}))
    return name or type(encoder).__name__, dict(getattr(encoder, "config", {}))


def _resolve_encoder(encoder: str | nn.Module, encoder_kwargs: Mapping[str, Any] | None) -> tuple[nn.Module, str, dict[str, Any]]:
    if isinstance(encoder, nn.Module):
        name, cfg = _encoder_identity(encoder, None)
        return encoder, name, cfg
    if encoder in ("tile-stats", "tile_stats"):
        m = TileStatsExtractor(**(encoder_kwargs or {}))
        return m, "tile-stats", m.config
    from chanformer.encoders import create_encoder

    m = create_encoder(encoder, **(encoder_kwargs or {}))
    return m, encoder, dict(encoder_kwargs or {})


def _embed(encoder: nn.Module, tiles: Tensor, vocab: ChannelVocab | None) -> Tensor:
    """Tiles ``[B, 3, H, W]`` float -> features ``[B, D]`` (chanformer encoders get a ChannelBatch)."""
    from chanformer.encoders import Encoder

    if isinstance(encoder, Encoder):
        from chanformer.batch import ChannelBatch

        voc = vocab or getattr(encoder, "vocab", None) or rgb_vocab()
        ids = torch.tensor(voc.ids(list(RGB_KEYS)), device=tiles.device).expand(tiles.shape[0], 3)
        mask = torch.ones(tiles.shape[0], 3, dtype=torch.bool, device=tiles.device)
        return encoder(ChannelBatch(tiles, ids.contiguous(), mask))
    out = encoder(tiles)
    if out.ndim > 2:
        out = out.flatten(1)
    return out


@dataclass
class ExtractionReport:
    """What :func:`extract_features` did: slides written, skipped (already complete) and failed
    (``{slide file: one-line reason}``, with ``on_error="skip"``), tiles, throughput."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    n_tiles: int = 0
    seconds: float = 0.0

    @property
    def tiles_per_s(self) -> float:
        return self.n_tiles / self.seconds if self.seconds > 0 else 0.0


def extract_features(
    slides: Sequence[str | os.PathLike[str]],
    store: str | os.PathLike[str] | BagStore,
    encoder: str | nn.Module = "tile-stats",
    *,
    encoder_kwargs: Mapping[str, Any] | None = None,
    labels: Mapping[str, int] | None = None,
    tile_size: int = 256,
    level: int = 0,
    min_tissue: float = 0.5,
    grids: Mapping[str, TileGrid] | None = None,
    batch_size: int = 64,
    transform: Callable[[Tensor], Tensor] | None = None,
    vocab: ChannelVocab | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_slide_done: Callable[[str], None] | None = None,
    on_error: str = "raise",
) -> ExtractionReport:
    """Run an encoder over the tissue tiles of every slide and write one bag per slide.

    Resumable: slides that already have a complete bag are skipped, leftovers of a killed write
    are deleted first.

    Args:
        slides: slide files or folders of slides.
        store: bag store path (created if needed; an existing one must match the encoder settings).
        encoder: ``"tile-stats"`` (:class:`TileStatsExtractor`), a registered chanformer encoder
            name (tiles arrive as a :class:`~chanformer.batch.ChannelBatch` with channels
            ``rgb/R``, ``rgb/G``, ``rgb/B``), or any module (chanformer encoders likewise; other
            modules get ``[B, 3, H, W]`` float tensors in ``[0, 1]``) returning ``[B, D]``.
        encoder_kwargs: arguments of the named encoder.
        labels: ``{slide: class index}`` stored with each bag (``None``: unlabelled).
        tile_size / level / min_tissue: tiling (see :func:`~chanformer.datasets.wsi.tile_slide`).
        grids: precomputed tile grids by slide name (``chanformer wsi tile`` output).
        batch_size: tiles per encoder call.
        transform: applied to each ``[B, 3, H, W]`` float batch before the encoder (e.g. normalisation).
        vocab: vocabulary that maps ``rgb/*`` keys to the encoder's channel ids.
        device: where the encoder runs.
        progress: show a rich progress bar.
        on_slide_done: called with the slide name after its bag is complete.
        on_error: what a slide that cannot be used does (unreadable, not pyramidal, no tissue, a
            bad slide id, no label, NaN or wrong-width features): ``"raise"`` its error, or
            ``"skip"`` it, record the reason in :attr:`ExtractionReport.failed` and go on with the
            next slide (``chanformer wsi extract`` does this and exits 1 when any failed). Errors
            that are not about one slide (encoder crash, disk full) are always raised.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"extract_features(on_error={on_error!r}): expected 'raise' or 'skip'")
    store = store if isinstance(store, BagStore) else BagStore(store)
    module, name, cfg = _resolve_encoder(encoder, encoder_kwargs)
    module = module.to(device).eval()
    paths = list(iter_slides(slides))
    if not paths:
        raise FileNotFoundError(f"extract_features(slides=...): no slide files in {[str(s) for s in slides]}")
    store.init(encoder=name, encoder_config=cfg, tile_size=tile_size, level=level)
    with store.lock():
        return _extract(paths, store, module, vocab, labels, tile_size, level, min_tissue, grids, batch_size,
                        transform, device, progress, on_slide_done, on_error)  # fmt: skip


def _extract(paths: list[Path], store: BagStore, module: nn.Module, vocab: ChannelVocab | None,
             labels: Mapping[str, int] | None, tile_size: int, level: int, min_tissue: float,
             grids: Mapping[str, TileGrid] | None, batch_size: int, transform: Callable[[Tensor], Tensor] | None,
             device: str | torch.device, progress: bool, on_slide_done: Callable[[str], None] | None,
             on_error: str) -> ExtractionReport:  # fmt: skip
    store.clean()
    done = set(store.slides())
    report = ExtractionReport()
    todo = [p for p in paths if _name(p) not in done]
    report.skipped = [_name(p) for p in paths if _name(p) in done]
    feature_dim = store.attrs.get("feature_dim")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        slide_task = bar.add_task("slides", total=len(paths), completed=len(report.skipped))
        tile_task = bar.add_task("tiles", total=0)
        for path in todo:
            try:
                name = slide_id(path)
                n = _extract_slide(path, name, store, module, vocab, labels, tile_size, level, min_tissue, grids,
                                   batch_size, transform, device, feature_dim, bar, tile_task, report)  # fmt: skip
            except (ValueError, KeyError, FileNotFoundError) as e:  # SlideReadError and BagError are ValueErrors
                if on_error == "raise":
                    raise
                message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
                report.failed[str(path)] = message.strip().splitlines()[0] if message.strip() else type(e).__name__
                bar.advance(slide_task)
                continue
            feature_dim = n
            report.written.append(name)
            bar.advance(slide_task)
            if on_slide_done is not None:
                on_slide_done(name)
    return report


def _extract_slide(path: Path, name: str, store: BagStore, module: nn.Module, vocab: ChannelVocab | None,
                   labels: Mapping[str, int] | None, tile_size: int, level: int, min_tissue: float,
                   grids: Mapping[str, TileGrid] | None, batch_size: int,
                   transform: Callable[[Tensor], Tensor] | None, device: str | torch.device, feature_dim: int | None,
                   bar: Any, tile_task: Any, report: ExtractionReport) -> int:  # fmt: skip
    """Embed one slide's tiles and write its bag; returns the feature width."""
    label = None if labels is None else labels.get(name)
    if labels is not None and label is None:
        raise KeyError(f"slide {name}: no label in the labels table")
    with Slide(path) as slide:
        grid = grids.get(name) if grids else None
        grid = grid or tile_slide(slide, tile_size, level, min_tissue=min_tissue)
        bar.reset(tile_task, total=len(grid), description=f"tiles of {name}")
        t0 = time.perf_counter()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(grid), batch_size):
                coords = grid.coords[start : start + batch_size]
                tiles = slide.read_tiles(coords, grid.tile_size, grid.level)
                x = torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).float().div_(255)
                if transform is not None:
                    x = transform(x)
                chunks.append(_embed(module, x, vocab).float().cpu().numpy())
                bar.advance(tile_task, len(coords))
        feats = np.concatenate(chunks)
        report.seconds += time.perf_counter() - t0
    if feature_dim is not None and feats.shape[1] != feature_dim:
        raise BagError(f"slide {name}: encoder gives {feats.shape[1]} features, the store holds {feature_dim}")
    if not np.isfinite(feats).all():
        n_bad = int((~np.isfinite(feats)).any(1).sum())
        raise BagError(f"slide {name}: the encoder produced NaN/inf features for {n_bad} tiles")
    if feature_dim is None:
        # Recorded before the first bag, so a kill between the two cannot leave a bag without it.
        _open_group(store.path, "a").attrs["feature_dim"] = int(feats.shape[1])
    store.write_bag(name, feats, grid.coords, label, path=str(path), tile_size=grid.tile_size,
                    level=grid.level, downsample=grid.downsample)  # fmt: skip
    report.n_tiles += len(grid)
    return int(feats.shape[1])


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


class BagDataModule(L.LightningDataModule):
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
            from chanformer.datasets.datamodule import stratified_split

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

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self.datasets.get(split)
        if ds is None:
            return []  # type: ignore[return-value]
        from chanformer.datasets.datamodule import EpochShuffleSampler

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


def read_grids(directory: str | os.PathLike[str]) -> dict[str, TileGrid]:
    """Tile grids written by ``chanformer wsi tile`` (``<slide>.tiles.json`` files) by slide name."""
    out = {}
    for p in sorted(Path(directory).glob("*.tiles.json")):
        g = TileGrid.from_json(json.loads(p.read_text()))
        out[g.slide] = g
    return out


__all__ += ["ExtractionReport", "read_grids", "SlideReadError"]
