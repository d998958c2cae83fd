"""``python -m benchmarks run --device cpu|cuda [--quick] [--json out.json] [--ops a,b] [--encoders a,b]``
``python -m benchmarks originals --checkouts DIR [--quick] [--models a,b] [--repeats 5] [--json out.json]``
``python -m benchmarks floor --checkouts DIR [--models a,b] [--repeats 3] [--json out.json]``
and ``python -m benchmarks bf16 --checkouts DIR [--models a,b] [--repeats 5] [--json out.json]``."""

import argparse

from benchmarks import ENCODERS, OPS, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="time the fast paths against their references, and the encoders")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="small shapes, 3 repeats (< 60 s on a 2-core CPU)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--ops", default=None, help=f"comma-separated subset of {','.join(OPS)} ('' = none)")
    p.add_argument("--encoders", default=None, help=f"comma-separated subset of {','.join(ENCODERS)} ('' = none)")
    p.add_argument("--repeats", type=int, default=None)
    o = sub.add_parser("originals", help="side by side with the original implementations (CPU)")
    o.add_argument("--checkouts", default=None,
                   help="folder with one checkout per original repository (default: $CHANFORMER_ORIGINALS)")
    o.add_argument("--models", default=None, help="comma-separated converter names (default: all)")
    o.add_argument("--quick", action="store_true", help="tiny configurations (a smoke test, not a measurement)")
    o.add_argument("--repeats", type=int, default=5, help="timed steps per side, interleaved (default 5)")
    o.add_argument("--modes", default="train,infer", help="train (forward+backward) and/or infer")
    o.add_argument("--json", default=None, help="also write the rows to this JSON file (atomically)")
    f = sub.add_parser("floor", help="split each model's training step into dense products and the rest (CPU)")
    f.add_argument("--checkouts", default=None, help="as for originals")
    f.add_argument("--models", default=None, help="comma-separated converter names (default: all trained rows)")
    f.add_argument("--repeats", type=int, default=3, help="profiled steps per side (median)")
    f.add_argument("--json", default=None, help="also write the rows to this JSON file (atomically)")
    b = sub.add_parser("bf16", help="ours under bfloat16 autocast vs ours and the original in float32 (CPU)")
    b.add_argument("--checkouts", default=None, help="as for originals")
    b.add_argument("--models", default=None, help="comma-separated row names (default: the floor's rows)")
    b.add_argument("--repeats", type=int, default=5, help="timed steps per variant, interleaved (median)")
    b.add_argument("--json", default=None, help="also write the rows to this JSON file (atomically)")
    args = parser.parse_args()

    def names(s: str | None) -> list[str] | None:
        return None if s is None else [x for x in s.split(",") if x]

    if args.command == "floor":
        from benchmarks.floor import run_floor

        run_floor(args.checkouts, names(args.models), args.repeats, args.json)
        return
    if args.command == "bf16":
        from benchmarks.low_precision import run_bf16

        run_bf16(args.checkouts, names(args.models), args.repeats, args.json)
        return
    if args.command == "originals":
        from benchmarks.originals import run_originals

        run_originals(args.checkouts, names(args.models), args.quick, args.repeats, args.json,
                      names(args.modes) or ["train", "infer"])
        return
    run(args.device, args.quick, names(args.ops), names(args.encoders), args.repeats, args.json)


if __name__ == "__main__":
    main()
