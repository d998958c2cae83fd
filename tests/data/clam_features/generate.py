"""Write a miniature CLAM feature folder (the output of CLAM's patching and feature extraction).

Same layout and file format as CLAM (https://github.com/mahmoodlab/CLAM) writes them::

    <root>/h5_files/<slide_id>.h5     'features' [N, D] float32, 'coords' [N, 2] int32 (level-0 x, y),
                                      chunked (32, ...) and resizable, appended batch by batch, no attributes
                                      (CLAM's save_hdf5 with attr_dict=None)
    <root>/pt_files/<slide_id>.pt     torch.save of the same features (a bare [N, D] tensor)
    <root>/patches/<slide_id>.h5      create_patches_fp.py's 'coords' with attributes patch_size,
                                      patch_level, downsample, downsampled_level_dim, level_dim, name, save_path
    <root>/labels.csv                 CLAM's slide table: case_id,slide_id,label (string labels)
    <root>/splits/splits_<k>.csv      create_splits_seq.py: an index column, then train,val,test (ragged)

Only the sizes are smaller: :data:`DIM` features per patch, 12-40 patches per slide. Slide
``slide_<i>`` is a tumour slide when ``i`` is odd; its first :data:`N_SIGNAL` patches have
feature 0 raised by 3 (a signal a MIL head can find). Slide ``0007`` (an id that looks like a
number) checks that ids stay strings. ``slide_2`` and ``slide_3`` belong to one case.

Run ``python tests/data/clam_features/generate.py OUT``; the tests call :func:`generate` with a
temporary folder (nothing binary is committed).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

DIM = 8
N_SIGNAL = 4
PATCH = 256
SLIDES = [f"slide_{i}" for i in range(11)] + ["0007"]
LABEL_NAMES = ("normal_tissue", "tumor_tissue")


def label_of(slide: str) -> int:
    """1 (tumour) for odd slide numbers; ``0007`` is a tumour slide."""
    return int(slide.split("_")[-1]) % 2


def case_of(slide: str) -> str:
    return "patient_2" if slide in ("slide_2", "slide_3") else f"patient_{slide.split('_')[-1]}"


def expected(slide: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, DIM] float32, coords [N, 2] int32 (x, y))`` written for ``slide``."""
    seed = int(slide.split("_")[-1]) + (100 if slide == "0007" else 0)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 41))
    feats = rng.normal(0.0, 1.0, (n, DIM)).astype(np.float32)
    if label_of(slide):
        feats[:N_SIGNAL, 0] += 3.0
    cells = rng.choice(40 * 40, n, replace=False)
    coords = np.stack([(cells % 40) * PATCH, (cells // 40) * PATCH], 1).astype(np.int32)  # (x, y) like CLAM
    return feats, coords


def _append(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, dict] | None = None, batch: int = 10) -> None:
    """Write like CLAM's save_hdf5: first batch creates chunked resizable datasets, later ones append."""
    n = len(next(iter(arrays.values())))
    mode = "w"
    for start in range(0, n, batch):
        with h5py.File(path, mode) as f:
            for key, full in arrays.items():
                val = full[start : start + batch]
                if key not in f:
                    d = f.create_dataset(key, shape=val.shape, maxshape=(None, *val.shape[1:]), chunks=(32, *val.shape[1:]),
                                         dtype=val.dtype)  # fmt: skip
                    d[:] = val
                    for k, v in ((attrs or {}).get(key) or {}).items():
                        d.attrs[k] = v
                else:
                    d = f[key]
                    d.resize(len(d) + len(val), axis=0)
                    d[-len(val) :] = val
        mode = "a"


#: fold -> (train, val, test) slide ids, as create_splits_seq.py would write them
SPLITS = {
    0: (["slide_0", "slide_1", "slide_2", "slide_3", "slide_4", "slide_5", "slide_6", "slide_7"],
        ["slide_8", "slide_9"], ["slide_10", "0007"]),
    1: (["slide_4", "slide_5", "slide_6", "slide_7", "slide_8", "slide_9", "slide_10", "0007"],
        ["slide_0", "slide_1"], ["slide_2", "slide_3"]),
}  # fmt: skip


def generate(root: str | Path, pt_files: bool = True, h5_files: bool = True, splits: bool = True,
             patches: bool = True) -> Path:  # fmt: skip
    """Write the folder described in the module docstring into ``root``; returns ``root``."""
    root = Path(root)
    for sub, on in (("h5_files", h5_files), ("pt_files", pt_files), ("patches", patches)):
        if on:
            (root / sub).mkdir(parents=True, exist_ok=True)
    for slide in SLIDES:
        feats, coords = expected(slide)
        if h5_files:
            _append(root / "h5_files" / f"{slide}.h5", {"features": feats, "coords": coords})
        if pt_files:
            torch.save(torch.from_numpy(feats), root / "pt_files" / f"{slide}.pt")
        if patches:
            attrs = {"patch_size": PATCH, "patch_level": 0, "downsample": np.array([1.0, 1.0]),
                     "downsampled_level_dim": np.array([40 * PATCH, 40 * PATCH]), "level_dim": np.array([40 * PATCH, 40 * PATCH]),
                     "name": slide, "save_path": "RESULTS_DIRECTORY/patches"}  # fmt: skip
            _append(root / "patches" / f"{slide}.h5", {"coords": coords}, {"coords": attrs})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "slide_id", "label"])
        w.writerows([case_of(s), s, LABEL_NAMES[label_of(s)]] for s in SLIDES)
    if splits:
        (root / "splits").mkdir(exist_ok=True)
        for k, (train, val, test) in SPLITS.items():
            n = max(len(train), len(val), len(test))
            with (root / "splits" / f"splits_{k}.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["", "train", "val", "test"])
                for i in range(n):
                    w.writerow([i] + [col[i] if i < len(col) else "" for col in (train, val, test)])
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
