"""``chanformer reference check PATH...`` and ``chanformer reference convert``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _check(paths: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from chanformer.hub.fixtures import check_reference_fixture

    console = Console()
    failed = 0
    for path in paths:
        report = check_reference_fixture(path)
        table = Table("output", "primary", "max abs err", "max rel err", "status", title=f"{report.model} ({path})")
        for c in report.checks:
            status = "ok" if c.passed else ("FAIL" if c.primary else "differs")
            if not c.present:
                status = "MISSING" if c.primary else "not produced"
            table.add_row(c.name, "yes" if c.primary else "", f"{c.max_abs:.3g}", f"{c.max_rel:.3g}",
                          status + (f" ({c.note})" if c.note and c.present else ""))
        console.print(table)
        failed += not report.passed
    console.print(f"{len(paths) - failed} of {len(paths)} fixture(s) passed")
    return 1 if failed else 0


def _load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from chanformer.checkpoint import load_checkpoint_file, refuse_url

    refuse_url(path, "--weights")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"--weights {path}: not a readable safetensors file ({e})") from None
    # Original checkpoints are torch pickles: tensors-only unpickling refuses arbitrary code.
    state = load_checkpoint_file(path, "--weights")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"--weights {path}: expected a state dict, got {type(state).__name__}")
    return state


def _convert(ns: argparse.Namespace) -> int:
    from chanformer.hub import save_pretrained
    from chanformer.hub.converters import find_converter, get_converter

    if ns.fixture:
        meta = json.loads((Path(ns.fixture) / "fixture.json").read_text())
        conv = find_converter(meta)
        kwargs = meta.get("constructor_kwargs", {})
        weights: str | Path = ns.weights if ns.weights else Path(ns.fixture) / "weights.safetensors"
    else:
        if not (ns.converter and ns.weights and ns.config):
            raise ValueError("convert needs --fixture DIR, or --converter NAME --weights FILE --config JSON")
        conv = get_converter(ns.converter)
        cfg_path = Path(ns.config)
        kwargs = json.loads(cfg_path.read_text() if cfg_path.is_file() else ns.config)
        weights = ns.weights
    model = conv.load(_load_state(weights), kwargs)
    out = save_pretrained(model, ns.out, source={"converter": conv.name, "repo": conv.repo, "constructor_kwargs": kwargs})
    print(f"wrote {out}")
    return 0


def reference_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chanformer reference")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_check = sub.add_parser("check", help="run reference fixtures through our models")
    p_check.add_argument("paths", nargs="+")
    p_conv = sub.add_parser("convert", help="convert an original checkpoint into a chanformer pretrained folder")
    p_conv.add_argument("--fixture", help="a fixture folder (uses its constructor_kwargs and weights)")
    p_conv.add_argument("--converter", help="converter name (see `chanformer reference list`)")
    p_conv.add_argument("--weights", help="original checkpoint (.safetensors, or .pt/.ckpt loaded weights-only)")
    p_conv.add_argument("--config", help="original constructor kwargs as JSON text or a JSON file")
    p_conv.add_argument("--out", required=True, help="output pretrained folder")
    sub.add_parser("list", help="list converters")
    ns = parser.parse_args(args)
    if ns.cmd == "check":
        return _check(ns.paths)
    if ns.cmd == "convert":
        return _convert(ns)
    from chanformer.hub.converters import get_converter, list_converters

    for name in list_converters():
        c = get_converter(name)
        print(f"{name:16s} {c.repo} {c.reference_class}")
    return 0
