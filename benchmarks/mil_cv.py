"""Repeated k-fold cross-validation of MIL recipes on a bag table, beside a pooled-features baseline.

Every fold of every model is one ``chanformer fit`` of the shipped recipe (through
:func:`~chanformer.cli.lightning_cli.run_lightning_cli`, so the task, the datamodule and the
recipe's hyperparameters are exactly what a user runs), with the fold, the repetition and the
table as the only overrides; the fitted task is then tested on the held-out fold through the
same trainer. In the same run, on the same folds and the same standardised features, a logistic
regression classifies the mean/max/min-pooled instance features of every bag.

Command line::

    python -m benchmarks.mil_cv cv ../shared/data/mil-classic/musk1.csv ../shared/data/mil-classic/musk2.csv
    python -m benchmarks.mil_cv select ../shared/data/mil-classic/musk1.csv --val-fraction 0.2

``cv`` prints mean ± std accuracy per model (std over all folds of all repetitions, and over the
repetition means) and can write every fold's accuracy as JSON (``--out``). ``select`` is the
hyperparameter check on training folds only: it holds out ``--val-fraction`` of each fold's
training bags, never touches the test fold, and prints validation accuracy per epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

__all__ = [
    "CVResult", "ValAccuracyCurve", "cross_validate", "fit_fold", "logistic_regression_accuracy", "main", "validation_curves",
]  # fmt: skip

DEFAULT_RECIPES = ("musk-abmil", "musk-acmil")
#: Inverse L2 strength of the pooled-features logistic regression (chosen with ``select`` on training folds).
DEFAULT_LOGREG_C = 0.01
BASELINE = "logreg"


@dataclass
class CVResult:
    """Per-fold test accuracies of one bag table: ``accuracy[model][i][fold]`` for fold draw
    ``first_repeat + i``; wall seconds per model."""

    source: str
    n_folds: int
    repeats: int
    first_repeat: int = 0
    accuracy: dict[str, list[list[float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per model: ``mean`` and ``std`` over every fold of every repetition, ``std_repeats``
        (std of the repetition means) and ``seconds``."""
        out = {}
        for name, runs in self.accuracy.items():
            flat = np.array([a for run in runs for a in run], dtype=np.float64)
            means = np.array([np.mean(run) for run in runs if run])
            out[name] = {
                "mean": float(flat.mean()),
                "std": float(flat.std()),
                "std_repeats": float(means.std()) if len(means) else float("nan"),
                "seconds": float(self.seconds.get(name, 0.0)),
            }
        return out


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence Lightning's per-fit banners and the task's export line."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


def _fit_args(
    recipe: str, source: str, fold: int, repeat: int, n_folds: int, workdir: Path, overrides: Sequence[str]
) -> list[str]:
    from chanformer.cli.main import resolve_config

    return [
        "fit", "--config", resolve_config(recipe),
        f"--data.init_args.source={source}", f"--data.init_args.fold={fold}",
        f"--data.init_args.repeat={repeat}", f"--data.init_args.n_folds={n_folds}",
        f"--seed_everything={repeat}",
        "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--test_after_fit=false",
        f"--trainer.default_root_dir={workdir}", f"--model.init_args.export_dir={workdir / 'pretrained'}",
        *overrides,
    ]  # fmt: skip


def fit_fold(
    recipe: str,
    source: str,
    fold: int,
    repeat: int = 0,
    n_folds: int = 10,
    overrides: Sequence[str] = (),
    workdir: str | Path | None = None,
) -> tuple[float, Any]:
    """``chanformer fit --config recipe`` on one fold, then its test accuracy on the held-out fold.

    Returns ``(accuracy, datamodule)``; ``overrides`` are extra CLI arguments (e.g. ``--trainer.max_epochs=5``).
    """
    from chanformer.cli.lightning_cli import run_lightning_cli

    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mil-cv-"))
        args = _fit_args(recipe, source, fold, repeat, n_folds, Path(workdir), overrides)
        with _quiet():
            cli = run_lightning_cli(args)
            results = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return float(results[0]["test/acc"]), cli.datamodule


