from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"


def reference_path(name: str) -> Path:
    path = REFERENCE / name
    if not (path / "fixture.json").is_file():
        pytest.skip(f"reference fixture {path} is not present (it lives in ../shared beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
