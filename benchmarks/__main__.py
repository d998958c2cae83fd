"""``python -m benchmarks run --device cpu|cuda [--quick] [--json out.json] [--ops a,b] [--encoders a,b]``."""

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
    args = parser.parse_args()

    def names(s: str | None) -> list[str] | None:
        return None if s is None else [x for x in s.split(",") if x]

    run(args.device, args.quick, names(args.ops), names(args.encoders), args.repeats, args.json)


if __name__ == "__main__":
    main()
