"""Write a miniature CAMELYON16 folder in the layout of its GigaScience / Google Drive copies.

::

    <root>/training/normal/normal_001.tif ...          tiled pyramidal RGB TIFFs (BigTIFF), level 0 + two
    <root>/training/tumor/tumor_001.tif ...            reduced-resolution pages (as ASAP's converter writes
    <root>/testing/images/test_001.tif ...             them: pages, not SubIFDs), resolution tags of 0.243 um/px
    <root>/training/lesion_annotations/tumor_NNN.xml   ASAP XML: groups _0/_1 (tumour), _2 (cut out)
    <root>/testing/lesion_annotations.zip              test_NNN.xml (groups Tumor, Exclusion), still zipped
    <root>/testing/reference.csv                       test_001,Tumor,Macro,Primary / test_002,Normal (no header)

Smaller than the originals: 512 x 512 pixel slides (64-pixel TIFF tiles, three levels), three
normal and three tumour training slides, four test slides; and the tiles are deflate- rather
than JPEG-compressed (decoding JPEG tiles needs the optional imagecodecs package). Glass is
near-white, tissue a pink ellipse with purple nuclei, and tumour regions (the annotated polygons
minus the cut-outs) dense dark nuclei, so tile features tell them apart.

:data:`LESIONS` lists every polygon; :data:`EXPECTED_FRACTIONS` the tumour share of the 64-pixel
tiles (level-0 ``(y, x)``) that the tests check exactly.

Run ``python tests/data/camelyon16/generate.py OUT``; the tests call :func:`generate` with a
temporary folder (nothing binary is committed).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import tifffile

SIZE = 512
TIFF_TILE = 64
LEVELS = 3
MPP = 0.243

NORMAL = ("normal_001", "normal_002", "normal_003")
TUMOR = ("tumor_001", "tumor_002", "tumor_003")
TEST = ("test_001", "test_002", "test_003", "test_004")
REFERENCE = {"test_001": ("Tumor", "Macro", "Primary"), "test_002": ("Normal",), "test_003": ("Tumor", "Micro", "Primary"),
             "test_004": ("Normal",)}  # fmt: skip


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _diamond(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]


#: slide -> [(annotation name, type, group, [(x, y), ...])] in level-0 pixels
LESIONS: dict[str, list[tuple[str, str, str, list[tuple[float, float]]]]] = {
    "tumor_001": [("_0", "Polygon", "_0", _rect(128, 128, 256, 256)),
                  ("_1", "Polygon", "_1", _rect(320, 320, 352, 384)),
                  ("_2", "Polygon", "_2", _rect(192, 192, 256, 256))],
    "tumor_002": [("_0", "Polygon", "_0", _diamond(256.5, 200.25, 90.0))],
    "tumor_003": [("Annotation 0", "Spline", "_0", _diamond(300.0, 300.0, 60.0)),
                  ("Annotation 1", "Dot", "_1", [(100.0, 100.0)])],
    "test_001": [("Annotation 0", "Polygon", "Tumor", _rect(192, 128, 320, 256)),
                 ("Annotation 1", "Polygon", "Exclusion", _rect(192, 128, 256, 192))],
    "test_003": [("Annotation 0", "Polygon", "Tumor", _rect(264, 264, 296, 296))],
}  # fmt: skip

#: slide -> {(y, x) of a 64-pixel tile: its tumour share}; every other tile of those slides is 0
EXPECTED_FRACTIONS = {
    "tumor_001": {(128, 128): 1.0, (128, 192): 1.0, (192, 128): 1.0, (192, 192): 0.0, (320, 320): 0.5},
    "test_001": {(128, 192): 0.0, (128, 256): 1.0, (192, 192): 1.0, (192, 256): 1.0},
    "test_003": {(256, 256): 0.25},
}


def label_of(slide: str) -> int:
    if slide.startswith("test_"):
        return int(REFERENCE[slide][0] == "Tumor")
    return int(slide.startswith("tumor_"))


def _inside(poly: list[tuple[float, float]], yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Pixels whose centre is inside ``poly`` (even-odd rule)."""
    py, px = yy + 0.5, xx + 0.5
    inside = np.zeros(np.broadcast(yy, xx).shape, bool)
    n = len(poly)
    for i in range(n):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        cross = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= cross & (px < xc)
    return inside


