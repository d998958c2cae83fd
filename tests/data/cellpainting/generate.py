"""Write a miniature Cell Painting Gallery source folder (JUMP-CP ``cpg0016-jump/<source>`` style).

Layout (as in ``s3://cellpainting-gallery``)::

    <root>/images/2021_04_26_Batch1/images/BR00117035__2021-05-02T16_02_51-Measurement1/Images/
        r01c01f01p01-ch1sk1fk1fl1.tiff ...          Phenix (Opera/Harmony export): row, column, field, plane, channel
    <root>/images/2021_04_26_Batch1/images/BR00117037/
        BR00117037_A01_s1_w1<GUID>.tif ...          ImageXpress: plate, well, site, wavelength + GUID
    <root>/workspace/load_data_csv/2021_04_26_Batch1/<plate>/load_data.csv
    <root>/metadata/platemaps/2021_04_26_Batch1/barcode_platemap.csv
    <root>/metadata/platemaps/2021_04_26_Batch1/platemap/JUMP-Target-1_compound_platemap.txt
    <root>/metadata/external_metadata/JUMP-Target-1_compound_metadata.tsv

Each TIFF is a 16-bit greyscale field of :data:`SIZE` pixels. ``load_data.csv`` names each
channel's file in ``FileName_Orig<X>`` and its S3 folder in ``PathName_Orig<X>`` (absolute
``s3://cellpainting-gallery/cpg0016-jump/source_4/...`` paths, as published). Which ``ch<n>`` /
``w<n>`` holds which stain differs between sources; here :data:`PHENIX_CH` and
:data:`IMAGEXPRESS_W` (chosen so that DNA is not the first channel file). Well ``B02`` has no
``broad_sample`` (a DMSO control, as in the published plate maps). Compound ids are stand-ins in the
published format.

Channel ``X`` of site ``(plate, well, site)`` holds :func:`expected`. Run
``python tests/data/cellpainting/generate.py OUT``; tests call :func:`generate`.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import uuid
import zlib
from pathlib import Path

import numpy as np
import tifffile

BATCH = "2021_04_26_Batch1"
S3 = "s3://cellpainting-gallery/cpg0016-jump/source_4"
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
PHENIX_CH = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5, "Brightfield": 6}
IMAGEXPRESS_W = {"DNA": 1, "ER": 2, "RNA": 3, "AGP": 4, "Mito": 5}
#: plate -> (acquisition folder, instrument)
PLATES = {
    "BR00117035": ("BR00117035__2021-05-02T16_02_51-Measurement1", "phenix"),
    "BR00117036": ("BR00117036__2021-05-03T09_12_40-Measurement1", "phenix"),
    "BR00117037": ("BR00117037", "imagexpress"),
}
PLATEMAP = "JUMP-Target-1_compound_platemap"
#: well -> broad_sample ("" = DMSO control)
WELLS = {"A01": "BRD-K18895904-001-16-1", "A02": "BRD-A29260609-001-24-4", "B01": "BRD-K18895904-001-16-1", "B02": ""}
COMPOUNDS = {"BRD-K18895904-001-16-1": ("compound-a", "HDAC1"), "BRD-A29260609-001-24-4": ("compound-b", "EGFR")}
SITES = (1, 2)
SIZE = (16, 16)


def expected(plate: str, well: str, site: int, channel: str) -> np.ndarray:
    """The uint16 field written for one channel of one site."""
    rng = np.random.default_rng(zlib.crc32(f"{plate}/{well}/{site}/{channel}".encode()))
    return (1000 + 500 * (list(PHENIX_CH).index(channel)) + rng.integers(0, 400, size=SIZE)).astype(np.uint16)


def _file_name(plate: str, instrument: str, well: str, site: int, channel: str) -> str:
    row, col = ord(well[0]) - ord("A") + 1, int(well[1:])
    if instrument == "phenix":
        return f"r{row:02d}c{col:02d}f{site:02d}p01-ch{PHENIX_CH[channel]}sk1fk1fl1.tiff"
    guid = str(uuid.UUID(bytes=hashlib.md5(f"{plate}{well}{site}{channel}".encode()).digest())).upper()
    return f"{plate}_{well}_s{site}_w{IMAGEXPRESS_W[channel]}{guid}.tif"


def generate(root: str | Path) -> Path:
    """Write the miniature under ``root``; returns ``root``."""
    root = Path(root)
    for plate, (folder, instrument) in PLATES.items():
        rel = f"images/{BATCH}/images/{folder}" + ("/Images" if instrument == "phenix" else "")
        (root / rel).mkdir(parents=True, exist_ok=True)
        channels = [*CHANNELS, "Brightfield"] if instrument == "phenix" else list(CHANNELS)
        rows = []
        for well in WELLS:
            for site in SITES:
                row = {"Metadata_Source": "source_4", "Metadata_Batch": BATCH, "Metadata_Plate": plate,
                       "Metadata_Well": well, "Metadata_Site": str(site)}  # fmt: skip
                for ch in channels:
                    name = _file_name(plate, instrument, well, site, ch)
                    tifffile.imwrite(root / rel / name, expected(plate, well, site, ch), photometric="minisblack")
                    row[f"FileName_Orig{ch}"] = name
                    row[f"PathName_Orig{ch}"] = f"{S3}/{rel}/"
                rows.append(row)
        out = root / "workspace" / "load_data_csv" / BATCH / plate
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "load_data.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    maps = root / "metadata" / "platemaps" / BATCH
    (maps / "platemap").mkdir(parents=True, exist_ok=True)
    (maps / "barcode_platemap.csv").write_text(
        "Assay_Plate_Barcode,Plate_Map_Name\n" + "".join(f"{p},{PLATEMAP}\n" for p in PLATES)
    )
    lines = ["plate_map_name\twell_position\tbroad_sample\tmg_per_ml\tmmoles_per_liter\tsolvent"]
    lines += [f"{PLATEMAP}\t{w}\t{b}\t{'0.5' if b else ''}\t{'1' if b else ''}\tDMSO" for w, b in WELLS.items()]
    (maps / "platemap" / f"{PLATEMAP}.txt").write_text("\n".join(lines) + "\n")
    ext = root / "metadata" / "external_metadata"
    ext.mkdir(parents=True, exist_ok=True)
    lines = ["broad_sample\tpert_iname\ttarget\tpert_type\tcontrol_type"]
    lines += [f"{b}\t{n}\t{t}\ttrt\t" for b, (n, t) in COMPOUNDS.items()]
    (ext / "JUMP-Target-1_compound_metadata.tsv").write_text("\n".join(lines) + "\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
