"""Whole-slide images: pyramidal TIFF reading, tissue detection, tile grids and synthetic slides.

A slide is read level by level with tifffile (through its Zarr view of tiled pages), so only
the TIFF tiles a region touches are decoded; the full-resolution image is never loaded.
(tiffslide/OpenSlide are not used: tifffile reads tiled TIFF, OME-TIFF and SVS pyramids.)

Coordinates are always ``(y, x)`` of a tile's top-left corner in **level-0 pixels**.

Tissue detection (:func:`tissue_mask`) runs on the lowest-resolution level: Otsu threshold on
the HSV saturation (glass is grey/white, stained tissue is saturated), then scikit-image mask
cleaning (small objects and holes removed, a binary closing).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = [
    "Slide",
    "SlideReadError",
    "TileGrid",
    "make_synthetic_slides",
    "read_labels",
    "slide_id",
    "tile_slide",
    "tissue_mask",
]


class SlideReadError(ValueError):
    """A slide that cannot be used (not pyramidal, truncated, no tissue); the message names it."""


def _name(path: str | os.PathLike[str]) -> str:
    """Slide identifier: the file name without ``.ome.tif(f)`` / ``.tif(f)``."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".svs"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def slide_id(path: str | os.PathLike[str]) -> str:
    """The slide identifier of ``path`` (see :func:`_name`), checked to be usable as a folder or file
    name: ``...tif`` (id ``..``), ``..tif`` (``.``) or ``.tif`` (empty) raise ``ValueError`` naming the
    file, and so do ids starting with ``.`` (hidden names are reserved for temporary folders)."""
    from chanformer.io import safe_id

    name = safe_id(_name(path), f"slide file {path}: slide id")
    if name.startswith("."):
        raise ValueError(f"slide file {path}: slide id {name!r} starts with '.', which is reserved for "
                         "temporary folders; rename the file")  # fmt: skip
    return name