def tumour_mask(slide: str) -> np.ndarray:
    """``[SIZE, SIZE]`` bool: inside a tumour polygon and outside every cut-out (area annotations only)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    tumour, cut = np.zeros((SIZE, SIZE), bool), np.zeros((SIZE, SIZE), bool)
    for _, kind, group, pts in LESIONS.get(slide, []):
        if kind == "Dot":
            continue
        (cut if group in ("_2", "Exclusion") else tumour)[...] |= _inside(pts, yy, xx)
    return tumour & ~cut


def _nuclei(rng: np.random.Generator, img: np.ndarray, where: np.ndarray, density: float, radius: tuple[float, float],
            colour: np.ndarray) -> None:  # fmt: skip
    ys, xs = np.nonzero(where)
    if not len(ys):
        return
    n = rng.poisson(density * len(ys) / 1000)
    pick = rng.integers(0, len(ys), n)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    for cy, cx, r in zip(ys[pick], xs[pick], rng.uniform(*radius, n)):
        y0, y1, x0, x1 = max(0, cy - 7), min(img.shape[0], cy + 8), max(0, cx - 7), min(img.shape[1], cx + 8)
        disk = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        img[y0:y1, x0:x1][disk] = colour + rng.normal(0, 6, 3)


def image(slide: str) -> np.ndarray:
    """The level-0 ``[SIZE, SIZE, 3]`` uint8 image of ``slide`` (deterministic)."""
    rng = np.random.default_rng(sum(map(ord, slide)))
    img = 242 + 3 * rng.standard_normal((SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    tissue = ((yy - 256) / 230.0) ** 2 + ((xx - 256) / 220.0) ** 2 <= 1
    stroma = np.array([225.0, 150.0, 190.0]) + rng.normal(0, 6, 3)
    img[tissue] = stroma + 8 * rng.standard_normal((int(tissue.sum()), 3))
    _nuclei(rng, img, tissue, 2.0, (2.0, 3.5), np.array([95.0, 60.0, 150.0]))
    tumour = tumour_mask(slide)
    _nuclei(rng, img, tumour, 9.0, (3.5, 5.5), np.array([70.0, 40.0, 120.0]))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_slide(path: Path, img: np.ndarray) -> None:
    """A tiled pyramid as ASAP writes CAMELYON slides: full resolution, then halved pages (NewSubfileType 1)."""
    res = (1e4 / MPP, 1e4 / MPP)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level = img
        for i in range(LEVELS):
            tif.write(level, tile=(TIFF_TILE, TIFF_TILE), photometric="rgb", compression="zlib", metadata=None,
                      subfiletype=1 if i else 0, resolution=(res[0] / 2**i, res[1] / 2**i),
                      resolutionunit="CENTIMETER")  # fmt: skip
            h, w = level.shape[0] // 2, level.shape[1] // 2
            level = level[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean((1, 3)).round().astype(np.uint8)


def asap_xml(slide: str) -> str:
    """The ASAP XML of ``slide``'s lesions (coordinates as CAMELYON writes them: decimals, level-0 pixels)."""
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for name, kind, group, pts in LESIONS[slide]:
        lines.append(f'\t\t<Annotation Name="{name}" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58">')
        lines.append("\t\t\t<Coordinates>")
        lines += [f'\t\t\t\t<Coordinate Order="{i}" X="{x:.4f}" Y="{y:.4f}" />' for i, (x, y) in enumerate(pts)]
        lines += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    lines += ["\t</Annotations>", "\t<AnnotationGroups>"]
    for group in sorted({g for _, _, g, _ in LESIONS[slide]}):
        lines += [f'\t\t<Group Name="{group}" PartOfGroup="None" Color="#ff0000">', "\t\t\t<Attributes />", "\t\t</Group>"]
    lines += ["\t</AnnotationGroups>", "</ASAP_Annotations>", ""]
    return "\n".join(lines)


def generate(root: str | Path, test_annotations_zipped: bool = True) -> Path:
    """Write the folder described in the module docstring into ``root``; returns ``root``."""
    root = Path(root)
    folders = {"normal": root / "training" / "normal", "tumor": root / "training" / "tumor", "test": root / "testing" / "images"}
    for d in (*folders.values(), root / "training" / "lesion_annotations"):
        d.mkdir(parents=True, exist_ok=True)
    for slide in (*NORMAL, *TUMOR, *TEST):
        write_slide(folders[slide.split("_")[0]] / f"{slide}.tif", image(slide))
    for slide in TUMOR:
        (root / "training" / "lesion_annotations" / f"{slide}.xml").write_text(asap_xml(slide))
    tests = [s for s in TEST if s in LESIONS]
    if test_annotations_zipped:
        with zipfile.ZipFile(root / "testing" / "lesion_annotations.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for slide in tests:
                zf.writestr(f"lesion_annotations/{slide}.xml", asap_xml(slide))
    else:
        (root / "testing" / "lesion_annotations").mkdir(exist_ok=True)
        for slide in tests:
            (root / "testing" / "lesion_annotations" / f"{slide}.xml").write_text(asap_xml(slide))
    (root / "testing" / "reference.csv").write_text("".join(",".join((s, *REFERENCE[s])) + "\n" for s in TEST))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
