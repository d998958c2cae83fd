"""What bfloat16 autocast buys on CPU, against the originals in float32.

``python -m benchmarks bf16 --checkouts DIR [--models a,b] [--repeats 5] [--json out.json]``

The side-by-side table (:mod:`benchmarks.originals`) keeps the arithmetic: float32 on both sides,
outputs within 1e-4. Where its 1.3x target is out of reach in float32 (see the dense-product floor,
:mod:`benchmarks.floor`), the next lever is precision. For each training row this builds the
original and ours as the side-by-side driver does (converted weights, same inputs) and times, in
turns, a training step of the original in float32, ours in float32 and ours under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (what ``--trainer.precision=bf16-mixed`` does in a
fit). It also reports how far the bf16 outputs move: the largest absolute difference from the
original's float32 outputs (eval mode), divided by the largest absolute output, over every output.
On a CPU without AMX or AVX-512 BF16 the bf16 products are emulated and slower.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.originals import Inputs, Original, _step, build_pair, checkouts_root, interleave, measure_rows


@dataclass
class Bf16Row:
    name: str
    label: str
    original_ms: float  # float32, median of the interleaved steps
    ours_ms: float  # float32
    ours_bf16_ms: float  # bf16 autocast
    fp32_rel_err: float  # ours float32 vs the original, max |diff| / max |output|
    bf16_rel_err: float  # ours bf16 vs the original float32

    @property
    def ratio(self) -> float:
        return self.original_ms / self.ours_ms

    @property
    def bf16_ratio(self) -> float:
        return self.original_ms / self.ours_bf16_ms


def relative_error(reference: Sequence[Tensor], got: Sequence[Tensor]) -> float:
    """``max |got - reference| / max |reference|`` over all floating-point outputs (float64)."""
    worst, scale = 0.0, 0.0
    for r, g in zip(reference, got, strict=True):
        if not r.is_floating_point():
            continue
        r64, g64 = r.detach().double(), g.detach().double()
        worst = max(worst, float((g64 - r64).abs().max()))
        scale = max(scale, float(r64.abs().max()))
    return worst / scale if scale > 0 else worst


def measure(spec: Original, checkouts: Path, repeats: int = 5, quick: bool = False) -> Bf16Row:
    """Time the original (float32), ours (float32) and ours (bf16 autocast) in turns; compare outputs."""
    theirs_model, ours_model, x = build_pair(spec, spec.load(checkouts), spec.kwargs(quick), quick)

    def ours_bf16(inputs: Inputs) -> list[Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return spec.ours(ours_model, inputs)

    with torch.no_grad():
        reference = spec.theirs(theirs_model, x)
        fp32_err = relative_error(reference, spec.ours(ours_model, x))
        bf16_err = relative_error(reference, ours_bf16(x))
    theirs_model.train()
    ours_model.train()
    steps = {"original": _step(lambda t: spec.theirs(theirs_model, t), theirs_model, x, "train"),
             "ours": _step(lambda t: spec.ours(ours_model, t), ours_model, x, "train"),
             "ours_bf16": _step(ours_bf16, ours_model, x, "train")}  # fmt: skip
    times, _ = interleave(steps, repeats, warmup=2)
    med = {k: statistics.median(v) for k, v in times.items()}
    label = f"{spec.name} (quick: tiny configuration)" if quick else spec.label
    return Bf16Row(spec.name, label, med["original"], med["ours"], med["ours_bf16"], fp32_err, bf16_err)


def table(rows: Sequence[Bf16Row]) -> str:
    lines = ["| model, configuration | original fp32 ms | ours fp32 ms (ratio) | ours bf16 ms (ratio) "
             "| output change fp32 / bf16 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.original_ms:.0f} | {r.ours_ms:.0f} ({r.ratio:.2f}) | "
                     f"{r.ours_bf16_ms:.0f} (**{r.bf16_ratio:.2f}**) | {r.fp32_rel_err:.1e} / {r.bf16_rel_err:.1e} |")
    return "\n".join(lines)


def run_bf16(
    checkouts: str | os.PathLike[str] | None = None,
    models: Sequence[str] | None = None,
    repeats: int = 5,
    json_path: str | os.PathLike[str] | None = None,
    quick: bool = False,
) -> list[Bf16Row]:
    """Measure each named training row (default: those of the dense-product floor) and print the table."""
    root = checkouts_root(checkouts)
    rows = measure_rows(models, lambda spec: measure(spec, root, repeats, quick),
                        lambda r: f"fp32 ratio {r.ratio:.2f}, bf16 ratio {r.bf16_ratio:.2f}, "
                                  f"bf16 output change {r.bf16_rel_err:.1e}")
    print(table(rows))
    if json_path is not None:
        from chanformer.io import write_text_atomic

        data = [asdict(r) | {"ratio": r.ratio, "bf16_ratio": r.bf16_ratio} for r in rows]
        meta = {"threads": torch.get_num_threads(), "repeats": repeats, "quick": quick}
        write_text_atomic(Path(json_path), json.dumps({"meta": meta, "rows": data}, indent=2))
    return rows
