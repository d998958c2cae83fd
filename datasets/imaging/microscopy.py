"""Multichannel image readers: OME-TIFF, plain TIFF, PNG, OME-Zarr (NGFF) and GeoTIFF.

:func:`read_image` returns an :class:`xarray.DataArray` with dims ``("channel", "y", "x")``
whose ``channel`` coordinate holds channel keys (``stain/DAPI``, ``s2/B04``, or ``ch0..``
when a file names none). TIFF and Zarr data stay lazy: slicing the DataArray (e.g.
``da.isel(y=slice(0, 256), x=slice(0, 256)).values``) reads only the chunks/tiles it needs
(TIFF through ``tifffile``'s ``aszarr`` store), so a tile of a huge image costs a tile.
``attrs``: ``source`` (file) and ``pixel_size_um`` ``(y, x)`` when the metadata gives it.
Problems raise :class:`ImageReadError`, which names the file (and channel when relevant).

Silently wrong pixels are refused: complex-valued and non-numeric dtypes (a cast to real would
drop the imaginary part), and OME-Zarr arrays with missing chunks (zarr would return the fill
value, e.g. zeros, for them) unless ``missing_chunks="fill"`` says that is intended (writers
with ``write_empty_chunks=False`` skip chunks equal to the fill value).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from chanformer.channels import Channel

__all__ = ["ImageReadError", "image_channels", "read_image", "read_tile", "stain_key"]

PathLike = str | os.PathLike[str]
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3,
               "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "m": 1e6, "meter": 1e6, "Å": 1e-4, "angstrom": 1e-4}  # fmt: skip
_CHANNEL_AXES = ("C", "S", "I", "Q", "P", "E", "H", "L", "A")


class ImageReadError(ValueError):
    """An image cannot be read as asked; the message names the file (and channel)."""

    def __init__(self, message: str, *, path: PathLike | None = None, channel: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.channel = channel


def stain_key(name: str) -> str:
    """Channel key for a stain/marker name: ``"DAPI"`` -> ``"stain/DAPI"`` (keys pass through)."""
    name = str(name).strip()
    return name if "/" in name else f"stain/{name}"


class _LazyCYX(BackendArray):
    """Lazy ``[C, Y, X]`` view of an array whose axes have roles C/Y/X/None (None = index 0)."""

    def __init__(self, path: Path, opener: Callable[[], Any], shape: Sequence[int], dtype: Any, roles: Sequence[str | None],
                 check: Callable[[tuple[Any, ...]], None] | None = None):  # fmt: skip
        _check_dtype(dtype, path)
        self.path, self.opener, self.roles, self.check = path, opener, tuple(roles), check
        size = dict(zip(roles, shape, strict=True))
        self.shape = (size.get("C", 1), size["Y"], size["X"])
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._raw)

    def _raw(self, key: tuple[Any, ...]) -> np.ndarray:
        by_role = dict(zip("CYX", key, strict=True))
        idx, kept = [], []
        for role in self.roles:
            k = 0 if role is None else by_role[role]
            idx.append(k)
            if isinstance(k, slice):
                kept.append(role)
        if self.check is not None:
            self.check(tuple(idx))
        try:
            with self.opener() as arr:
                out = np.asarray(arr[tuple(idx)])
        except Exception as e:
            raise ImageReadError(f"{self.path}: cannot read pixels {key} (corrupt or missing chunk?): {e}", path=self.path) from e
        out = out.transpose([kept.index(r) for r in "CYX" if r in kept])
        if "C" not in self.roles:
            out = np.expand_dims(out, 0)[by_role["C"]]
        return out


def _check_dtype(dtype: Any, path: Path) -> None:
    """Refuse pixel types that do not convert to real numbers without loss of meaning."""
    dt = np.dtype(dtype)
    if dt.kind == "c":
        raise ImageReadError(
            f"{path}: complex-valued pixels (dtype {dt}) are not supported: reading them as real numbers would "
            "drop the imaginary part; store real and imaginary parts (or magnitude and phase) as separate channels",
            path=path,
        )
    if dt.kind not in "biuf":
        raise ImageReadError(f"{path}: pixel dtype {dt} is not numeric (bool, integer or float expected)", path=path)


def _roles(axes: str, shape: Sequence[int], path: Path) -> list[str | None]:
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path}: image axes {axes!r} lack Y/X", path=path)
    chan = [a for a, n in zip(axes, shape, strict=True) if a not in "YX" and (n > 1 or a == "C")]
    pick = "C" if "C" in chan else next((a for a in chan if a in _CHANNEL_AXES), chan[0] if len(chan) == 1 else None)
    if pick is None and chan:
        raise ImageReadError(f"{path}: cannot tell the channel axis among {chan} (axes {axes!r})", path=path)
    return ["Y" if a == "Y" else "X" if a == "X" else "C" if a == pick else None for a in axes]


def _check_size(shape: Sequence[int], path: Path) -> None:
    if 0 in tuple(shape):
        raise ImageReadError(f"{path}: 0-size image, shape [C, H, W] = {tuple(shape)}", path=path)


def _to_dataarray(
    data: np.ndarray | _LazyCYX,
    keys: Sequence[str],
    attrs: dict[str, Any],
    *,
    channels: Sequence[str] | None = None,
    coords: dict[str, Sequence[Any]] | None = None,
) -> xr.DataArray:
    path = Path(attrs["source"])
    _check_size(data.shape, path)
    _check_dtype(data.dtype, path)
    if len(keys) != data.shape[0]:
        raise ImageReadError(
            f"{path}: image has {data.shape[0]} channels but its metadata names {len(keys)}: {list(keys)}", path=path
        )
    if len(set(keys)) != len(keys):
        raise ImageReadError(f"{path}: duplicate channel names {list(keys)}", path=path)
    body = indexing.LazilyIndexedArray(data) if isinstance(data, _LazyCYX) else data
    var = xr.Variable(("channel", "y", "x"), body)
    cc: dict[str, Any] = {"channel": list(keys)}
    for k, v in (coords or {}).items():
        cc[k] = ("channel", np.asarray(v, dtype=float))
    da = xr.DataArray(var, coords=cc, attrs=attrs, name=path.name)
    if channels is not None:
        da = da.isel(channel=[_find_channel(c, keys, path) for c in channels])
    return da


def _find_channel(name: str, keys: Sequence[str], path: Path) -> int:
    folded = [k.casefold() for k in keys]
    for cand in (name, stain_key(name)):
        if cand.casefold() in folded:
            return folded.index(cand.casefold())
    tails = [i for i, k in enumerate(keys) if k.split("/", 1)[-1].casefold() == name.casefold()]
    if len(tails) == 1:
        return tails[0]
    raise ImageReadError(f"{path}: no channel {name!r} (channels: {list(keys)})", path=path, channel=name)


def image_channels(da: xr.DataArray) -> list[Channel]:
    """:class:`Channel` entries (kind, wavelength) for the channels of a :func:`read_image` result."""
    out = []
    for i, key in enumerate(da["channel"].values.tolist()):
        wl = None
        for c in ("wavelength_nm", "emission_nm"):
            if c in da.coords and np.isfinite(float(da[c].values[i])):
                wl = float(da[c].values[i])
                break
        kind = "band" if "wavelength_nm" in da.coords else key.split("/", 1)[0] if "/" in key else "image"
        out.append(Channel(key, kind=kind, wavelength_nm=wl))
    return out


# -- TIFF ---------------------------------------------------------------------------------
def _tiff_layout(tf: Any, path: Path, level: int) -> tuple[_LazyCYX, int]:
    import tifffile
    import zarr

    try:
        series = tf.series[0]
    except (tifffile.TiffFileError, ValueError, IndexError, OSError, struct.error) as e:
        # A file cut short can have a valid header and first page but broken later pages.
        raise ImageReadError(f"{path}: truncated or corrupt TIFF (cannot read its pages: {e})", path=path) from e
    if not 0 <= level < len(series.levels):
        raise ImageReadError(f"{path}: no pyramid level {level} (levels: {len(series.levels)})", path=path)
    lev = series.levels[level]
    roles = _roles(lev.axes, lev.shape, path)
    _check_size([n for r, n in zip(roles, lev.shape, strict=True) if r], path)

    @contextlib.contextmanager
    def opener() -> Iterator[Any]:
        with tifffile.TiffFile(path) as t, t.aszarr(series=0, level=level) as store:
            yield zarr.open_array(store, mode="r")

    lazy = _LazyCYX(path, opener, lev.shape, lev.dtype, roles)
    return lazy, lazy.shape[0]


def _ome_meta(xml: str, path: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ImageReadError(f"{path}: malformed OME-XML: {e}", path=path) from e
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return [], {}
    chans = [dict(el.attrib) for el in pixels if el.tag.rsplit("}", 1)[-1] == "Channel"]
    return chans, dict(pixels.attrib)


def _um(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    return float(value) * _UNIT_TO_UM.get((unit or "µm").strip(), 1.0)


def _read_tiff(path: Path, level: int, channels: Sequence[str] | None) -> xr.DataArray:
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable TIFF: {e}", path=path) from e
    with tf:
        lazy, n = _tiff_layout(tf, path, level)
        attrs: dict[str, Any] = {"source": str(path)}
        keys = [f"ch{i}" for i in range(n)]
        coords: dict[str, Sequence[Any]] = {}
        if tf.is_ome and tf.ome_metadata:
            chans, px = _ome_meta(tf.ome_metadata, path)
            if chans:
                if len(chans) != n:
                    raise ImageReadError(
                        f"{path}: OME metadata lists {len(chans)} channels "
                        f"({[c.get('Name') for c in chans]}) but the image has {n}",
                        path=path,
                    )
                keys = [stain_key(c["Name"]) if c.get("Name") else f"ch{i}" for i, c in enumerate(chans)]
                for attr, coord in (("EmissionWavelength", "emission_nm"), ("ExcitationWavelength", "excitation_nm")):
                    vals = [float(c[attr]) if attr in c else np.nan for c in chans]
                    if not all(np.isnan(vals)):
                        coords[coord] = vals
            sy = _um(px.get("PhysicalSizeY"), px.get("PhysicalSizeYUnit"))
            sx = _um(px.get("PhysicalSizeX"), px.get("PhysicalSizeXUnit"))
            if sy is not None and sx is not None:
                base = tf.series[0].levels[0]
                yi, xi = base.axes.index("Y"), base.axes.index("X")
                fy, fx = base.shape[yi] / lazy.shape[1], base.shape[xi] / lazy.shape[2]
                attrs["pixel_size_um"] = (sy * fy, sx * fx)
    return _to_dataarray(lazy, keys, attrs, channels=channels, coords=coords)


# -- PNG and other PIL formats ------------------------------------------------------------
def _read_pil(path: Path, channels: Sequence[str] | None) -> xr.DataArray:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - PIL is optional
        raise ImageReadError(f"{path}: reading {path.suffix} needs Pillow (pip install pillow)", path=path) from e
    try:
        with Image.open(path) as im:
            if im.mode == "P":
                # Image.open types its target as ImageFile; convert() gives a plain Image, used only via the Image API
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")  # type: ignore[assignment]
            arr = np.asarray(im)
    except Exception as e:
        raise ImageReadError(f"{path}: cannot read image: {e}", path=path) from e
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return _to_dataarray(np.ascontiguousarray(arr), [f"ch{i}" for i in range(arr.shape[0])], {"source": str(path)},
                         channels=channels)  # fmt: skip


# -- OME-Zarr (NGFF) ----------------------------------------------------------------------
def _chunk_checker(arr: Any, path: Path, level: int) -> Callable[[tuple[Any, ...]], None] | None:
    """A check run before every read of ``arr``: each storage chunk (shard, for sharded
    arrays) the read touches must exist in the store, else :class:`ImageReadError` names the
    array and the chunk index (zarr would return the fill value for it). Only the chunks a
    read touches are looked up, so tile reads stay cheap.
    """
    encode = getattr(arr.metadata, "encode_chunk_key", None) or getattr(arr, "_chunk_key", None)
    if encode is None:  # pragma: no cover - zarr without chunk-key encoding
        return None
    array_dir = path / str(arr.path)
    unit = tuple(getattr(arr, "shards", None) or arr.chunks)
    shape = tuple(arr.shape)
    grid = tuple(-(-n // c) for n, c in zip(shape, unit))

    def check(idx: tuple[Any, ...]) -> None:
        ranges = []
        for k, n, c in zip(idx, shape, unit):
            if isinstance(k, slice):
                start, stop, _ = k.indices(n)
                if stop <= start:
                    return
                ranges.append(range(start // c, (stop - 1) // c + 1))
            else:
                i = int(k) % n
                ranges.append(range(i // c, i // c + 1))
        missing = [ci for ci in itertools.product(*ranges) if not (array_dir / encode(ci)).exists()]
        if missing:
            listing = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ImageReadError(
                f"{path}: array {str(arr.path)!r} (level {level}, chunk grid {grid}) has no stored chunk at "
                f"chunk index {listing}; zarr would read {'it' if len(missing) == 1 else 'them'} as the fill value "
                f"{np.asarray(arr.fill_value).item()!r} (truncated copy?). If the writer skipped chunks equal to the "
                "fill value on purpose, pass missing_chunks='fill'",
                path=path,
            )

    return check


def _read_zarr(path: Path, level: int, channels: Sequence[str] | None, missing_chunks: str = "error") -> xr.DataArray:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        meta: dict[str, Any] = dict(group.attrs)
    except Exception as e:
        raise ImageReadError(f"{path}: cannot open as an OME-Zarr group: {e}", path=path) from e
    meta = meta.get("ome", meta)
    if not meta.get("multiscales"):
        raise ImageReadError(f"{path}: no 'multiscales' metadata (not OME-Zarr/NGFF)", path=path)
    ms = meta["multiscales"][0]
    dsets = ms.get("datasets", [])
    if not 0 <= level < len(dsets):
        raise ImageReadError(f"{path}: no multiscale level {level} (levels: {len(dsets)})", path=path)
    try:
        arr: Any = group[dsets[level]["path"]]  # an Array: multiscale dataset paths name arrays
    except Exception as e:
        raise ImageReadError(f"{path}: cannot open level {level} array {dsets[level].get('path')!r}: {e}", path=path) from e
    axes_meta = ms.get("axes") or list({5: "tczyx", 4: "czyx", 3: "cyx", 2: "yx"}[arr.ndim])
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
    if len(names) != arr.ndim:
        raise ImageReadError(f"{path}: axes {names} do not match level {level} shape {arr.shape}", path=path)
    roles = _roles("".join(n[0].upper() for n in names), arr.shape, path)
    check = _chunk_checker(arr, path, level) if missing_chunks == "error" else None
    lazy = _LazyCYX(path, lambda: contextlib.nullcontext(arr), arr.shape, arr.dtype, roles, check)
    attrs: dict[str, Any] = {"source": str(path)}
    for tr in dsets[level].get("coordinateTransformations", []):
        if tr.get("type") == "scale" and "y" in names and "x" in names:
            units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
            yi, xi = names.index("y"), names.index("x")
            if units[yi] in _UNIT_TO_UM and units[xi] in _UNIT_TO_UM:
                attrs["pixel_size_um"] = (_um(tr["scale"][yi], units[yi]), _um(tr["scale"][xi], units[xi]))
    keys = [f"ch{i}" for i in range(lazy.shape[0])]
    omero = meta.get("omero", {}).get("channels")
    if omero:
        if len(omero) != lazy.shape[0]:
            raise ImageReadError(
                f"{path}: omero metadata lists {len(omero)} channels but level {level} has {lazy.shape[0]}", path=path
            )
        keys = [stain_key(c["label"]) if c.get("label") else f"ch{i}" for i, c in enumerate(omero)]
    return _to_dataarray(lazy, keys, attrs, channels=channels)


# -- entry points -------------------------------------------------------------------------
def read_image(
    path: PathLike,
    *,
    level: int = 0,
    channels: Sequence[str] | None = None,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    missing_chunks: str = "error",
) -> xr.DataArray:
    """Read a multichannel image as a (lazy) ``("channel", "y", "x")`` DataArray.

    Args:
        path: OME-TIFF / TIFF (multi-page, RGB or pyramidal), PNG (or any Pillow format),
            OME-Zarr group (a ``.zarr`` folder), or a multispectral GeoTIFF with ``sensor``.
        level: pyramid level (TIFF sub-resolutions, NGFF ``multiscales[0].datasets``).
        channels: keep these channels, in this order (keys, or names such as ``"DAPI"``).
        sensor / bands: for GeoTIFFs (``"sentinel2"``, ``"landsat8"``, ``"worldview2"``,
            ``"worldview3"``); see :func:`chanformer.datasets.imaging.satellite.read_geotiff`.
        missing_chunks: OME-Zarr only: ``"error"`` (default) refuses an array whose store lacks
            chunks of its grid, naming the array and chunk indices; ``"fill"`` reads them as the
            array's fill value (for writers that skip chunks equal to it).

    Raises:
        ImageReadError: unreadable file, complex or non-numeric pixels, missing Zarr chunks, ...
    """
    if missing_chunks not in ("error", "fill"):
        raise ValueError(f"missing_chunks must be 'error' or 'fill', got {missing_chunks!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zarr":
        return _read_zarr(path, level, channels, missing_chunks)
    if sensor is not None:
        from chanformer.datasets.imaging.satellite import read_geotiff

        return read_geotiff(path, sensor=sensor, bands=bands, level=level, channels=channels)
    if suffix in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"):
        if level:
            raise ImageReadError(f"{path}: {suffix} files have no pyramid level {level}", path=path)
        return _read_pil(path, channels)
    return _read_tiff(path, level, channels)


def read_tile(da: xr.DataArray, y: int, x: int, size: int | tuple[int, int]) -> np.ndarray:
    """Read the ``[C, h, w]`` tile at ``(y, x)`` of a :func:`read_image` result (only that region).

    Raises :class:`ImageReadError` naming the file when the tile does not fit in the image.
    """
    h, w = (size, size) if isinstance(size, int) else size
    _, height, width = da.shape
    src = da.attrs.get("source", da.name)
    if h > height or w > width:
        raise ImageReadError(f"{src}: image {height}x{width} is smaller than the requested {h}x{w} tile", path=src)
    if not (0 <= y <= height - h and 0 <= x <= width - w):
        raise ImageReadError(f"{src}: tile at ({y}, {x}) of size {h}x{w} exceeds image {height}x{width}", path=src)
    return np.asarray(da.isel(y=slice(y, y + h), x=slice(x, x + w)).values)
