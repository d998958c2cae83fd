"""Where a training step's time goes, ours and the original's: the dense-product floor.

``python -m benchmarks floor --checkouts DIR [--models a,b] [--repeats 3] [--json out.json]``

For each original in :data:`benchmarks.originals.ORIGINALS` this builds the original and ours
exactly as the side-by-side driver does (converted weights, same inputs), then profiles
``repeats`` training steps of each (``torch.profiler``, self CPU time per aten op) and splits the
time into

* **dense products**: GEMMs (``mm``, ``addmm``, ``bmm``, ``baddbmm``), convolutions (forward and
  backward) and fused attention (``_scaled_dot_product_*``), the work that a float32
  implementation of the same model must do and that torch hands to oneDNN/MKL kernels;
* **the rest**: elementwise ops, normalisations, copies, reductions, sampling, ...

The **ceiling** is ``original step / our dense products``: the ratio ours would reach if everything
but its dense products took no time at all. Where the ceiling is below a speed target, no change
that keeps the arithmetic (float32, same products) can meet it. Profiled steps run a little slower
than unprofiled ones (a few per cent from the profiler's per-op bookkeeping), on both sides.
Run with one thread (``OMP_NUM_THREADS=1``) for stable numbers.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.originals import Original, _step, build_pair, checkouts_root, measure_rows

DENSE_OPS = frozenset({
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
    "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::_slow_conv2d_forward",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
})


@dataclass
class Floor:
    name: str
    label: str
    original_ms: float  # profiled step, median over repeats
    ours_ms: float
    original_dense_ms: float
    ours_dense_ms: float

    @property
    def ratio(self) -> float:
        return self.original_ms / self.ours_ms

    @property
    def ceiling(self) -> float:
        """``inf`` for a model without dense products (e.g. GAAM: elementwise ops and reductions only)."""
        return self.original_ms / self.ours_dense_ms if self.ours_dense_ms > 0 else float("inf")


def split_step(step: Callable[[], None], repeats: int = 3) -> tuple[float, float]:
    """Median (total, dense-product) self CPU time in ms of ``repeats`` profiled calls of ``step``."""
    totals, dense = [], []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = prof.key_averages()
        totals.append(sum(e.self_cpu_time_total for e in events) / 1e3)
        dense.append(sum(e.self_cpu_time_total for e in events if e.key in DENSE_OPS) / 1e3)
    return statistics.median(totals), statistics.median(dense)


def measure(spec: Original, checkouts: Path, repeats: int = 3, quick: bool = False) -> Floor:
    """Build the original and ours (full configuration; ``quick``: the tiny one) and split a training
    step of each."""
    theirs_model, ours_model, x = build_pair(spec, spec.load(checkouts), spec.kwargs(quick), quick)
    theirs_model.train()
    ours_model.train()
    theirs = _step(lambda t: spec.theirs(theirs_model, t), theirs_model, x, "train")
    ours = _step(lambda t: spec.ours(ours_model, t), ours_model, x, "train")
    for fn in (theirs, ours, theirs, ours):  # warm-up: allocator, oneDNN primitive caches
        fn()
    o_total, o_dense = split_step(theirs, repeats)
    c_total, c_dense = split_step(ours, repeats)
    label = f"{spec.name} (quick: tiny configuration)" if quick else spec.label
    return Floor(spec.name, label, o_total, c_total, o_dense, c_dense)


def table(rows: Sequence[Floor]) -> str:
    head = ("| model, configuration | original step ms (dense products) | chanformer step ms (dense products) "
            "| chanformer time outside dense products | profiled ratio | ceiling |\n|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        rest = 1.0 - r.ours_dense_ms / r.ours_ms
        lines.append(f"| {r.label} | {r.original_ms:.0f} ({r.original_dense_ms:.0f}) | {r.ours_ms:.0f} "
                     f"({r.ours_dense_ms:.0f}) | {100 * rest:.0f} % | {r.ratio:.2f} | **{r.ceiling:.2f}** |")
    return "\n".join(lines)


def run_floor(
    checkouts: str | os.PathLike[str] | None = None,
    models: Sequence[str] | None = None,
    repeats: int = 3,
    json_path: str | os.PathLike[str] | None = None,
    quick: bool = False,
) -> list[Floor]:
    """Profile each named original (default: all training rows) and print the floor table."""
    root = checkouts_root(checkouts)
    rows = measure_rows(models, lambda spec: measure(spec, root, repeats, quick),
                        lambda r: f"original {r.original_ms:.0f} ms, ours {r.ours_ms:.0f} ms "
                                  f"(dense {r.ours_dense_ms:.0f}), ceiling {r.ceiling:.2f}")
    print(table(rows))
    if json_path is not None:
        from chanformer.io import write_text_atomic

        data = [asdict(r) | {"ratio": r.ratio, "ceiling": r.ceiling} for r in rows]
        write_text_atomic(Path(json_path), json.dumps({"threads": torch.get_num_threads(), "rows": data}, indent=2))
    return rows
