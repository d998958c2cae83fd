"""Write a miniature of the UEA/UCR archive downloads (``Multivariate2018_ts.zip``, ``Univariate2018_ts.zip``).

Layout and ``.ts`` headers as published::

    <out>/Multivariate_ts/BasicMotions/BasicMotions_TRAIN.ts   6 dims x 100, 4 classes
    <out>/Multivariate_ts/BasicMotions/BasicMotions_TEST.ts
    <out>/Multivariate_ts/Epilepsy/Epilepsy_{TRAIN,TEST}.ts    3 dims x 206, 4 classes
    <out>/Univariate_ts/GunPoint/GunPoint_{TRAIN,TEST}.ts      1 dim x 150, classes 1 2
    <out>/Univariate_ts/ItalyPowerDemand/ItalyPowerDemand_{TRAIN,TEST}.ts   1 dim x 24

With ``flat=True`` the files are written straight into ``<out>`` (``<out>/BasicMotions_TRAIN.ts``),
the layout of a hand-picked folder such as ``../shared/data/uea``. Only the number of cases is
smaller (2 per class and split). Case ``i`` of class ``k`` has value ``100 * k + i + t / 1000``
in dimension ``d`` at time ``t`` plus ``d``, so tests can check what they read.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: name -> (kind folder, dims, length, class labels)
ARCHIVES: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "BasicMotions": ("Multivariate_ts", 6, 100, ("Standing", "Running", "Walking", "Badminton")),
    "Epilepsy": ("Multivariate_ts", 3, 206, ("EPILEPSY", "WALKING", "RUNNING", "SAWING")),
    "GunPoint": ("Univariate_ts", 1, 150, ("1", "2")),
    "ItalyPowerDemand": ("Univariate_ts", 1, 24, ("1", "2")),
}
PER_CLASS = 2


def value(k: int, i: int, d: int, t: int) -> float:
    return 100.0 * k + i + d + t / 1000.0


def _write(path: Path, name: str, dims: int, length: int, classes: tuple[str, ...], split: str) -> None:
    lines = [
        f"#The {name} data ({split}), a chanformer test miniature of the UEA/UCR archive file",
        f"@problemName {name}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if dims == 1 else 'false'}",
        *([f"@dimensions {dims}"] if dims > 1 else []),
        "@equalLength true",
        f"@seriesLength {length}",
        f"@classLabel true {' '.join(classes)}",
        "@data",
    ]
    offset = 0 if split == "TRAIN" else PER_CLASS
    for k, label in enumerate(classes):
        for i in range(offset, offset + PER_CLASS):
            dims_text = [",".join(f"{value(k, i, d, t):g}" for t in range(length)) for d in range(dims)]
            lines.append(":".join(dims_text) + f":{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def generate(out: str | Path, flat: bool = False) -> Path:
    """Write the miniature under ``out`` (archive layout, or flat) and return ``out``."""
    out = Path(out)
    for name, (kind, dims, length, classes) in ARCHIVES.items():
        folder = out if flat else out / kind / name
        for split in ("TRAIN", "TEST"):
            _write(folder / f"{name}_{split}.ts", name, dims, length, classes, split)
    return out


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else "uea-miniature", flat="--flat" in sys.argv))
