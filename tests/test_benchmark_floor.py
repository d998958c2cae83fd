"""The dense-product floor (benchmarks/floor.py): what it counts, and a run on a stand-in original."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.floor import Floor, run_floor, split_step, table
from tests.test_benchmark_originals import _write_standin


def test_split_counts_gemms_as_dense_and_elementwise_as_the_rest() -> None:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    total, dense = split_step(lambda: (a @ b).exp().sin(), repeats=2)
    assert 0 < dense < total
    total, dense = split_step(lambda: a.exp().sin().cos(), repeats=2)
    assert total > 0 and dense == 0


def test_ceiling_is_the_original_over_our_dense_products() -> None:
    row = Floor("m", "model", original_ms=120.0, ours_ms=100.0, original_dense_ms=90.0, ours_dense_ms=80.0)
    assert row.ratio == pytest.approx(1.2) and row.ceiling == pytest.approx(1.5)
    assert math.isinf(Floor("g", "gaam", 10.0, 5.0, 0.0, 0.0).ceiling)
    assert "**1.50**" in table([row])


def test_run_on_a_stand_in_original_writes_json(tmp_path: Path) -> None:
    checkouts = _write_standin(tmp_path / "originals")
    out = tmp_path / "floor.json"
    (row,) = run_floor(checkouts, ["gaam"], repeats=1, json_path=out, quick=True)
    assert row.original_ms > 0 and row.ours_ms > 0 and row.ours_dense_ms == 0  # GAAM has no products
    saved = json.loads(out.read_text())["rows"][0]
    assert saved["name"] == "gaam" and saved["ours_ms"] == pytest.approx(row.ours_ms)


def test_unknown_model_and_missing_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--checkouts"):
        run_floor(tmp_path / "nowhere", ["gaam"])
    with pytest.raises(ValueError, match="unknown"):
        run_floor(tmp_path, ["nope"])


def test_bf16_relative_error_is_the_worst_difference_over_the_largest_output() -> None:
    from benchmarks.low_precision import relative_error

    ref = [torch.tensor([1.0, -4.0]), torch.tensor([2.0]), torch.tensor([3])]  # integer outputs are skipped
    got = [torch.tensor([1.5, -4.0]), torch.tensor([2.0]), torch.tensor([7])]
    assert relative_error(ref, got) == pytest.approx(0.5 / 4.0)
    assert relative_error(ref, ref) == 0.0


def test_bf16_run_on_a_stand_in_original_writes_json(tmp_path: Path) -> None:
    from benchmarks.low_precision import run_bf16

    checkouts = _write_standin(tmp_path / "originals")
    out = tmp_path / "bf16.json"
    (row,) = run_bf16(checkouts, ["gaam"], repeats=1, json_path=out, quick=True)
    assert row.original_ms > 0 and row.ours_ms > 0 and row.ours_bf16_ms > 0
    # GAAM has no matrix products, the only ops autocast lowers: bf16 leaves it in float32
    assert row.fp32_rel_err < 1e-5 and row.bf16_rel_err < 1e-5
    saved = json.loads(out.read_text())["rows"][0]
    assert saved["name"] == "gaam" and saved["bf16_ratio"] == pytest.approx(row.bf16_ratio)
    with pytest.raises(ValueError, match="unknown"):
        run_bf16(checkouts, ["nope"])
