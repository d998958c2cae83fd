"""Write a miniature BigEarthNet-S2 v1.0 folder.

Same layout and file format as the published ``BigEarthNet-S2-v1.0.tar.gz``:
``<root>/BigEarthNet-v1.0/<patch>/<patch>_<band>.tif`` for the 12 bands (single-band uint16
GeoTIFFs, UTM, 120 x 120 px at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m) and
``<patch>/<patch>_labels_metadata.json`` with ``labels``, ``coordinates``, ``projection``,
``tile_source`` and ``acquisition_date``; plus the BigEarthNet-19 split lists ``train.csv``,
``val.csv``, ``test.csv`` (one patch name per line) and ``patches_with_seasonal_snow.csv``. Only
the number of patches is smaller (:data:`PATCHES`).

Band ``b`` of patch ``i`` holds ``expected(i, b)`` so tests can check the round trip exactly.
``split_style="torchgeo"`` writes torchgeo's ``bigearthnet-{split}.csv`` (``S2 name,S1 name``)
instead; ``split_style=None`` writes no split lists.

Run ``python tests/data/bigearthnet/generate.py OUT``; the tests call :func:`generate` with a
temporary folder (nothing binary is committed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tifffile

BANDS = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60, "B07": 60,
         "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60}  # fmt: skip
#: patch name -> (split, CORINE labels as in the JSON)
PATCHES: dict[str, tuple[str, list[str]]] = {
    "S2A_MSIL2A_20170613T101031_0_45": ("train", ["Coniferous forest", "Mixed forest", "Transitional woodland/shrub"]),
    "S2A_MSIL2A_20170613T101031_0_46": ("train", ["Non-irrigated arable land", "Pastures"]),
    "S2A_MSIL2A_20170613T101031_1_45": ("train", ["Discontinuous urban fabric", "Continuous urban fabric",
                                                  "Water bodies"]),
    "S2B_MSIL2A_20180204T094029_10_3": ("train", ["Sea and ocean", "Coastal lagoons", "Estuaries"]),
    "S2B_MSIL2A_20180204T094029_10_4": ("val", ["Bare rock", "Burnt areas"]),  # no 19-class counterpart
    "S2A_MSIL2A_20170717T113321_33_72": ("test", ["Peatbogs", "Inland marshes", "Salines"]),
    "S2A_MSIL2A_20170717T113321_33_73": ("snow", ["Natural grassland", "Sparsely vegetated areas"]),
}  # fmt: skip
TILE = {"S2A_MSIL2A_20170613T101031": ("T33UUP", 33, "2017-06-13 10:10:31"),
        "S2B_MSIL2A_20180204T094029": ("T34VFM", 34, "2018-02-04 09:40:29"),
        "S2A_MSIL2A_20170717T113321": ("T29UPU", 29, "2017-07-17 11:33:21")}  # fmt: skip


def expected(i: int, band: str) -> np.ndarray:
    """``[side, side]`` uint16 values of ``band`` of the ``i``-th patch of :data:`PATCHES`."""
    side = BANDS[band]
    rng = np.random.default_rng([i, list(BANDS).index(band)])
    return (300 + 100 * list(BANDS).index(band) + rng.integers(0, 200, size=(side, side))).astype(np.uint16)


def _geotags(epsg: int, x0: float, y0: float, pixel: float) -> list[tuple[int, str, int, tuple, bool]]:
    keys = (1, 1, 0, 3,  1024, 0, 1, 1,  1025, 0, 1, 1,  3072, 0, 1, epsg)  # fmt: skip
    return [(33550, "d", 3, (pixel, pixel, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True),
            (34735, "H", len(keys), keys, True)]  # fmt: skip


def generate(root: str | Path, split_style: str | None = "official") -> Path:
    """Write ``<root>/BigEarthNet-v1.0/...`` and the lists; returns ``root``."""
    root = Path(root)
    data = root / "BigEarthNet-v1.0"
    for i, (name, (_, labels)) in enumerate(PATCHES.items()):
        folder = data / name
        folder.mkdir(parents=True, exist_ok=True)
        product = name.rsplit("_", 2)[0]
        tile, zone, date = TILE[product]
        row, col = (int(v) for v in name.rsplit("_", 2)[1:])
        ulx, uly = 300000.0 + 1200 * col, 5900040.0 - 1200 * row
        for band, side in BANDS.items():
            tifffile.imwrite(folder / f"{name}_{band}.tif", expected(i, band), photometric="minisblack",
                             extratags=_geotags(32600 + zone, ulx, uly, 1200.0 / side), metadata=None)  # fmt: skip
        meta = {
            "labels": labels,
            "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + 1200, "lry": uly - 1200},
            "projection": f'PROJCS["WGS 84 / UTM zone {zone}N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
            f'6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
            f'PROJECTION["Transverse_Mercator"],UNIT["metre",1],AUTHORITY["EPSG","{32600 + zone}"]]',
            "tile_source": f"{product.replace('MSIL2A', 'MSIL1C')}_N0205_R022_{tile}_{product.split('_')[2]}.SAFE",
            "acquisition_date": date,
        }
        (folder / f"{name}_labels_metadata.json").write_text(json.dumps(meta))
    for split in ("train", "val", "test"):
        names = [n for n, (s, _) in PATCHES.items() if s == split]
        if split_style == "official":
            (root / f"{split}.csv").write_text("".join(f"{n}\n" for n in names))
        elif split_style == "torchgeo":
            s1 = [f"S1A_IW_GRDH_1SDV_{n.split('_')[2]}_{'_'.join(n.split('_')[3:])}" for n in names]
            (root / f"bigearthnet-{split}.csv").write_text("".join(f"{a},{b}\n" for a, b in zip(names, s1)))
    snow = [n for n, (s, _) in PATCHES.items() if s == "snow"]
    (root / "patches_with_seasonal_snow.csv").write_text("".join(f"{n}\n" for n in snow))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
