"""Image datasets that keep channel identity: normalisation, spatial/channel augmentation and a
manifest-driven dataset mixing sources with different channel sets.

* :class:`ChannelNormalizer` - per-channel-key percentile (p1/p99.8) or mean/std statistics,
  computed once in float64 and saved/loaded as JSON.
* :func:`tile_grid`, :func:`random_flip_rot`, :func:`random_channel_drop`,
  :func:`channel_shuffle` and :class:`ImageAugment` - transforms on ``[C, H, W]`` that move
  each channel's values together with its id.
* :class:`ImageManifestDataset` - rows of a CSV/Parquet manifest (one file per image, or one
  file per channel grouped by ``image_id``) -> :class:`~chanformer.batch.ChannelSample`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab, UnknownChannelError
from chanformer.datasets.imaging.microscopy import ImageReadError, image_channels, read_image, read_tile, stain_key
from chanformer.io import write_text_atomic

__all__ = [
    "ChannelNormalizer",
    "ImageAugment",
    "ImageManifestDataset",
    "channel_shuffle",
    "random_channel_drop",
    "random_flip_rot",
    "tile_grid",
]

PathLike = str | os.PathLike[str]


# -- normalisation ------------------------------------------------------------------------
class ChannelNormalizer:
    """Per-channel statistics keyed by channel key, applied as ``(x - a) / b`` in float64.

    ``method="percentile"``: ``a = p_low``, ``b = p_high - p_low`` over all pixels of the
    channel in the dataset (subsampled to ``max_samples`` per image). ``method="meanstd"``:
    ``a = mean``, ``b = std`` (exact, combined across images with Chan's formula).

    Statistics are computed over finite pixels. Non-finite pixels (NaN, +-inf) in the values to
    normalise raise ``ValueError`` naming the channel, unless ``fill_nonfinite`` gives the value
    (in normalised units, e.g. ``0.0``) that replaces them. Statistics must be finite (checked
    on fit and load, naming the channel); a channel with zero spread (constant over the data)
    is reported with a warning at fit and scaled by 1.
    """

    def __init__(self, method: str = "percentile", low: float = 1.0, high: float = 99.8,
                 stats: dict[str, tuple[float, float]] | None = None, max_samples: int = 200_000,
                 fill_nonfinite: float | None = None) -> None:  # fmt: skip
        if method not in ("percentile", "meanstd"):
            raise ValueError(f"ChannelNormalizer method must be 'percentile' or 'meanstd', got {method!r}")
        self.method, self.low, self.high, self.max_samples = method, float(low), float(high), int(max_samples)
        if fill_nonfinite is not None and not np.isfinite(fill_nonfinite):
            raise ValueError(f"fill_nonfinite must be a finite number or None, got {fill_nonfinite!r}")
        self.fill_nonfinite = None if fill_nonfinite is None else float(fill_nonfinite)
        self.stats: dict[str, tuple[float, float]] = dict(stats or {})
        self.check_stats()

    def check_stats(self, source: str = "ChannelNormalizer") -> None:
        """Refuse non-finite statistics, naming the channels."""
        bad = [f"{k} ({a:g}, {b:g})" for k, (a, b) in self.stats.items() if not (np.isfinite(a) and np.isfinite(b))]
        if bad:
            raise ValueError(f"{source}: non-finite statistics (offset, scale) for channel(s) {', '.join(bad)}")

    @property
    def fitted(self) -> bool:
        return bool(self.stats)

    def fit(self, images: Iterable[tuple[Any, Sequence[str]]]) -> ChannelNormalizer:
        """Compute statistics from ``(values [C, H, W], channel_keys)`` pairs (once)."""
        samples: dict[str, list[np.ndarray]] = {}
        moments: dict[str, tuple[float, float, float]] = {}  # n, mean, M2
        for values, keys in images:
            arr = np.asarray(values)
            if arr.shape[0] != len(keys):
                raise ValueError(f"fit(): values have {arr.shape[0]} channels but {len(keys)} keys were given")
            for c, key in enumerate(keys):
                x = arr[c].reshape(-1).astype(np.float64)
                x = x[np.isfinite(x)]
                if x.size == 0:
                    continue
                if self.method == "percentile":
                    step = max(1, x.size // self.max_samples)
                    samples.setdefault(key, []).append(x[::step])
                else:
                    n_b, m_b, m2_b = float(x.size), float(x.mean()), float(((x - x.mean()) ** 2).sum())
                    n_a, m_a, m2_a = moments.get(key, (0.0, 0.0, 0.0))
                    n = n_a + n_b
                    d = m_b - m_a
                    moments[key] = (n, m_a + d * n_b / n, m2_a + m2_b + d * d * n_a * n_b / n)
        if self.method == "percentile":
            for key, parts in samples.items():
                lo, hi = np.percentile(np.concatenate(parts), [self.low, self.high])
                self.stats[key] = (float(lo), float(hi - lo))
        else:
            for key, (n, mean, m2) in moments.items():
                self.stats[key] = (mean, float(np.sqrt(m2 / n)))
        if not self.stats:
            raise ValueError("ChannelNormalizer.fit(): no finite pixels seen")
        self.check_stats("ChannelNormalizer.fit()")
        flat = sorted(k for k, (_, b) in self.stats.items() if not b > 0)
        if flat:
            warnings.warn(
                f"ChannelNormalizer.fit(): channel(s) {', '.join(flat)} are constant over the data (zero "
                f"{'spread p_high - p_low' if self.method == 'percentile' else 'std'}); they are scaled by 1",
                UserWarning,
                stacklevel=2,
            )
        return self

    def __call__(self, values: Any, keys: Sequence[str], source: str | None = None) -> np.ndarray:
        """Normalise ``[C, ...]`` values whose channels have ``keys``; returns float32.

        Non-finite values raise ``ValueError`` naming the channel (and ``source``), unless
        ``fill_nonfinite`` is set; then they become that value in the output.
        """
        missing = [k for k in keys if k not in self.stats]
        if missing:
            raise UnknownChannelError(missing, "ChannelNormalizer statistics")
        x = np.asarray(values)
        if x.dtype.kind == "c":
            raise ValueError(f"{source or 'ChannelNormalizer'}: complex values (dtype {x.dtype}) cannot be normalised")
        x = x.astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            if self.fill_nonfinite is None:
                raise ValueError(_nonfinite_message(bad, keys, source or "ChannelNormalizer input"))
            x = np.where(bad, 0.0, x)
        a = np.array([self.stats[k][0] for k in keys]).reshape(-1, *([1] * (x.ndim - 1)))
        b = np.array([self.stats[k][1] for k in keys]).reshape(a.shape)
        b = np.where(b > 0, b, 1.0)
        out = ((x - a) / b).astype(np.float32)
        big = ~np.isfinite(out) & ~bad
        if big.any():
            raise ValueError(
                f"{source or 'ChannelNormalizer'}: channel {keys[int(np.argwhere(big)[0][0])]}: normalised values "
                "overflow float32 (scale too small?)"
            )
        if bad.any():
            out[bad] = self.fill_nonfinite
        return out

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "low": self.low, "high": self.high, "fill_nonfinite": self.fill_nonfinite,
                "stats": {k: list(v) for k, v in self.stats.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelNormalizer:
        stats = {k: (float(v[0]), float(v[1])) for k, v in data.get("stats", {}).items()}
        return cls(data.get("method", "percentile"), data.get("low", 1.0), data.get("high", 99.8), stats,
                   fill_nonfinite=data.get("fill_nonfinite"))  # fmt: skip

    def save(self, path: PathLike) -> None:
        write_text_atomic(Path(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: PathLike) -> ChannelNormalizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"normaliser file {path} is not valid JSON: {e}") from None
        try:
            return cls.from_json(data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise ValueError(f"normaliser file {path}: {e}") from None


def _nonfinite_message(bad: np.ndarray, keys: Sequence[str], source: str) -> str:
    per = bad.reshape(bad.shape[0], -1).sum(1)
    listing = ", ".join(f"{keys[c]} ({int(per[c])} pixel(s))" for c in np.flatnonzero(per))
    return (
        f"{source}: non-finite (NaN/inf) pixels in channel(s) {listing}; fix the image or pass "
        "fill_nonfinite=<value> (ChannelNormalizer / ImageManifestDataset) to replace them"
    )


# -- transforms ---------------------------------------------------------------------------
def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def tile_grid(
    shape: Sequence[int], tile: int | Sequence[int], stride: int | Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Top-left ``(y, x)`` of tiles covering an ``(H, W)`` (or ``[C, H, W]``) image; the last
    row/column is shifted to end at the border so every pixel is covered.
    """
    h, w = shape[-2], shape[-1]
    th, tw = _pair(tile)
    sy, sx = _pair(stride) if stride is not None else (th, tw)
    if th > h or tw > w:
        raise ValueError(f"image {h}x{w} is smaller than the requested {th}x{tw} tile")
    if th <= 0 or tw <= 0 or sy <= 0 or sx <= 0:
        raise ValueError(f"tile and stride must be positive, got tile={tile}, stride={stride}")

    def starts(n: int, t: int, s: int) -> list[int]:
        out = list(range(0, n - t + 1, s))
        return out if out[-1] == n - t else [*out, n - t]

    return [(y, x) for y in starts(h, th, sy) for x in starts(w, tw, sx)]


def random_flip_rot(values: Tensor, rng: np.random.Generator) -> Tensor:
    """Random horizontal/vertical flip and 90-degree rotation of ``[C, H, W]`` (all channels alike)."""
    if rng.random() < 0.5:
        values = values.flip(-1)
    if rng.random() < 0.5:
        values = values.flip(-2)
    k = int(rng.integers(4))
    return values.rot90(k, dims=(-2, -1)) if k else values


def random_channel_drop(values: Tensor, channel_ids: Tensor, p: float, rng: np.random.Generator,
                        coords: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
    """Drop each channel with probability ``p``, always keeping at least one."""
    keep = rng.random(values.shape[0]) >= p
    if not keep.any():
        keep[rng.integers(values.shape[0])] = True
    idx = torch.from_numpy(np.flatnonzero(keep))
    return values[idx], channel_ids[idx], None if coords is None else coords[idx]


def channel_shuffle(values: Tensor, channel_ids: Tensor, rng: np.random.Generator,
                    coords: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
    """Permute channel order; values, ids (and coords) move together so identities stay correct."""
    perm = torch.from_numpy(rng.permutation(values.shape[0]))
    return values[perm], channel_ids[perm], None if coords is None else coords[perm]


class ImageAugment:
    """Callable ``ChannelSample -> ChannelSample``: flips/rot90, channel drop, channel shuffle."""

    def __init__(self, flip_rot: bool = True, channel_drop: float = 0.0, shuffle: bool = False,
                 seed: int | None = None) -> None:  # fmt: skip
        self.flip_rot, self.channel_drop, self.shuffle = flip_rot, float(channel_drop), shuffle
        self.rng = np.random.default_rng(seed)

    def __call__(self, s: ChannelSample) -> ChannelSample:
        v, ids, coords = s.values, s.channel_ids, s.coords
        if self.flip_rot:
            v = random_flip_rot(v, self.rng)
        if self.channel_drop > 0:
            v, ids, coords = random_channel_drop(v, ids, self.channel_drop, self.rng, coords)
        if self.shuffle:
            v, ids, coords = channel_shuffle(v, ids, self.rng, coords)
        return ChannelSample(v.contiguous(), ids, coords=coords, target=s.target, covariates=s.covariates)


# -- manifest dataset ---------------------------------------------------------------------
def _read_manifest(manifest: Any) -> Any:
    import pandas as pd

    if isinstance(manifest, pd.DataFrame):
        return manifest.reset_index(drop=True), None
    path = Path(manifest)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    return df, path.parent


def _names(cell: Any) -> list[str] | None:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip() == "":
        return None
    return [n.strip() for n in str(cell).split(";") if n.strip()]


class ImageManifestDataset(Dataset[ChannelSample]):
    """Images listed in a manifest, as normalised ``[C, H, W]`` float32 :class:`ChannelSample` s.

    Manifest columns: ``path`` (relative to the manifest folder or ``root``); optional
    ``image_id`` (rows sharing it are the per-channel files of one image, stacked in row
    order), ``channel``/``channels`` (';'-separated channel names of that file, in file
    order; bare names become ``stain/<name>``), ``label``, and ``sensor`` (GeoTIFF rows).

    Args:
        vocab: channel vocabulary; unknown keys raise unless ``grow_vocab`` adds them.
        tile: random ``tile x tile`` crop read from the file region only (lazy TIFF/Zarr).
        normalizer: a fitted :class:`ChannelNormalizer` (see :meth:`fit_normalizer`).
        transform: e.g. :class:`ImageAugment`, applied to the sample last.
        fill_nonfinite: NaN/inf pixels raise :class:`ImageReadError` naming file, channel and image
            (default), unless this value (or the normaliser's ``fill_nonfinite``) replaces them in
            the output (normalised units when a normaliser is set).
        missing_chunks: OME-Zarr files with missing chunks ``"error"`` (default) or ``"fill"``
            (see :func:`~chanformer.datasets.imaging.microscopy.read_image`).
    """

    def __init__(self, manifest: Any, vocab: ChannelVocab, *, root: PathLike | None = None,
                 tile: int | tuple[int, int] | None = None, normalizer: ChannelNormalizer | None = None,
                 transform: Any = None, level: int = 0, grow_vocab: bool = False, seed: int | None = None,
                 fill_nonfinite: float | None = None, missing_chunks: str = "error") -> None:  # fmt: skip
        self.fill_nonfinite, self.missing_chunks = fill_nonfinite, missing_chunks
        df, base = _read_manifest(manifest)
        if "path" not in df.columns:
            raise ValueError(f"manifest has no 'path' column (columns: {list(df.columns)})")
        self.root = Path(root) if root is not None else base or Path(".")
        self.vocab, self.tile, self.normalizer, self.transform = vocab, tile, normalizer, transform
        self.level, self.grow_vocab, self.seed, self._calls = level, grow_vocab, seed, 0
        name_col = "channel" if "channel" in df.columns else "channels" if "channels" in df.columns else None
        groups = df.groupby("image_id", sort=False) if "image_id" in df.columns else ((i, df.iloc[[i]]) for i in range(len(df)))
        self.items: list[dict[str, Any]] = []
        for gid, g in groups:
            files = []
            for _, row in g.iterrows():
                p = Path(str(row["path"]))
                sensor = row.get("sensor") if "sensor" in g.columns and isinstance(row.get("sensor"), str) else None
                files.append((p if p.is_absolute() else self.root / p, _names(row[name_col]) if name_col else None, sensor))
            label = g["label"].iloc[0] if "label" in g.columns else None
            self.items.append({"id": gid, "files": files, "label": label})
        labels = [it["label"] for it in self.items if it["label"] is not None and not _isnan(it["label"])]
        self.classes: list[Any] | None = sorted(set(labels)) if labels and isinstance(labels[0], str) else None

    def __len__(self) -> int:
        return len(self.items)

    def open(self, index: int) -> tuple[list[xr.DataArray], list[str]]:
        """Lazy DataArrays of item ``index`` (one per file) and its channel keys."""
        das: list[xr.DataArray] = []
        keys: list[str] = []
        for path, names, sensor in self.items[index]["files"]:
            da = read_image(path, level=self.level, sensor=sensor, bands=names if sensor else None,
                            missing_chunks=self.missing_chunks)  # fmt: skip
            if names and not sensor:
                if len(names) != da.sizes["channel"]:
                    raise ImageReadError(
                        f"{path}: manifest names {len(names)} channels {names} but the file has {da.sizes['channel']}",
                        path=path,
                    )
                da = da.assign_coords(channel=[stain_key(n) for n in names])
            if das and da.shape[1:] != das[0].shape[1:]:
                raise ImageReadError(
                    f"{path}: size {da.shape[1:]} differs from {das[0].attrs['source']} {das[0].shape[1:]} "
                    f"in image {self.items[index]['id']!r}",
                    path=path,
                )
            das.append(da)
            keys += da["channel"].values.tolist()
        if len(set(keys)) != len(keys):
            raise ImageReadError(f"image {self.items[index]['id']!r}: duplicate channel keys {keys}")
        return das, keys

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(2**62, (1,)).item()))
        self._calls += 1
        return np.random.default_rng([self.seed, index, self._calls])

    def _target(self, label: Any) -> Tensor | None:
        if label is None or _isnan(label):
            return None
        if self.classes is not None:
            return torch.tensor(self.classes.index(label), dtype=torch.long)
        if float(label).is_integer() and not isinstance(label, float | np.floating):
            return torch.tensor(int(label), dtype=torch.long)
        return torch.tensor(float(label), dtype=torch.float32)

    def describe_sample(self, index: int) -> str:
        """``FILE[, FILE...] (image ID)``: the files of item ``index`` (for error messages)."""
        item = self.items[int(index)]
        return f"{', '.join(str(f[0]) for f in item['files'])} (image {item['id']!r})"

    def __getitem__(self, index: int) -> ChannelSample:
        das, keys = self.open(index)
        if self.tile is not None:
            th, tw = _pair(self.tile)
            _, h, w = das[0].shape
            if th > h or tw > w:
                raise ImageReadError(f"{das[0].attrs['source']}: image {h}x{w} is smaller than the requested "
                                     f"{th}x{tw} tile", path=das[0].attrs["source"])  # fmt: skip
            rng = self._rng(index)
            y, x = int(rng.integers(h - th + 1)), int(rng.integers(w - tw + 1))
            values = np.concatenate([read_tile(da, y, x, (th, tw)) for da in das])
        else:
            values = np.concatenate([np.asarray(da.values) for da in das])
        if self.grow_vocab:
            for da in das:
                for ch in image_channels(da):
                    self.vocab.add(ch)
        ids = self.vocab.ids(keys)
        values = self._normalise(values, keys, das, index)
        sample = ChannelSample(torch.from_numpy(values), torch.tensor(ids), target=self._target(self.items[index]["label"]))
        return self.transform(sample) if self.transform is not None else sample

    def _normalise(self, values: np.ndarray, keys: list[str], das: list[xr.DataArray], index: int) -> np.ndarray:
        fill = self.fill_nonfinite
        if fill is None and self.normalizer is not None:
            fill = self.normalizer.fill_nonfinite
        bad = ~np.isfinite(values)
        if bad.any():
            if fill is None:
                files = [str(da.attrs.get("source", da.name)) for da in das for _ in range(da.sizes["channel"])]
                c = int(np.argwhere(bad)[0][0])
                raise ImageReadError(
                    _nonfinite_message(bad, keys, f"{files[c]} (image {self.items[index]['id']!r})"),
                    path=files[c],
                    channel=keys[c],
                )
            values = np.where(bad, 0, values)
        if self.normalizer is not None:
            out = self.normalizer(values, keys, source=f"image {self.items[index]['id']!r}")
        else:
            with np.errstate(over="ignore"):
                out = values.astype(np.float32)
            big = ~np.isfinite(out) & ~bad
            if big.any():
                c = int(np.argwhere(big)[0][0])
                raise ImageReadError(f"image {self.items[index]['id']!r}: channel {keys[c]}: pixel values overflow float32",
                                     channel=keys[c])  # fmt: skip
        if bad.any():
            out[bad] = fill
        return out

    def fit_normalizer(self, path: PathLike | None = None, method: str = "percentile",
                       max_pixels: int = 4_000_000, **kw: Any) -> ChannelNormalizer:  # fmt: skip
        """Load statistics from ``path`` if it exists, else compute them over all images
        (strided to about ``max_pixels`` per image) and save them there atomically.
        """
        if path is not None and Path(path).exists():
            self.normalizer = ChannelNormalizer.load(path)
            return self.normalizer

        def images() -> Iterable[tuple[np.ndarray, list[str]]]:
            for i in range(len(self)):
                das, keys = self.open(i)
                _, h, w = das[0].shape
                s = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
                yield np.concatenate([np.asarray(da[:, ::s, ::s].values) for da in das]), keys

        self.normalizer = ChannelNormalizer(method, **kw).fit(images())
        if path is not None:
            self.normalizer.save(path)
        return self.normalizer


def _isnan(v: Any) -> bool:
    return isinstance(v, float | np.floating) and bool(np.isnan(v))
