"""Multispectral satellite imagery: sensor band tables and a GeoTIFF reader.

Band keys are namespaced by sensor (``s2/B04``, ``l8/B4``, ``wv2/Red``, ``wv3/NIR1``) with
``kind="band"`` and the band's centre wavelength in nm. :func:`read_geotiff` returns the same
lazy ``("channel", "y", "x")`` DataArray as :func:`chanformer.datasets.imaging.microscopy.read_image`
(which dispatches here for GeoTIFFs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chanformer.channels import SENTINEL2_BANDS, Channel, ChannelVocab

__all__ = ["SENSORS", "Sensor", "get_sensor", "read_geotiff", "sensor_vocab"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Sensor:
    """A multispectral sensor: key prefix, ordered band table (name -> centre wavelength nm)
    and the band order of common stacked products, keyed by band count.
    """

    name: str
    prefix: str
    bands: dict[str, float]
    stacks: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def key(self, band: str) -> str:
        return f"{self.prefix}/{band}"

    def channel(self, band: str) -> Channel:
        return Channel(self.key(band), kind="band", wavelength_nm=self.bands[band], unit="reflectance")

    def canonical(self, band: str) -> str | None:
        """Case-insensitive band look-up accepting ``B4``/``B04``/``wv2/Red`` spellings."""
        name = band.split("/", 1)[1] if band.startswith(self.prefix + "/") else band
        folded = {b.casefold(): b for b in self.bands}
        hit = folded.get(name.strip().casefold())
        if hit is None and (m := re.fullmatch(r"(?i)b(?:and)?[ _]?0*(\d+)(a?)", name.strip())):
            num, suffix = int(m.group(1)), m.group(2).upper()
            for cand in (f"B{num:02d}{suffix}", f"B{num}{suffix}"):
                if cand.casefold() in folded:
                    return folded[cand.casefold()]
        return hit

    def default_bands(self, count: int) -> tuple[str, ...] | None:
        if count == len(self.bands):
            return tuple(self.bands)
        return self.stacks.get(count)


_S2 = SENTINEL2_BANDS
_L8 = {  # Landsat 8/9 OLI + TIRS centre wavelengths (nm), USGS
    "B1": 443.0, "B2": 482.0, "B3": 561.5, "B4": 654.5, "B5": 865.0, "B6": 1608.5,
    "B7": 2200.5, "B8": 589.5, "B9": 1373.5, "B10": 10895.0, "B11": 12005.0,
}  # fmt: skip
_WV2 = {  # WorldView-2 8-band multispectral centre wavelengths (nm), Maxar
    "Coastal": 427.0, "Blue": 478.0, "Green": 546.0, "Yellow": 608.0,
    "Red": 659.0, "RedEdge": 724.0, "NIR1": 831.0, "NIR2": 908.0,
}  # fmt: skip
_WV3 = {  # WorldView-3 8-band VNIR multispectral centre wavelengths (nm), Maxar
    "Coastal": 425.0, "Blue": 480.0, "Green": 545.0, "Yellow": 605.0,
    "Red": 660.0, "RedEdge": 725.0, "NIR1": 832.5, "NIR2": 950.0,
}  # fmt: skip

_S2_STACKS = {
    12: tuple(b for b in _S2 if b != "B10"),  # L2A
    10: ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),  # 10 m + 20 m
    4: ("B02", "B03", "B04", "B08"),  # 10 m
}
_L8_STACKS = {7: ("B1", "B2", "B3", "B4", "B5", "B6", "B7"), 9: tuple(f"B{i}" for i in range(1, 10))}

SENSORS: dict[str, Sensor] = {
    "sentinel2": Sensor("sentinel2", "s2", dict(_S2), _S2_STACKS),
    "landsat8": Sensor("landsat8", "l8", dict(_L8), _L8_STACKS),
    "worldview2": Sensor("worldview2", "wv2", dict(_WV2)),
    "worldview3": Sensor("worldview3", "wv3", dict(_WV3)),
}
_ALIASES = {"s2": "sentinel2", "sentinel-2": "sentinel2", "l8": "landsat8", "landsat9": "landsat8", "l9": "landsat8",
            "landsat-8": "landsat8", "landsat-9": "landsat8", "wv2": "worldview2", "worldview-2": "worldview2",
            "wv3": "worldview3", "worldview-3": "worldview3"}  # fmt: skip


def get_sensor(sensor: str | Sensor) -> Sensor:
    if isinstance(sensor, Sensor):
        return sensor
    name = _ALIASES.get(sensor.strip().lower(), sensor.strip().lower())
    if name not in SENSORS:
        raise ValueError(f"unknown sensor {sensor!r}; known: {', '.join(sorted(SENSORS) + sorted(_ALIASES))}")
    return SENSORS[name]


def sensor_vocab(*sensors: str | Sensor) -> ChannelVocab:
    """Band vocabulary of one or more sensors (e.g. ``sensor_vocab("s2", "wv2")``)."""
    ss = [get_sensor(s) for s in sensors] or list(SENSORS.values())
    return ChannelVocab("+".join(s.prefix for s in ss), [s.channel(b) for s in ss for b in s.bands])


def _gdal_band_names(tf: Any) -> dict[int, str]:
    """Per-band DESCRIPTION items of the GDAL_METADATA tag (42112), if any."""
    tag = tf.pages[0].tags.get(42112)
    if tag is None:
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(str(tag.value))
    except ET.ParseError:
        return {}
    out = {}
    for item in root.iter("Item"):
        sample = item.get("sample")
        if item.get("name", "").upper() == "DESCRIPTION" and sample is not None and item.text:
            out[int(sample)] = item.text.strip()
    return out


def read_geotiff(
    path: PathLike,
    *,
    sensor: str | Sensor,
    bands: Sequence[str] | None = None,
    level: int = 0,
    channels: Sequence[str] | None = None,
) -> Any:
    """Read a multispectral GeoTIFF as a lazy ``("channel", "y", "x")`` DataArray.

    Band names come from ``bands`` (in file order), else from the GDAL band descriptions,
    else from the sensor's standard stack for the file's band count. Unknown band names
    and band counts that disagree raise :class:`~chanformer.datasets.imaging.microscopy.ImageReadError`
    naming the file. ``attrs``: ``source``, ``sensor``, ``crs_epsg`` and ``pixel_size_m``
    (ModelPixelScale, map units) when present; coordinate ``wavelength_nm`` per channel.
    """
    import tifffile

    from chanformer.datasets.imaging.microscopy import ImageReadError, _tiff_layout, _to_dataarray

    path = Path(path)
    sens = get_sensor(sensor)
    with tifffile.TiffFile(path) as tf:
        lazy, n = _tiff_layout(tf, path, level)
        attrs: dict[str, Any] = {"source": str(path), "sensor": sens.name}
        geo = tf.geotiff_metadata if tf.is_geotiff else None
        if geo:
            scale = geo.get("ModelPixelScale")
            if scale is not None:
                attrs["pixel_size_m"] = (float(scale[1]), float(scale[0]))  # (y, x)
            for k in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
                if k in geo:
                    attrs["crs_epsg"] = int(getattr(geo[k], "value", geo[k]))
                    break
        names: Sequence[str] | None = bands
        if names is None:
            desc = _gdal_band_names(tf)
            names = [desc[i] for i in range(n)] if desc and all(i in desc for i in range(n)) else None
    if names is None:
        names = sens.default_bands(n)
        if names is None:
            raise ImageReadError(
                f"{path}: {n} bands, but sensor {sens.name!r} has {len(sens.bands)} bands and no standard "
                f"{n}-band stack; pass bands=[...] in file order",
                path=path,
            )
    if len(names) != n:
        raise ImageReadError(f"{path}: file has {n} bands but {len(names)} band names were given: {list(names)}", path=path)
    canon = []
    for b in names:
        c = sens.canonical(b)
        if c is None:
            raise ImageReadError(
                f"{path}: unknown band {b!r} for sensor {sens.name!r} (known: {', '.join(sens.bands)})",
                path=path,
                channel=b,
            )
        canon.append(c)
    keys = [sens.key(b) for b in canon]
    wl = [sens.bands[b] for b in canon]
    return _to_dataarray(lazy, keys, attrs, channels=channels, coords={"wavelength_nm": wl})
