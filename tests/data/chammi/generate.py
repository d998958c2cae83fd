"""Write a miniature CHAMMI folder (the ``CHAMMI.zip`` of https://zenodo.org/records/7988357).

Layout, as read by the benchmark's code (``<root>/<subset>/enriched_meta.csv``, image paths in its
``file_path`` column relative to ``<root>``)::

    <root>/CHAMMI/Allen/enriched_meta.csv     + one PNG strip per cell under Allen/
    <root>/CHAMMI/HPA/enriched_meta.csv       + HPA/
    <root>/CHAMMI/CP/enriched_meta.csv        + CP/

Each image is an 8-bit greyscale PNG of shape ``[H, C * W]``, the ``C`` channels side by side
(Allen 3, HPA 4, CP 5); the miniature's cells are :data:`SIZES` (Allen non-square, like the
published 238 x 374 crops; HPA and CP square). CSV columns: ``file_path``, ``ID``, ``Label``,
``train_test_split`` (``Train`` or a task name), one boolean column per task (``Task_one`` ...),
``channel_width`` and each source's grouping column (Allen ``Structure``, HPA ``cell_type``, CP
``Plate`` and ``source``). Training labels are the published ones; the novel labels of HPA
``Task_three`` and CP ``Task_three``/``Task_four`` are stand-ins. The sub-folder under each
sub-dataset (``<subset>/images/``) is an assumption: readers follow ``file_path``.

Channel ``c`` of cell ``ID`` holds ``expected(ID, c, H, W)`` (:func:`expected`), so tests check the
round trip exactly. Run ``python tests/data/chammi/generate.py OUT``; tests call :func:`generate`.
"""

from __future__ import annotations

import csv
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CHANNELS = {"Allen": 3, "HPA": 4, "CP": 5}
#: (H, W) of one channel per subset.
SIZES = {"Allen": (10, 16), "HPA": (16, 16), "CP": (12, 12)}
TRAIN_LABELS = {
    "Allen": ("M0", "M1M2", "M3", "M4M5", "M6M7_complete", "M6M7_single"),
    "HPA": ("golgi apparatus", "microtubules", "mitochondria", "nuclear speckles"),
    "CP": ("BRD-A29260609", "BRD-K04185004", "BRD-K21680192", "DMSO"),
}
NOVEL_LABELS = {"HPA": {"Task_three": ("nucleoplasm",)},
                "CP": {"Task_three": ("BRD-K00000001",), "Task_four": ("BRD-K00000002",)}}  # fmt: skip
TASKS = {"Allen": ("Task_one", "Task_two"), "HPA": ("Task_one", "Task_two", "Task_three"),
         "CP": ("Task_one", "Task_two", "Task_three", "Task_four")}  # fmt: skip
#: training rows per class; every known-class task gets one row per class.
TRAIN_PER_CLASS = 3
GROUP = {"Allen": ("Structure", ("Nuclear envelope", "Mitochondria")), "HPA": ("cell_type", ("U-2 OS", "A-431")),
         "CP": ("Plate", ("BR00116991", "BR00116992"))}  # fmt: skip


def expected(cell_id: str, c: int, h: int, w: int) -> np.ndarray:
    """The ``[h, w]`` uint8 values of channel ``c`` of cell ``cell_id``."""
    rng = np.random.default_rng(zlib.crc32(f"{cell_id}/{c}".encode()))
    return (20 + 40 * c + rng.integers(0, 30, size=(h, w))).astype(np.uint8)


def rows(subset: str) -> list[dict[str, str]]:
    """The metadata rows of ``subset`` (without writing anything)."""
    out: list[dict[str, str]] = []
    gcol, groups = GROUP[subset]

    def add(label: str, split: str) -> None:
        n = sum(r["train_test_split"] == split for r in out)
        cell_id = f"{subset}_{split}_{n:03d}"
        row = {"file_path": f"{subset}/images/{cell_id}.png", "ID": cell_id, "Label": label, "train_test_split": split}
        row |= {t: str(t == split) for t in TASKS[subset]}
        row |= {"channel_width": str(SIZES[subset][1]), gcol: groups[len(out) % len(groups)]}
        if subset == "CP":
            row["source"] = "source_1" if len(out) % 2 else "source_2"
        out.append(row)

    for label in TRAIN_LABELS[subset]:
        for _ in range(TRAIN_PER_CLASS):
            add(label, "Train")
    for task in TASKS[subset]:
        for label in NOVEL_LABELS.get(subset, {}).get(task) or TRAIN_LABELS[subset]:
            add(label, task)
    return out


def generate(root: str | Path) -> Path:
    """Write ``<root>/CHAMMI/...``; returns the ``CHAMMI`` folder."""
    base = Path(root) / "CHAMMI"
    for subset, n_ch in CHANNELS.items():
        h, w = SIZES[subset]
        table = rows(subset)
        for row in table:
            strip = np.concatenate([expected(row["ID"], c, h, w) for c in range(n_ch)], axis=1)
            path = base / row["file_path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(strip, mode="L").save(path)
        with open(base / subset / "enriched_meta.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return base


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