def logistic_regression_accuracy(datamodule: Any, C: float = DEFAULT_LOGREG_C, split: str = "test") -> float:
    """Accuracy on ``split`` of a logistic regression on mean/max/min-pooled standardised instance
    features, trained on the datamodule's training bags (the same folds and statistics the MIL models see)."""
    from sklearn.linear_model import LogisticRegression

    from chanformer.datasets.wsi.tables import pooled_bag_features

    train, other = datamodule.bags("train"), datamodule.bags(split)
    if not other:
        raise ValueError(f"logistic_regression_accuracy(split={split!r}): the datamodule has no {split} bags")
    clf = LogisticRegression(C=C, max_iter=10_000)
    clf.fit(pooled_bag_features(train), [b.label for b in train])
    return float(clf.score(pooled_bag_features(other), [b.label for b in other]))


def cross_validate(
    source: str,
    recipes: Sequence[str] = DEFAULT_RECIPES,
    n_folds: int = 10,
    repeats: int = 5,
    logreg_C: float | None = DEFAULT_LOGREG_C,
    overrides: Sequence[str] = (),
    log: Any = sys.stderr,
    first_repeat: int = 0,
) -> CVResult:
    """``repeats`` x ``n_folds``-fold cross-validation of every recipe on ``source`` (and the
    pooled logistic regression unless ``logreg_C`` is None), one line per fold on ``log``.
    The fold draws are ``first_repeat .. first_repeat + repeats - 1`` (to extend an earlier run)."""
    from chanformer.datasets.wsi.tables import BagTableDataModule

    res = CVResult(str(source), n_folds, repeats, first_repeat)
    names = [*recipes, *([BASELINE] if logreg_C is not None else [])]
    for name in names:
        res.accuracy[name], res.seconds[name] = [], 0.0
    for r in range(first_repeat, first_repeat + repeats):
        for name in names:
            res.accuracy[name].append([])
        for f in range(n_folds):
            dm = None
            for recipe in recipes:
                t = time.perf_counter()
                acc, dm = fit_fold(recipe, source, f, r, n_folds, overrides)
                res.seconds[recipe] += time.perf_counter() - t
                res.accuracy[recipe][-1].append(acc)
            if logreg_C is not None:
                t = time.perf_counter()
                dm = dm or BagTableDataModule(source, n_folds=n_folds, fold=f, repeat=r)
                res.accuracy[BASELINE][-1].append(logistic_regression_accuracy(dm, logreg_C))
                res.seconds[BASELINE] += time.perf_counter() - t
            if log is not None:
                accs = "  ".join(f"{n} {res.accuracy[n][-1][-1]:.3f}" for n in names)
                print(f"{Path(source).name} repeat {r} fold {f}: {accs}", file=log, flush=True)
    return res


class ValAccuracyCurve(L.Callback):
    """Records ``val/acc`` after every training epoch (not the sanity check)."""

    def __init__(self) -> None:
        self.curve: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
            self.curve.append(float(trainer.callback_metrics["val/acc"]))


def validation_curves(
    recipe: str,
    source: str,
    val_fraction: float = 0.2,
    n_folds: int = 10,
    repeat: int = 0,
    overrides: Sequence[str] = (),
    max_folds: int | None = None,
) -> np.ndarray:
    """Validation accuracy per epoch ``[n_folds, max_epochs]``: for each fold, ``val_fraction`` of its
    training bags is held out (the test fold is never read); for choosing epochs and learning rates.
    ``max_folds`` limits the outer folds used (the first ones) to save time."""
    import importlib

    from chanformer.cli.lightning_cli import run_lightning_cli

    # the class the CLI instantiates by name (not __main__'s copy under `python -m`)
    curve_cls = importlib.import_module("benchmarks.mil_cv").ValAccuracyCurve
    curves = []
    for f in range(min(n_folds, max_folds or n_folds)):
        with tempfile.TemporaryDirectory(prefix="mil-select-") as tmp:
            args = _fit_args(recipe, source, f, repeat, n_folds, Path(tmp), overrides)
            args += [f"--data.init_args.val_fraction={val_fraction}", "--trainer.num_sanity_val_steps=0",
                     "--trainer.callbacks+=benchmarks.mil_cv.ValAccuracyCurve"]  # fmt: skip
            with _quiet():
                cli = run_lightning_cli(args)
            rec = next(c for c in cli.trainer.callbacks if isinstance(c, curve_cls))
            curves.append(rec.curve)
    n = min(len(c) for c in curves)
    return np.array([c[:n] for c in curves])


