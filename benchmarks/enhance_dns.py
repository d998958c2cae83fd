"""Speech enhancement on the real DNS Challenge 2020 pairs, and real-time factors.

``python -m benchmarks.enhance_dns [--model runs/.../pretrained] [--dns ../shared/data/dns2020] [--json out.json]``

* With ``--model`` (a ``save_pretrained`` folder of a trained MambAttention, e.g. the export of
  the ``enhance-mambattention`` recipe): SI-SDR, PESQ (wideband) and ESTOI of the noisy inputs
  and of the enhanced speech, per file and averaged. The DNS pairs are never used for training.
* Always: CPU real-time factor (processing time / audio duration, 4 s utterance, median of 3)
  of the published ``mambattention`` (2.33M parameters, random weights) and of the small
  recipe variant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from chanformer.encoders.mambattention import mambattention, mambattention_test
from chanformer.hub import load_pretrained
from chanformer.tasks.enhancement import evaluate_pairs, real_time_factor

DNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dns2020"
SMALL = {"hid_feature": 8, "n_heads": 4, "n_fft": 256, "hop_size": 128, "win_size": 256}  # the recipe's small variant


def run(model_dir: str | None = None, dns: str | Path = DNS, seconds: float = 4.0, repeats: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    if model_dir is not None:
        model = load_pretrained(model_dir)
        dns = Path(dns)
        noisy = sorted((dns / "noisy").glob("*.wav"))
        if not noisy:
            raise FileNotFoundError(f"no noisy/*.wav under {dns}")
        out["dns"] = evaluate_pairs(model, noisy, [dns / "clean" / p.name for p in noisy])  # type: ignore[arg-type]
    rtf = {}
    for name, m in (("mambattention", mambattention()), ("mambattention_small", mambattention_test(**SMALL))):
        rtf[name] = {"params": sum(p.numel() for p in m.parameters()), "rtf_cpu": real_time_factor(m, seconds, repeats)}
    out["rtf"] = rtf
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.enhance_dns")
    ap.add_argument("--model", default=None, help="save_pretrained folder of a trained MambAttention")
    ap.add_argument("--dns", default=str(DNS))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = run(args.model, args.dns, args.seconds, args.repeats)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
