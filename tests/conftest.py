from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests corrupt real files at random offsets. The default run replays a fixed sequence
# of examples (derandomize) so main stays reproducible; HYPOTHESIS_PROFILE=explore searches anew.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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
