"""Wall and CPU time of every shipped recipe's ``chanformer fit`` on this machine.

``python -m benchmarks.recipe_times [--recipes a,b] [--threads 1] [--timeout 1200] [--json out.json]``

Each recipe runs as its own ``chanformer fit --config <name>`` process (fresh interpreter, output
in a temporary run folder, nothing cached between recipes except the data caches the recipes
themselves keep under ``runs/data``), with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set to
``--threads``. Recorded per recipe: wall seconds, CPU seconds of the process and its children
(user + system; unlike wall time, this hardly depends on what else the machine runs), the load
average before it started, and the outcome:

* ``ok``: the fit finished (exit status 0);
* ``needs data``: the recipe reads a public data set whose folder (``data.init_args.root``) is
  not on this machine; it is not started. Run it where the download is;
* ``needs a step first``: the recipe consumes another recipe's output (listed in ``FIRST``);
  it runs after that one, with the argument filled in;
* ``failed`` / ``timeout``: with the last lines of its output.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "chanformer" / "recipes"

# recipe -> (the recipe that must run first, how to point this one at that one's output)
FIRST: dict[str, tuple[str, str]] = {
    # the pretraining recipe exports to runs/ieeg-pretrain-mvpformer/pretrained (its export_dir)
    "ieeg-seizure-mvpformer": ("ieeg-pretrain-mvpformer", "--model.init_args.pretrained=runs/ieeg-pretrain-mvpformer/pretrained"),
}

# recipe -> chanformer commands that make its input first (timed apart, as ``prep_s``)
PREPARE: dict[str, list[list[str]]] = {
    "wsi-acmil": [
        ["wsi", "synth", "runs/wsi/slides", "--n", "24"],
        ["wsi", "extract", "runs/wsi/slides", "--store", "runs/wsi/bags.zarr",
         "--labels", "runs/wsi/slides/labels.csv", "--tile-size", "64"],
    ],
}
CLI = [sys.executable, "-c", "import sys; from chanformer.cli.main import console_main; sys.exit(console_main())"]


@dataclass
class RecipeTime:
    recipe: str
    status: str
    wall_s: float | None = None
    cpu_s: float | None = None
    load_before: float | None = None
    prep_s: float | None = None
    tail: list[str] = field(default_factory=list)


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def missing_data_root(name: str) -> str | None:
    """The recipe's ``data.init_args.root`` when it names a folder that is not on this machine."""
    cfg = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    root = ((cfg.get("data") or {}).get("init_args") or {}).get("root")
    return root if isinstance(root, str) and not (ROOT / root).exists() else None


def time_recipe(name: str, run_dir: Path, threads: int, timeout: float, extra: list[str] | None = None) -> RecipeTime:
    """Run ``chanformer fit --config name`` once (after its ``PREPARE`` commands) and time it."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    root = missing_data_root(name)
    if root is not None:
        return RecipeTime(name, "needs data", tail=[f"data root {root} is not on this machine"])
    prep_start = time.perf_counter()
    for args in PREPARE.get(name, []):
        done = subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            return RecipeTime(name, "failed", tail=[f"preparation {' '.join(args)} failed", *done.stderr.splitlines()[-4:]])
    prep = time.perf_counter() - prep_start if name in PREPARE else None
    cmd = [*CLI, "fit", "--config", name, f"--trainer.default_root_dir={run_dir}", *(extra or [])]
    load = os.getloadavg()[0]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        return RecipeTime(name, "timeout", time.perf_counter() - t0, None, load, prep, out.splitlines()[-5:])
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    text = (proc.stdout or "") + (proc.stderr or "")
    tail = [line for line in text.splitlines() if line.strip()][-5:]
    if proc.returncode == 0:
        return RecipeTime(name, "ok", wall, cpu, load, prep)
    return RecipeTime(name, "failed", wall, cpu, load, prep, tail)


def table(rows: list[RecipeTime], threads: int) -> str:
    lines = [f"| recipe | outcome | wall s ({threads} thread{'s' if threads > 1 else ''}) | CPU s | load before |"
             " preparation s |", "|---|---|---|---|---|---|"]
    for r in rows:
        wall = "-" if r.wall_s is None or r.status != "ok" else f"{r.wall_s:.0f}"
        cpu = "-" if r.cpu_s is None or r.status != "ok" else f"{r.cpu_s:.0f}"
        load = "-" if r.load_before is None else f"{r.load_before:.1f}"
        prep = "" if r.prep_s is None else f"{r.prep_s:.0f}"
        lines.append(f"| `{r.recipe}` | {r.status} | {wall} | {cpu} | {load} | {prep} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[RecipeTime]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_times")
    parser.add_argument("--recipes", default=None, help="comma-separated recipe names (default: all shipped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per recipe")
    parser.add_argument("--json", default=None, help="also write the rows here (atomically)")
    args = parser.parse_args(argv)
    shipped = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    names = shipped if args.recipes is None else [n for n in args.recipes.split(",") if n]
    unknown = sorted(set(names) - set(shipped))
    if unknown:
        parser.error(f"--recipes: unknown {unknown}")
    order = [n for n in names if n not in FIRST] + [n for n in names if n in FIRST]
    rows: list[RecipeTime] = []
    with tempfile.TemporaryDirectory(prefix="recipe-times-") as tmp:
        for name in order:
            extra: list[str] = []
            if name in FIRST:
                first, arg = FIRST[name]
                done = any(r.recipe == first and r.status == "ok" for r in rows)
                if not done:
                    rows.append(RecipeTime(name, f"needs a step first ({first})"))
                    continue
                extra.append(arg)
            row = time_recipe(name, Path(tmp) / name, args.threads, args.timeout, extra)
            print(f"[recipe-times] {name}: {row.status} {row.wall_s or 0:.0f} s wall, "
                  f"{row.cpu_s or 0:.0f} s CPU", file=sys.stderr, flush=True)
            rows.append(row)
    print(table(rows, args.threads))
    if args.json:
        from chanformer.io import write_text_atomic

        meta = {"threads": args.threads, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
        write_text_atomic(Path(args.json), json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
