"""Attention heatmaps on slide thumbnails, and how much attention lands on given tiles."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from chanformer.batch import BagBatch

__all__ = ["attention_heatmap", "attention_mass_on", "attention_maps", "save_heatmaps"]


@torch.no_grad()
def attention_maps(model: nn.Module, features: Tensor, mask: Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-tile attention (softmaxed over the bag) of one bag ``features [N, D]``.

    Returns ``{"slide": [N]}`` plus ``{"branch_k": [N]}`` per ACMIL branch. ACMIL's slide head
    uses the mean of the branches' attention; ABMIL has one map; the bag-mean baseline is uniform.
    """
    was_training = model.training
    model.eval()
    try:
        out = model(BagBatch.from_tensors(features, mask))
    finally:
        model.train(was_training)
    attn = torch.softmax(out.attention.float(), dim=-1)[0]  # [K, N] or [N]
    if attn.ndim == 1:
        return {"slide": attn.numpy()}
    maps = {f"branch_{k}": attn[k].numpy() for k in range(attn.shape[0])}
    maps["slide"] = attn.mean(0).numpy()
    return maps


def attention_mass_on(attention: np.ndarray | Tensor, coords: np.ndarray | Tensor, tiles: Iterable[Iterable[int]]) -> float:
    """Share of a bag's attention on the tiles at ``tiles`` (level-0 ``(y, x)`` top-left corners).

    Args:
        attention: ``[N]`` non-negative weights (normalised here).
        coords: ``[N, 2]`` level-0 ``(y, x)`` of every tile of the bag.
        tiles: the tiles of interest, as coordinates that appear in ``coords``.
    """
    a = np.asarray(attention, np.float64)
    c = np.asarray(coords).reshape(-1, 2)
    want = {tuple(int(v) for v in t) for t in tiles}
    hit = np.array([tuple(int(v) for v in xy) in want for xy in c], bool)
    total = a.sum()
    return float(a[hit].sum() / total) if total > 0 else 0.0


def attention_heatmap(
    thumbnail: np.ndarray, attention: np.ndarray, coords: np.ndarray, tile_extent: float, downsample: float,
    alpha: float = 0.55, cmap: str = "inferno",
) -> np.ndarray:  # fmt: skip
    """Blend per-tile attention onto a thumbnail ``[h, w, 3]`` uint8.

    Args:
        thumbnail: a low-resolution level of the slide.
        attention: ``[N]`` weights, scaled to ``[0, 1]`` by their maximum for display.
        coords: ``[N, 2]`` level-0 ``(y, x)`` tile corners.
        tile_extent: tile edge in level-0 pixels.
        downsample: level-0 pixels per thumbnail pixel.
    """
    from matplotlib import colormaps

    h, w = thumbnail.shape[:2]
    heat = np.zeros((h, w), np.float32)
    covered = np.zeros((h, w), bool)
    a = np.asarray(attention, np.float32)
    a = a / a.max() if a.max() > 0 else a
    e = max(1, int(round(tile_extent / downsample)))
    for (y, x), v in zip(np.asarray(coords), a):
        ty, tx = int(round(y / downsample)), int(round(x / downsample))
        heat[ty : ty + e, tx : tx + e] = v
        covered[ty : ty + e, tx : tx + e] = True
    rgb = (colormaps[cmap](heat)[..., :3] * 255).astype(np.float32)
    out = thumbnail.astype(np.float32)
    out[covered] = (1 - alpha) * out[covered] + alpha * rgb[covered]
    return out.clip(0, 255).astype(np.uint8)


def save_heatmaps(
    slide_path: str | os.PathLike[str], maps: dict[str, np.ndarray], coords: np.ndarray, tile_extent: float,
    out_dir: str | os.PathLike[str], level: int | None = None, **kwargs: Any,
) -> dict[str, Path]:  # fmt: skip
    """Write one PNG per attention map (``<slide>.<name>.png``) on the slide's lowest-resolution level.

    Args:
        slide_path: the slide file.
        maps: output of :func:`attention_maps`.
        coords: the bag's ``[N, 2]`` level-0 tile corners.
        tile_extent: tile edge in level-0 pixels.
        out_dir: where the PNGs go.
        level: thumbnail level (default: the lowest resolution).
        **kwargs: passed to :func:`attention_heatmap`.
    """
    from PIL import Image

    from chanformer.datasets.wsi.slides import Slide

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Slide(slide_path) as slide:
        lvl = slide.n_levels - 1 if level is None else level
        thumb, ds = slide.read_level(lvl), slide.downsamples[lvl]
        paths = {}
        for name, att in maps.items():
            img = attention_heatmap(thumb, att, coords, tile_extent, ds, **kwargs)
            path = out_dir / f"{slide.name}.{name}.png"
            tmp = path.with_name(f".{path.name}.tmp.png")
            Image.fromarray(img).save(tmp)
            os.replace(tmp, path)
            paths[name] = path
    return paths
