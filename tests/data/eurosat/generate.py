"""Write a miniature EuroSAT multispectral (``EuroSAT_MS``) folder.

Same layout and file format as the published ``EuroSAT_MS.zip`` (Zenodo 7711810):
``<root>/EuroSAT_MS/<Class>/<Class>_<n>.tif`` for the 10 classes, numbered from 1, each a
64 x 64 GeoTIFF with 13 uint16 bands stored pixel-interleaved in the files' band order
(B01 ... B12, then B8A), GeoTIFF tags for a UTM zone (EPSG:326xx) and 10 m pixels; plus torchgeo's
split lists ``eurosat-{train,val,test}.txt`` naming ``<Class>_<n>.jpg`` (the names of Google's
RGB split, which readers map to the ``.tif`` of the same stem). Only the number of images per
class is smaller (:data:`PER_CLASS` instead of 2000-3000).

Every pixel of band ``b`` (0-based, file order) of image ``<Class>_<n>`` is ``value(class, n, b, y, x)``
(:func:`expected`), so tests can check the round trip exactly.

Run ``python tests/data/eurosat/generate.py OUT``; the tests call :func:`generate` with a temporary
folder (nothing binary is committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
           "Pasture", "PermanentCrop", "Residential", "River", "SeaLake")  # fmt: skip
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
PER_CLASS = 3
SIZE = 64
#: image number -> split list it is named in (train 60 %, val 20 %, test 20 % like the originals)
SPLIT_OF = {1: "train", 2: "val", 3: "test"}


def expected(cls: int, n: int, size: int = SIZE) -> np.ndarray:
    """The ``[13, size, size]`` uint16 values written for class index ``cls``, image ``n``."""
    rng = np.random.default_rng(1000 * cls + n)
    base = 800 + 150 * np.arange(len(BANDS))[:, None, None] + 40 * cls
    return (base + rng.integers(0, 400, size=(len(BANDS), size, size))).astype(np.uint16)


def geotiff_tags(epsg: int, x0: float, y0: float, pixel: float) -> list[tuple[int, str, int, tuple, bool]]:
    """ModelPixelScale, ModelTiepoint and GeoKeyDirectory tags of a north-up projected raster."""
    keys = (1, 1, 0, 3,  1024, 0, 1, 1,  1025, 0, 1, 1,  3072, 0, 1, epsg)  # fmt: skip
    return [
        (33550, "d", 3, (pixel, pixel, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True),
        (34735, "H", len(keys), keys, True),
    ]


def write_geotiff(path: Path, chw: np.ndarray, *, epsg: int = 32631, x0: float = 500000.0, y0: float = 5600000.0,
                  pixel: float = 10.0) -> None:  # fmt: skip
    """``chw`` ``[C, H, W]`` as a pixel-interleaved (``C > 1``) or single-band GeoTIFF."""
    data = np.moveaxis(chw, 0, -1) if chw.shape[0] > 1 else chw[0]
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig" if chw.shape[0] > 1 else None,
                     extratags=geotiff_tags(epsg, x0, y0, pixel), metadata=None)  # fmt: skip


def generate(root: str | Path, split_files: bool = True, per_class: int = PER_CLASS) -> Path:
    """Write ``<root>/EuroSAT_MS/...`` (and the split lists in ``root`` when ``split_files``); returns ``root``."""
    root = Path(root)
    for c, name in enumerate(CLASSES):
        folder = root / "EuroSAT_MS" / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            write_geotiff(folder / f"{name}_{n}.tif", expected(c, n), epsg=32631 + c % 3, x0=500000.0 + 640 * n)
    if split_files:
        for split in ("train", "val", "test"):
            lines = [f"{name}_{n}.jpg" for name in CLASSES for n in range(1, per_class + 1) if SPLIT_OF.get(n) == split]
            (root / f"eurosat-{split}.txt").write_text("\n".join(lines) + "\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