class Slide:
    """A pyramidal whole-slide image opened for region reads.

    Args:
        path: tiled pyramidal TIFF / OME-TIFF (pyramid as SubIFDs or as reduced-resolution pages).
        min_levels: fewer resolution levels than this is an error (tissue detection needs a
            low-resolution level; reading a flat gigapixel TIFF would load it whole).

    Attributes:
        name: slide identifier (file name without the TIFF suffix).
        shapes: ``(height, width)`` of every level, level 0 first.
        downsamples: level-0 pixels per pixel of every level.
    """

    def __init__(self, path: str | os.PathLike[str], min_levels: int = 2) -> None:
        import tifffile
        import zarr

        self.path = Path(path)
        self.name = _name(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"slide {self.name}: {self.path} does not exist")
        try:
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            levels = list(series.levels)
            # zarr.open on a tifffile level store gives an Array (stubs say Array | Group)
            self._arrays: list[Any] = [zarr.open(series.aszarr(level=i), mode="r") for i in range(len(levels))]
        except Exception as e:
            cut = _truncation(getattr(self, "_tif", None), self.path)
            self.close()
            if cut:
                raise SlideReadError(f"slide {self.name}: {cut}") from e
            raise SlideReadError(f"slide {self.name}: cannot read {self.path} as a TIFF ({type(e).__name__}: {e})") from e
        cut = _truncation(self._tif, self.path)
        if cut:
            self.close()
            raise SlideReadError(f"slide {self.name}: {cut}")
        codec = _missing_codec(levels)
        if codec:
            self.close()
            raise SlideReadError(
                f"slide {self.name}: {self.path} stores its tiles {codec}-compressed, and tifffile decodes that "
                "with the imagecodecs package, which is not installed here (pip install imagecodecs)"
            )
        if len(levels) < min_levels:
            self.close()
            raise SlideReadError(
                f"slide {self.name}: {self.path} is not pyramidal ({len(levels)} resolution level); "
                "write it as a tiled pyramid (e.g. tifffile subifds=, or `vips tiffsave --pyramid --tile`)"
            )
        self.axes = series.axes
        shapes, channels = [], []
        for arr in self._arrays:
            shape = tuple(arr.shape)
            if len(shape) == 2:
                shape = (*shape, 1)
            if len(shape) != 3 or shape[-1] not in (1, 3, 4):
                self.close()
                raise SlideReadError(f"slide {self.name}: expected RGB levels [H, W, 3], got shape {shape} (axes {self.axes})")
            shapes.append(shape[:2])
            channels.append(shape[-1])
        self.channels = channels[0]
        """Samples per pixel: 3 (RGB), 4 (RGBA) or 1 (grayscale)."""
        self.shapes: list[tuple[int, int]] = shapes
        self.downsamples = [shapes[0][1] / s[1] for s in shapes]

    # -- reading ---------------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        return len(self.shapes)

    def read_level(self, level: int) -> np.ndarray:
        """A whole level as ``[H, W, 3]`` uint8 (meant for low-resolution levels only)."""
        h, w = self.shapes[level]
        return self.read_region(level, 0, 0, h, w)

    def read_region(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        """``[height, width, 3]`` uint8 at ``level`` with top-left ``(y, x)`` in that level's pixels.

        Parts outside the image are filled with white (background).
        """
        h, w = self.shapes[level]
        out = np.full((height, width, 3), 255, np.uint8)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + height, h), min(x + width, w)
        if y1 <= y0 or x1 <= x0:
            return out
        try:
            region = np.asarray(self._arrays[level][y0:y1, x0:x1])
        except Exception as e:
            raise SlideReadError(
                f"slide {self.name}: cannot decode level {level} region y={y0}:{y1} x={x0}:{x1} "
                f"(truncated or corrupt file? {type(e).__name__}: {e})"
            ) from e
        if region.ndim == 2:
            region = region[..., None]
        if region.shape[-1] == 1:
            region = np.repeat(region, 3, axis=-1)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = _to_uint8(region[..., :3])
        return out

    def read_tiles(self, coords: np.ndarray, tile_size: int, level: int = 0) -> np.ndarray:
        """Tiles ``[n, tile_size, tile_size, 3]`` uint8; ``coords [n, 2]`` are level-0 ``(y, x)``."""
        d = self.downsamples[level]
        out = np.empty((len(coords), tile_size, tile_size, 3), np.uint8)
        for i, (y, x) in enumerate(np.asarray(coords)):
            out[i] = self.read_region(level, int(round(y / d)), int(round(x / d)), tile_size, tile_size)
        return out

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({self.name!r}, levels={self.shapes})"


def _missing_codec(levels: Sequence[Any]) -> str | None:
    """Name of the first compression of ``levels`` that tifffile cannot decode here (e.g. ``JPEG``
    without imagecodecs: the compression of most scanner and CAMELYON slides), else ``None``."""
    from tifffile import TIFF

    for level in levels:
        page = getattr(level, "keyframe", None)
        compression = getattr(page, "compression", None)
        if compression is not None and compression not in TIFF.DECOMPRESSORS:
            return str(getattr(compression, "name", compression))
    return None


