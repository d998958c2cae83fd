"""Benchmarks of chanformer's fast paths against their references, and of the encoders.

``python -m benchmarks run --device cpu|cuda [--quick] [--json out.json] [--ops a,b] [--encoders a,b]``

For every op (:mod:`benchmarks.ops`) the reference and the fast path run in the same process on the
same inputs. The fast path is first checked against the reference; a mismatch makes the row
``FAIL`` and it is not timed. Every encoder (:mod:`benchmarks.encoders`) runs one training step on
its PyTorch path and with automatic kernel dispatch. Timing and memory: :mod:`benchmarks.measure`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks.encoders import ENCODERS, bench_encoder
from benchmarks.measure import Result, compare, fwd, fwd_bwd
from benchmarks.ops import OPS
from chanformer.io import write_text_atomic

__all__ = ["ENCODERS", "OPS", "Result", "compare", "fwd", "fwd_bwd", "print_results", "run"]


def run(
    device: str = "cpu",
    quick: bool = True,
    ops: list[str] | None = None,
    encoders: list[str] | None = None,
    repeats: int | None = None,
    json_path: str | None = None,
    print_table: bool = True,
) -> list[Result]:
    """Run the benchmarks; ``ops``/``encoders`` select (default all; ``[]`` none). Returns the rows."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run(device='cuda'): CUDA is not available")
    for arg, chosen, known in (("ops", ops, OPS), ("encoders", encoders, ENCODERS)):
        unknown = sorted(set(chosen or []) - set(known))
        if unknown:
            raise ValueError(f"run({arg}=...): unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    repeats = repeats or (3 if quick else 10)
    torch.manual_seed(0)
    results: list[Result] = []
    for name in OPS if ops is None else ops:
        results += OPS[name](dev, quick, repeats)
    for name in ENCODERS if encoders is None else encoders:
        results += bench_encoder(name, dev, quick, repeats)
    if print_table:
        print_results(results, dev)
    if json_path:
        meta = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "torch": torch.__version__, "quick": quick, "repeats": repeats,
                "memory": "cuda max_memory_allocated" if dev.type == "cuda" else "peak RSS delta (sampled)"}
        payload = {"meta": meta, "results": [r.to_dict() for r in results]}
        write_text_atomic(Path(json_path), json.dumps(payload, indent=2))
    return results


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_results(results: list[Result], device: torch.device) -> None:
    from rich.console import Console
    from rich.table import Table

    mem = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS delta, sampled"
    table = Table(title=f"chanformer benchmarks on {device} (memory: {mem})")
    for col in ("op", "shape", "reference", "fast path", "status", "max rel err", "ref ms", "fast ms", "speed-up",
                "ref MiB", "fast MiB", "mem ratio", "note"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.name, r.shape, r.ref, r.fast, r.status, _fmt(r.max_err, ".1e"), _fmt(r.ref_ms, ".1f"), _fmt(r.fast_ms, ".1f"),
            _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""), _fmt(r.ref_mem_mb, ".1f"), _fmt(r.fast_mem_mb, ".1f"),
            _fmt(r.mem_ratio, ".2f"), r.note,
        )
    Console(width=250).print(table)
