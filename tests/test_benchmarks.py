"""The benchmark harness runs, checks correctness before timing, and writes JSON."""

import json

import torch

from benchmarks import ENCODERS, Result, compare, fwd_bwd, run
from chanformer.kernels.selective_scan import selective_scan_chunked, selective_scan_reference


def test_quick_run_one_op_cpu(tmp_path):
    out = tmp_path / "bench.json"
    rows = run("cpu", quick=True, ops=["mvpa"], encoders=[], repeats=1, json_path=str(out), print_table=False)
    assert [r.name for r in rows] == ["mvpa fwd", "mvpa fwd+bwd", "mvpa fwd"]  # the last: vs the Flash-MVPA approach
    assert all(r.status == "n/a" for r in rows)  # the Triton kernels need CUDA
    assert rows[0].ref_ms > 0 and rows[1].ref_ms > 0 and rows[2].ref_ms is None  # the torch reference is still timed
    data = json.loads(out.read_text())
    assert data["meta"]["device"] == "cpu" and data["results"][0]["name"] == "mvpa fwd"


def test_fast_path_checked_then_timed():
    u, delta, B, C = torch.randn(1, 8, 40), torch.randn(1, 8, 40), torch.randn(1, 4, 40), torch.randn(1, 4, 40)
    inputs = [u, delta, -torch.rand(8, 4), B, C]
    res = compare(
        Result("scan", "op", "", "loop", "chunked"), fwd_bwd(selective_scan_reference, inputs, {}),
        fwd_bwd(selective_scan_chunked, inputs, {}), torch.device("cpu"), 1, 1e-4, 1e-4,
    )
    assert res.status == "ok" and res.max_err < 1e-5 and res.speedup > 0 and res.fast_mem_mb is not None
    assert res.to_dict()["speedup"] == res.speedup


def test_mismatch_is_reported_as_fail_and_not_timed():
    x = torch.ones(3)
    res = compare(Result("x", "op", "", "a", "b"), lambda: [x], lambda: [x + 1], torch.device("cpu"), 1, 1e-5, 1e-5)
    assert res.status == "FAIL" and res.ref_ms is None and res.max_err == 1.0


def test_every_encoder_runs_a_training_step_cpu():
    rows = run("cpu", quick=True, ops=[], encoders=list(ENCODERS), repeats=1, print_table=False)
    assert [r.name for r in rows] == [f"{e} fwd+bwd" for e in ENCODERS]
    assert all(r.ref_ms > 0 and r.ref_mem_mb is not None for r in rows)
    assert {"softs", "gat", "channelvit", "chadavit", "mvpformer", "mambattention", "dbconformer", "ecapa"} <= set(ENCODERS)


def test_unknown_names_are_rejected():
    import pytest

    with pytest.raises(ValueError, match="unknown nope"):
        run("cpu", ops=["nope"], encoders=[], print_table=False)
