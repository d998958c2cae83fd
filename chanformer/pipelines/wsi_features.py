"""WSI feature extraction: slides -> tiles -> an encoder -> a Zarr bag store.

A pipeline (above readers and models): it reads slides with :mod:`chanformer.datasets.wsi.slides`,
embeds tiles with any chanformer encoder (or a plain module), and writes bags with
:class:`chanformer.datasets.wsi.store.BagStore` (resumable: a killed run continues with the slides
that have no complete bag).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab
from chanformer.datasets.wsi.slides import Slide, TileGrid, _name, iter_slides, slide_id, tile_slide
from chanformer.datasets.wsi.store import RGB_KEYS, BagError, BagStore, _open_group, rgb_vocab
from chanformer.encoders import Encoder, create_encoder

__all__ = ["ExtractionReport", "TileStatsExtractor", "extract_features"]


class TileStatsExtractor(nn.Module):
    """Fixed, deterministic tile features for tests and recipes (no training, no download).

    ``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, 6 + width]``: per-channel mean and standard deviation,
    followed by the spatially averaged responses of a two-layer conv net (5x5 stride 2 -> ReLU ->
    3x3 stride 2 -> ReLU) whose weights are drawn once from ``seed`` and kept as buffers. It is a
    texture/colour descriptor, not a pathology foundation model: on real slides use a real encoder.
    """

    w1: Tensor  # buffers, drawn in __init__
    w2: Tensor

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

    enc = create_encoder(encoder, **(encoder_kwargs or {}))
    return enc, encoder, dict(encoder_kwargs or {})


def _embed(encoder: nn.Module, tiles: Tensor, vocab: ChannelVocab | None) -> Tensor:
    """Tiles ``[B, 3, H, W]`` float -> features ``[B, D]`` (chanformer encoders get a ChannelBatch)."""
    if isinstance(encoder, Encoder):

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
        tile_size / level / min_tissue: tiling (see :func:`~chanformer.datasets.wsi.slides.tile_slide`).
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


