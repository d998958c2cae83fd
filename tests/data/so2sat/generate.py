"""Write a miniature So2Sat LCZ42 folder.

Same layout and file format as the published data (mediaTUM 1454690): ``training.h5``,
``validation.h5`` and ``testing.h5``, each with the float64 HDF5 datasets ``sen1``
``[N, 32, 32, 8]`` (Sentinel-1: complex VH/VV parts and refined-Lee intensities), ``sen2``
``[N, 32, 32, 10]`` (Sentinel-2 B02-B12 reflectance / 10000) and ``label`` ``[N, 17]`` one-hot.
Only ``N`` is smaller: :data:`PER_CLASS` patches of each of the 17 classes per file.

Patch ``i`` of a file has LCZ ``LABELS[split][i]`` and pixel values ``expected(split, i)`` so tests
can check the round trip exactly. ``version=3`` writes the same files into ``random/`` (the
version-3 sub-folder layout).

Run ``python tests/data/so2sat/generate.py OUT``; the tests call :func:`generate` with a temporary
folder (nothing binary is committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

FILES = {"train": "training.h5", "val": "validation.h5", "test": "testing.h5"}
N_CLASSES = 17
PER_CLASS = {"train": 2, "val": 1, "test": 1}
#: split -> LCZ index (one-hot column) of each patch, classes interleaved
LABELS = {s: [c for _ in range(k) for c in range(N_CLASSES)][::-1] if s == "val" else
          [c for _ in range(k) for c in range(N_CLASSES)] for s, k in PER_CLASS.items()}  # fmt: skip


def expected(split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sen1 [32, 32, 8], sen2 [32, 32, 10])`` float64 of patch ``i`` of ``split``."""
    rng = np.random.default_rng([list(FILES).index(split), i])
    sen1 = rng.normal(0.0, 0.1, size=(32, 32, 8))
    sen1[..., 4:6] = np.abs(sen1[..., 4:6]) * 1e-2  # intensities are non-negative
    sen2 = rng.uniform(0.0, 0.3, size=(32, 32, 10)) + 0.01 * LABELS[split][i]
    return sen1, sen2


def generate(root: str | Path, version: int = 2) -> Path:
    """Write the three files into ``root`` (version 3: ``root/random``); returns ``root``."""
    root = Path(root)
    folder = root / "random" if version == 3 else root
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in FILES.items():
        n = len(LABELS[split])
        pairs = [expected(split, i) for i in range(n)]
        onehot = np.zeros((n, N_CLASSES))
        onehot[np.arange(n), LABELS[split]] = 1.0
        with h5py.File(folder / name, "w") as f:
            f.create_dataset("sen1", data=np.stack([p[0] for p in pairs]))
            f.create_dataset("sen2", data=np.stack([p[1] for p in pairs]))
            f.create_dataset("label", data=onehot)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