def _truncation(tf: Any, path: Path) -> str | None:
    """Why ``path`` looks cut short (an IFD, SubIFD or image data past its end), else ``None``."""
    size = path.stat().st_size
    if tf is None:
        return None
    where = f"{path} is truncated: "
    fix = f", but the file ends at byte {size}; re-copy or re-export the slide"
    try:
        pages = list(tf.pages)
    except Exception:  # a broken page chain: the checks below use what was read
        pages = [tf.pages[0]] if len(tf.pages) else []
    fmt = tf.tiff
    for i, page in enumerate(pages):
        offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
        end = max((int(o) + int(c) for o, c in zip(offsets, counts) if c), default=0)
        if end > size:
            return f"{where}the image data of page {i} runs to byte {end}{fix}"
        sub = page.tags.get("SubIFDs") if hasattr(page, "tags") else None
        for j, off in enumerate(sub.value if sub is not None else ()):
            if int(off) >= size:
                return f"{where}reduced-resolution level {j + 1} (SubIFD of page {i}) starts at byte {int(off)}{fix}"
    if pages and hasattr(pages[-1], "tags"):  # the last page read points to a next IFD past the end?
        last = pages[-1]
        try:
            fh = tf.filehandle
            fh.seek(last.offset)
            n = int(np.frombuffer(fh.read(fmt.tagnosize), np.dtype(tf.byteorder + fmt.tagnoformat[-1]))[0])
            fh.seek(last.offset + fmt.tagnosize + n * fmt.tagsize)
            raw = fh.read(fmt.offsetsize)
            nxt = int(np.frombuffer(raw, np.dtype(tf.byteorder + fmt.offsetformat[-1]))[0]) if len(raw) == fmt.offsetsize else 0
        except Exception:
            nxt = 0
        if nxt >= size:
            return f"{where}page {len(pages)} (IFD) starts at byte {nxt}{fix}"
    for lev_i, lev in enumerate(tf.series[0].levels if tf.series else ()):
        for page in getattr(lev, "pages", ()):
            offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
            end = max((int(o) + int(c) for o, c in zip(offsets, counts) if c), default=0)
            if end > size:
                return f"{where}the image data of level {lev_i} runs to byte {end}{fix}"
    return None


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    a = a.astype(np.float32)
    return np.clip(a * 255 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)


# -- tissue detection and tile grids --------------------------------------------------------------
def tissue_mask(
    slide: Slide, level: int | None = None, min_object_fraction: float = 0.001, closing_radius: int = 2
) -> tuple[np.ndarray, float]:
    """Tissue mask of a low-resolution level: Otsu on HSV saturation + scikit-image cleaning.

    Args:
        slide: an open :class:`Slide`.
        level: level to threshold (default: the lowest resolution).
        min_object_fraction: objects and holes smaller than this fraction of the level are removed.
        closing_radius: radius of the binary closing (disk) applied after thresholding.

    Returns:
        ``(mask [h, w] bool, downsample)``: the mask and the level-0 pixels per mask pixel.
    """
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import isotropic_closing, remove_small_holes, remove_small_objects

    level = slide.n_levels - 1 if level is None else level
    if slide.channels == 1:
        raise SlideReadError(
            f"slide {slide.name}: {slide.path} is a grayscale pyramid (1 sample per pixel): tissue detection "
            "thresholds colour saturation and needs an RGB (brightfield) slide; pass mask= to tile_slide for others"
        )
    rgb = slide.read_level(level)
    sat = rgb2hsv(rgb)[..., 1]
    if float(sat.max() - sat.min()) < 1e-3:
        grey = rgb[..., 0].astype(np.float32)
        if float(grey.max() - grey.min()) > 16 and float(sat.max()) < 1e-3:
            raise SlideReadError(
                f"slide {slide.name}: {slide.path} has no colour (R = G = B at every pixel of level {level}) but its "
                "brightness varies: a grayscale image stored as RGB; tissue detection thresholds colour saturation "
                "and needs a stained RGB slide; pass mask= to tile_slide for others"
            )
        return np.zeros(sat.shape, bool), slide.downsamples[level]
    thr = threshold_otsu(sat)
    mask = sat > max(thr, 0.05)  # glass never counts, even on a slide that is all background
    min_size = max(1, int(min_object_fraction * mask.size))
    if closing_radius > 0:
        mask = isotropic_closing(mask, closing_radius)
    mask = remove_small_objects(mask, max_size=min_size) if _has_max_size() else remove_small_objects(mask, min_size)
    mask = remove_small_holes(mask, max_size=min_size) if _has_max_size() else remove_small_holes(mask, min_size)
    return mask, slide.downsamples[level]


def _has_max_size() -> bool:
    import inspect

    from skimage.morphology import remove_small_objects

    return "max_size" in inspect.signature(remove_small_objects).parameters


