"""Reference fixtures: run the original implementations' recorded inputs through our models.

A fixture folder holds ``fixture.json`` (constructor kwargs, input/output descriptions,
``primary_outputs``, ``atol``/``rtol``), ``weights.safetensors`` (the original state dict)
and ``io.safetensors`` (``input.<name>`` / ``output.<name>`` tensors).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from chanformer.hub.converters import Converter, find_converter

__all__ = ["Fixture", "FixtureReport", "OutputCheck", "check_reference_fixture", "load_fixture", "run_reference_fixture"]


@dataclass
class Fixture:
    path: Path
    meta: dict[str, Any]
    weights: dict[str, Tensor]
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]

    @property
    def primary_outputs(self) -> list[str]:
        return list(self.meta.get("primary_outputs", list(self.outputs)))


def load_fixture(path: str | os.PathLike[str]) -> Fixture:
    """Read a fixture folder; errors name the missing or unreadable file."""
    path = Path(path)
    files = {n: path / n for n in ("fixture.json", "weights.safetensors", "io.safetensors")}
    for f in files.values():
        if not f.is_file():
            raise FileNotFoundError(f"reference fixture {path}: {f.name} is missing")
    try:
        meta = json.loads(files["fixture.json"].read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{files['fixture.json']} is not valid JSON: {e}") from None
    io = load_file(str(files["io.safetensors"]))
    inputs = {k.removeprefix("input."): v for k, v in io.items() if k.startswith("input.")}
    outputs = {k.removeprefix("output."): v for k, v in io.items() if k.startswith("output.")}
    return Fixture(path, meta, load_file(str(files["weights.safetensors"])), inputs, outputs)


def build_reference_model(fx: Fixture) -> tuple[Converter, torch.nn.Module]:
    conv = find_converter(fx.meta)
    return conv, conv.load(fx.weights, fx.meta.get("constructor_kwargs", {}))


def run_reference_fixture(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Build our model through its converter, load the converted weights, run the fixture's
    inputs and return our outputs under the fixture's output names.
    """
    fx = load_fixture(path)
    conv, model = build_reference_model(fx)
    with torch.no_grad():
        return conv.run(model, fx.inputs, fx.meta)


@dataclass
class OutputCheck:
    name: str
    primary: bool
    present: bool
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    passed: bool = False
    note: str = ""


@dataclass
class FixtureReport:
    path: Path
    model: str
    checks: list[OutputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.primary)


def check_reference_fixture(path: str | os.PathLike[str]) -> FixtureReport:
    """Compare our outputs with the fixture's: pass when |ours - theirs| <= atol + rtol * |theirs|."""
    fx = load_fixture(path)
    conv, model = build_reference_model(fx)
    with torch.no_grad():
        ours = conv.run(model, fx.inputs, fx.meta)
    atol, rtol = float(fx.meta.get("atol", 1e-4)), float(fx.meta.get("rtol", 1e-4))
    report = FixtureReport(Path(path), str(fx.meta.get("model", conv.name)))
    primary = set(fx.primary_outputs)
    for name, theirs in fx.outputs.items():
        check = OutputCheck(name, name in primary, name in ours)
        if check.present:
            mine = ours[name].detach().to(torch.float64)
            ref = theirs.to(torch.float64)
            if mine.shape != ref.shape:
                check.note = f"shape {tuple(mine.shape)} != reference {tuple(ref.shape)}"
            else:
                diff = (mine - ref).abs()
                check.max_abs = float(diff.max()) if diff.numel() else 0.0
                check.max_rel = float((diff / ref.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
                check.passed = bool((diff <= atol + rtol * ref.abs()).all())
        else:
            check.note = "not produced by our model"
        report.checks.append(check)
    return report