def _format_table(results: Sequence[CVResult]) -> str:
    lines = ["| dataset | model | accuracy (mean ± std over folds) | std of repeat means | wall time |", "|---|---|---|---|---|"]
    for res in results:
        for name, s in res.summary().items():
            lines.append(f"| {Path(res.source).stem} | {name} | {s['mean']:.3f} ± {s['std']:.3f} | {s['std_repeats']:.3f} "
                         f"| {s['seconds']:.0f} s |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mil_cv", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="repeated k-fold cross-validation of MIL recipes and the pooled logistic regression")
    sel = sub.add_parser("select", help="validation accuracy per epoch on training folds only (hyperparameter choice)")
    for q in (cv, sel):
        q.add_argument("sources", nargs="+", help="bag tables (CSV/Parquet; Musk layout unless the recipe says otherwise)")
        q.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), help="recipe names or YAML paths")
        q.add_argument("--folds", type=int, default=10, help="k of k-fold cross-validation")
        q.add_argument("--override", action="append", default=[], metavar="ARG",
                       help="extra `chanformer fit` argument, e.g. --override=--trainer.max_epochs=20 (repeatable)")  # fmt: skip
        q.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    cv.add_argument("--repeats", type=int, default=5, help="repetitions of the cross-validation (fold draws F..F+R-1)")
    cv.add_argument("--first-repeat", type=int, default=0, metavar="F", help="first fold draw (to extend an earlier run)")
    cv.add_argument("--logreg-C", type=float, default=DEFAULT_LOGREG_C, help="logistic regression C (<= 0: no baseline)")
    cv.add_argument("--out", type=Path, default=None, help="write every fold's accuracy as JSON here")
    sel.add_argument("--val-fraction", type=float, default=0.2, help="share of each fold's training bags held out")
    sel.add_argument("--repeat", type=int, default=0, help="which fold draw")
    sel.add_argument("--max-folds", type=int, default=None, help="use only the first outer folds (time)")
    sel.add_argument("--logreg-C", type=float, nargs="*", default=[0.01, 0.1, 1.0, 10.0], help="C values to compare")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    for s in a.sources:
        if not Path(s).is_file():
            p.error(f"bag table {s}: no such file")
    if a.command == "cv":
        results = []
        for s in a.sources:
            t = time.perf_counter()
            res = cross_validate(s, a.recipes, a.folds, a.repeats, a.logreg_C if a.logreg_C > 0 else None, a.override,
                                 first_repeat=a.first_repeat)
            results.append(res)
            print(f"{s}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
        print(_format_table(results))
        if a.out:
            a.out.write_text(json.dumps([{**asdict(r), "summary": r.summary()} for r in results], indent=1))
        return 0
    for s in a.sources:
        for recipe in a.recipes:
            t = time.perf_counter()
            curves = validation_curves(recipe, s, a.val_fraction, a.folds, a.repeat, a.override, a.max_folds)
            mean = curves.mean(0)
            best = int(np.argmax(mean))
            marks = "  ".join(f"{e + 1}:{mean[e]:.3f}" for e in range(4, len(mean), 5))
            print(f"{Path(s).stem} {recipe} {' '.join(a.override)}: val acc by epoch {marks}; best epoch {best + 1} "
                  f"({mean[best]:.3f}); {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
        if a.logreg_C:
            from chanformer.datasets.wsi.tables import BagTableDataModule

            dms = [BagTableDataModule(s, n_folds=a.folds, fold=f, repeat=a.repeat, val_fraction=a.val_fraction)
                   for f in range(a.folds)]  # fmt: skip
            for C in a.logreg_C:
                accs = [logistic_regression_accuracy(dm, C, split="val") for dm in dms]
                print(f"{Path(s).stem} logreg C={C}: val acc {np.mean(accs):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
