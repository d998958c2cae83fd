"""The wheel maps datasets/, kernels/ and cli/ into chanformer.* and ships every subpackage."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"chanformer": "chanformer", "datasets": "chanformer/datasets", "kernels": "chanformer/kernels",
          "cli": "chanformer/cli"}


def _expected_modules() -> set[str]:
    out = set()
    for src, dst in MAPPED.items():
        for py in (ROOT / src).rglob("*.py"):
            if "__pycache__" not in py.parts:
                out.add(f"{dst}/{py.relative_to(ROOT / src).as_posix()}")
    return out


def test_wheel_contains_every_module_under_the_chanformer_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("chanformer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = _expected_modules() - names
    assert not missing, f"modules left out of the wheel (add their package to pyproject): {sorted(missing)}"
    assert "chanformer/recipes/basicmotions-softs.yaml" in names
    top_level = {n.split("/")[0] for n in names if not n.startswith("chanformer")}
    assert not ({"datasets", "kernels", "cli"} & top_level), top_level