@dataclass
class TileGrid:
    """Tiles of one slide that contain tissue.

    Attributes:
        slide: slide identifier; path: its file.
        coords: ``[N, 2]`` int64 level-0 ``(y, x)`` of every tile's top-left corner (row-major).
        tile_size: tile edge in pixels of ``level``; level: pyramid level tiles are read at.
        downsample: level-0 pixels per pixel of ``level`` (a tile covers ``tile_size * downsample``).
        tissue_fraction: ``[N]`` share of each tile's footprint covered by the tissue mask.
    """

    slide: str
    path: str
    coords: np.ndarray
    tile_size: int
    level: int = 0
    downsample: float = 1.0
    tissue_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.coords)

    def to_json(self) -> dict[str, Any]:
        return {"slide": self.slide, "path": self.path, "tile_size": self.tile_size, "level": self.level,
                "downsample": self.downsample, "coords": self.coords.tolist(),
                "tissue_fraction": [round(float(f), 4) for f in self.tissue_fraction]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TileGrid:
        coords = np.asarray(data["coords"], np.int64).reshape(-1, 2)
        frac = np.asarray(data.get("tissue_fraction", []), np.float32)
        level, ds = int(data["level"]), float(data["downsample"])
        return cls(data["slide"], data["path"], coords, int(data["tile_size"]), level, ds, frac)


def tile_slide(
    slide: Slide | str | os.PathLike[str],
    tile_size: int = 256,
    level: int = 0,
    magnification: float | None = None,
    base_magnification: float | None = None,
    min_tissue: float = 0.5,
    mask: tuple[np.ndarray, float] | None = None,
) -> TileGrid:
    """Coordinates of the non-overlapping tiles of ``slide`` whose footprint is mostly tissue.

    Args:
        slide: an open :class:`Slide` or a path.
        tile_size: tile edge in pixels of the chosen level.
        level: pyramid level to tile (ignored when ``magnification`` is given).
        magnification: target magnification (e.g. 20); picks the level whose magnification
            ``base_magnification / downsample`` is closest.
        base_magnification: magnification of level 0 (e.g. 40); required with ``magnification``.
        min_tissue: minimum share of a tile's footprint covered by the tissue mask.
        mask: precomputed ``tissue_mask(slide)`` result.

    Raises:
        SlideReadError: no tile holds enough tissue, or the slide is grayscale (tissue detection
            needs colour; pass ``mask=``); the message names the slide.
    """
    if not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size={tile_size!r}: must be a positive integer")
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue={min_tissue}: must be in [0, 1]")
    own = not isinstance(slide, Slide)
    s = Slide(cast("str | os.PathLike[str]", slide)) if own else cast(Slide, slide)
    try:
        if magnification is not None:
            if not base_magnification:
                raise ValueError(f"slide {s.name}: magnification={magnification} needs base_magnification= (of level 0)")
            mags = [base_magnification / d for d in s.downsamples]
            level = int(np.argmin([abs(np.log(m / magnification)) for m in mags]))
        if not 0 <= level < s.n_levels:
            raise ValueError(f"slide {s.name}: level={level} out of range (the slide has {s.n_levels} levels)")
        m, mask_ds = mask if mask is not None else tissue_mask(s)
        d = s.downsamples[level]
        h, w = s.shapes[level]
        ny, nx = h // tile_size, w // tile_size
        if ny == 0 or nx == 0:
            raise SlideReadError(f"slide {s.name}: level {level} ({h}x{w}) is smaller than one tile of {tile_size}")
        # Tissue share of every tile footprint from an integral image of the mask.
        step = tile_size * d / mask_ds  # tile edge in mask pixels
        ii = np.pad(m.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        ys = np.clip(np.round(np.arange(ny + 1) * step).astype(int), 0, m.shape[0])
        xs = np.clip(np.round(np.arange(nx + 1) * step).astype(int), 0, m.shape[1])
        area = np.maximum(np.diff(ys)[:, None] * np.diff(xs)[None, :], 1)
        sums = ii[ys[1:]][:, xs[1:]] - ii[ys[:-1]][:, xs[1:]] - ii[ys[1:]][:, xs[:-1]] + ii[ys[:-1]][:, xs[:-1]]
        frac = sums / area
        iy, ix = np.nonzero(frac >= max(min_tissue, 1e-9))
        if len(iy) == 0:
            raise SlideReadError(f"slide {s.name}: no tissue found (no {tile_size}px tile at level {level} "
                                 f"is >= {min_tissue:.0%} tissue); is the slide blank or the stain very faint?")  # fmt: skip
        coords = np.stack([np.round(iy * tile_size * d), np.round(ix * tile_size * d)], 1).astype(np.int64)
        return TileGrid(s.name, str(s.path), coords, tile_size, level, float(d), frac[iy, ix].astype(np.float32))
    finally:
        if own:
            s.close()


def read_labels(path: str | os.PathLike[str]) -> dict[str, int]:
    """``slide,label`` CSV (header row required) -> ``{slide: label}``."""
    path = Path(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"slide", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with columns slide,label")
    out = {}
    for r in rows:
        try:
            out[r["slide"]] = int(r["label"])
        except ValueError:
            raise ValueError(f"{path}: slide {r['slide']}: label {r['label']!r} is not an integer") from None
    return out


# -- synthetic slides --------------------------------------------------------------------------------
def write_pyramid(path: str | os.PathLike[str], image: np.ndarray, levels: int = 3, tile: int = 64) -> Path:
    """Write ``image [H, W, 3]`` uint8 as a tiled pyramidal TIFF (level 0 + SubIFD reductions by 2)."""
    import tifffile

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tifffile.TiffWriter(tmp) as tif:
        opts: dict[str, Any] = {"tile": (tile, tile), "photometric": "rgb", "compression": None,
                                "metadata": None}
        tif.write(image, subifds=levels - 1, **opts)
        for i in range(1, levels):
            f = 2**i
            h, w = image.shape[0] // f, image.shape[1] // f
            small = image[: h * f, : w * f].reshape(h, f, w, f, 3).mean((1, 3)).round().astype(np.uint8)
            tif.write(small, subfiletype=1, **opts)
    os.replace(tmp, path)
    return path


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, nuclei: float | np.ndarray,
             radius: tuple[float, float], color: np.ndarray) -> np.ndarray:  # fmt: skip
    """Stained-tissue-like texture: a base stain colour with noise and dark round nuclei.

    ``nuclei`` is the density in nuclei per 1000 pixels, a number or an ``[h, w]`` map.
    """
    noise = 8 * rng.standard_normal((h, w, 1), dtype=np.float32) + 4 * rng.standard_normal((h, w, 3), dtype=np.float32)
    img = np.clip(base[None, None, :].astype(np.float32) + noise, 0, 255)
    density = np.broadcast_to(np.asarray(nuclei, np.float64), (h, w))
    top = float(density.max())
    n = rng.poisson(top * h * w / 1000)
    ys, xs, rs = rng.integers(0, h, n), rng.integers(0, w, n), rng.uniform(*radius, n)
    keep = rng.uniform(0, top, n) < density[ys, xs] if top > 0 else np.zeros(n, bool)
    rmax = int(np.ceil(radius[1]))
    oy, ox = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1]
    for cy, cx, r in zip(ys[keep], xs[keep], rs[keep]):
        disk = oy**2 + ox**2 <= r * r
        py, px = oy[disk] + cy, ox[disk] + cx
        ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
        img[py[ok], px[ok]] = color + rng.normal(0, 6, 3)
    return img


def make_synthetic_slides(
    directory: str | os.PathLike[str],
    n: int = 16,
    seed: int = 0,
    size: int = 1024,
    tile_size: int = 64,
    levels: int = 3,
    positive_fraction: float = 0.5,
    n_informative: tuple[int, int] = (1, 3),
) -> list[dict[str, Any]]:
    """Write ``n`` small pyramidal slides whose label is the presence of a rare tile pattern.

    Every slide has white glass background and 2-4 elliptical tissue regions with a
    slide-specific stain colour; each region has its own nuclei density (0.3-4.5 per 1000 px), so
    the bag mean varies a lot between slides. A positive slide additionally holds
    ``n_informative`` tiles (tile-aligned at ``tile_size``, inside tissue) of a distinctive
    pattern: densely packed (7 per 1000 px), large (radius 4-6.5 px vs 2-4.5), darker nuclei. Negatives have no
    such tile, so the label depends on a few percent of the tissue tiles only.

    Files: ``slide_000.tif``, ``slide_001.tif``, ... (tiled pyramids, ``levels`` levels with SubIFDs), ``labels.csv``
    (``slide,label``) and ``slides.json`` (label and informative tile coordinates per slide).

    Returns:
        one dict per slide: ``slide``, ``path``, ``label``, ``informative`` (list of level-0 ``(y, x)``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.array([1] * int(round(n * positive_fraction)) + [0] * (n - int(round(n * positive_fraction))))
    rng.shuffle(labels)
    out = []
    g = size // tile_size
    for i, label in enumerate(labels.tolist()):
        img = 242 + 3 * rng.standard_normal((size, size, 3), dtype=np.float32)
        yy, xx = np.ogrid[0:size, 0:size]
        yy, xx = (yy / size).astype(np.float32), (xx / size).astype(np.float32)
        tissue = np.zeros((size, size), bool)
        density = np.zeros((size, size), np.float32)
        for _ in range(rng.integers(2, 5)):  # tissue regions, each with its own nuclei density
            cy, cx = rng.uniform(0.3, 0.7, 2)
            ry, rx = rng.uniform(0.15, 0.35, 2)
            th = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u, v = dy * np.cos(th) + dx * np.sin(th), -dy * np.sin(th) + dx * np.cos(th)
            region = (u / ry) ** 2 + (v / rx) ** 2 <= 1
            density[region] = rng.uniform(0.3, 4.5)
            tissue |= region
        stroma = np.array([225, 150, 190]) + rng.normal(0, 12, 3)  # eosin pink, jittered per slide
        nucleus = np.array([95, 60, 150]) + rng.normal(0, 10, 3)  # haematoxylin purple
        tex = _texture(rng, size, size, stroma, nuclei=density, radius=(2, 4.5), color=nucleus)
        img[tissue] = tex[tissue]
        informative: list[list[int]] = []
        if label == 1:
            inside = tissue[: g * tile_size, : g * tile_size].reshape(g, tile_size, g, tile_size).all((1, 3))
            full = list(zip(*np.nonzero(inside)))
            k = min(len(full), int(rng.integers(n_informative[0], n_informative[1] + 1)))
            for j in rng.choice(len(full), size=k, replace=False):
                r, c = int(full[j][0]), int(full[j][1])
                patch = _texture(rng, tile_size, tile_size, stroma * 0.95, nuclei=7.0, radius=(4, 6.5),
                                 color=nucleus * 0.75)  # fmt: skip
                img[r * tile_size:(r + 1) * tile_size, c * tile_size:(c + 1) * tile_size] = patch
                informative.append([r * tile_size, c * tile_size])
        path = write_pyramid(directory / f"slide_{i:03d}.tif", np.clip(img, 0, 255).astype(np.uint8), levels, min(tile_size, 256))
        out.append({"slide": path.stem, "path": str(path), "label": int(label), "informative": sorted(informative)})
    with (directory / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slide", "label"])
        w.writerows([[d["slide"], d["label"]] for d in out])
    (directory / "slides.json").write_text(json.dumps(out, indent=1))
    return out


def iter_slides(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand folders into their ``*.tif``/``*.tiff``/``*.svs`` files (sorted); keep files as given."""
    for p in map(Path, paths):
        if p.is_dir():
            suffixes = (".tif", ".tiff", ".svs")
            yield from sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes and not q.name.startswith("."))
        else:
            yield p
