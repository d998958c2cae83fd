"""Speech enhancement on all the REAL noisy/clean pairs at hand: DNS Challenge 2020 (5 pairs)
and VoiceBank+DEMAND (6 pairs), 11 in all, never trained on.

``python -m benchmarks.enhance_real --model runs/.../pretrained [--data ../shared/data] [--json out.json]``

For a ``save_pretrained`` MambAttention (e.g. the export of the ``enhance-mambattention``
recipe), each noisy file is enhanced whole and scored against its clean reference: SI-SDR,
PESQ (wideband) and ESTOI of the enhanced speech and of the noisy input, per file, per set and
averaged over the 11 pairs (``all``), with the change (enhanced - noisy) of every metric.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from chanformer.hub import load_pretrained
from chanformer.tasks.enhancement import evaluate_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"dns2020": "dns2020", "voicebank": "voicebank-pairs"}
METRICS = ("si_sdr", "pesq", "estoi")


def pairs(folder: Path) -> tuple[list[Path], list[Path]]:
    noisy = sorted((folder / "noisy").glob("*.wav"))
    if not noisy:
        raise FileNotFoundError(f"no noisy/*.wav under {folder}")
    return noisy, [folder / "clean" / p.name for p in noisy]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means of the enhanced and noisy metrics over ``rows`` and their differences (``d_<metric>``)."""
    out = {}
    for m in METRICS:
        out[m] = float(np.nanmean([r[m] for r in rows]))
        out[f"{m}_noisy"] = float(np.nanmean([r[f"{m}_noisy"] for r in rows]))
        out[f"d_{m}"] = out[m] - out[f"{m}_noisy"]
    return out


def run(model_dir: str, data: str | Path = DATA) -> dict[str, Any]:
    model = load_pretrained(model_dir)
    res: dict[str, Any] = {"sets": {}}
    rows: list[dict[str, Any]] = []
    for name, sub in SETS.items():
        noisy, clean = pairs(Path(data) / sub)
        r = evaluate_pairs(model, noisy, clean)  # type: ignore[arg-type]
        res["sets"][name] = {"rows": r["rows"], "mean": summary(r["rows"])}
        rows += [dict(row, set=name) for row in r["rows"]]
    res["all"] = summary(rows)
    res["n_pairs"] = len(rows)
    res["worse_on"] = [m for m in METRICS if res["all"][f"d_{m}"] < 0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.enhance_real")
    ap.add_argument("--model", required=True, help="save_pretrained folder of a trained MambAttention")
    ap.add_argument("--data", default=str(DATA), help="folder holding dns2020/ and voicebank-pairs/")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = run(args.model, args.data)
    for name, s in [*((k, v["mean"]) for k, v in res["sets"].items()), ("all", res["all"])]:
        print(f"{name:10s} " + "  ".join(f"{m} {s[f'{m}_noisy']:.3f} -> {s[m]:.3f} ({s[f'd_{m}']:+.3f})" for m in METRICS))
    print("worse than the noisy input on average in:", ", ".join(res["worse_on"]) or "nothing")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
