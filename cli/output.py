"""Output hygiene and run folders for ``chanformer fit|validate|test|predict``.

:func:`quiet_lightning` hides Lightning's advertising and known third-party noise for the
duration of one CLI run (nothing is filtered at package import, and the filters are removed when
the run ends). :func:`plan_run_dir` gives each run a timestamped folder with a ``latest`` link
beside it, so ``runs/<recipe>/latest/...`` always names the newest run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from chanformer.io import safe_id

# Warnings that say nothing to a chanformer user (matched against the start of the message).
NOISE_WARNINGS = (
    # Lightning's own default-logger notice: the CLI chooses the logger itself.
    r"Starting from v1\.9\.0, `tensorboardX` has been removed",
    # torch deprecates LeafSpec; lightning.pytorch.utilities._pytree still uses it.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)

# Log lines that are advertising, or device reports that say nothing on a CPU-only machine.
# "GPU available: True (cuda), used: False" is kept: it tells the user a GPU sits idle.
NOISE_LOG_LINES = (
    re.compile(r"^\W*Tip: "),
    re.compile(r"^GPU available: False, used: False$"),
    re.compile(r"^TPU available: False, using: 0 TPU cores$"),
    re.compile(r"^HPU available: False, using: 0 HPUs$"),
)

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric",
                     # where rank_zero_info logs: a logger's filters see only its own records
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")

RUN_DIR_ENV = "CHANFORMER_RUN_DIR"
LATEST = "latest"


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(p.search(text) for p in NOISE_LOG_LINES)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within the block, drop :data:`NOISE_WARNINGS` and :data:`NOISE_LOG_LINES`; every other
    warning and log line is shown as before. Filters and handler filters are restored on exit."""
    drop = _DropNoise()
    handlers: list[logging.Handler] = []
    for name in LIGHTNING_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(drop)
            handlers.append(handler)
    # Records that reach other handlers (root's, pytest's) are filtered at their logger too.
    loggers = [logging.getLogger(n) for n in LIGHTNING_LOGGERS]
    for lg in loggers:
        lg.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for pattern in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)
        for lg in loggers:
            lg.removeFilter(drop)


def _rank_zero() -> bool:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value not in (None, ""):
            return value == "0"
    return True


def run_root(default_root_dir: str | os.PathLike[str] | None, config_files: list[str], run_name: str | None) -> Path:
    """The folder that holds a recipe's runs: the config's ``trainer.default_root_dir``, else
    ``runs/<config name>`` (``runs/chanformer`` without a config file); ``--run_name NAME`` adds
    ``/NAME`` below it."""
    if default_root_dir:
        root = Path(default_root_dir)
    else:
        stem = Path(config_files[-1]).stem if config_files else "chanformer"
        root = Path("runs") / stem
    if run_name:
        root = root / safe_id(run_name, "--run_name")
    return root


def new_run_dir(root: Path, subcommand: str = "fit", now: datetime | None = None) -> Path:
    """Create ``root/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... when that second is taken; a
    ``-<subcommand>`` suffix for validate/test/predict) and return it."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    if subcommand != "fit":
        stamp += f"-{subcommand}"
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{root}: no free run folder name for {stamp}")


def point_latest(run_dir: Path) -> Path:
    """Make ``<root>/latest`` a relative symlink to ``run_dir`` (replaced atomically). Where a
    symlink cannot be made (the file system refuses, or ``latest`` is a real folder), write
    ``<root>/latest.txt`` holding the run folder's name instead. Returns what was written."""
    root = run_dir.parent
    link = root / LATEST
    tmp = root / f".{LATEST}.tmp-{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        pointer = root / f"{LATEST}.txt"
        pointer.write_text(run_dir.name + "\n")
        return pointer
    with contextlib.suppress(FileNotFoundError):
        (root / f"{LATEST}.txt").unlink()  # a stale pointer from a run where links failed
    return link


def plan_run_dir(root: Path, subcommand: str) -> Path:
    """The folder of this run. ``$CHANFORMER_RUN_DIR``, when set, is used as it is (Lightning's
    DDP workers inherit it from the process that created the folder; set it yourself for
    several nodes). Otherwise rank 0 creates a new timestamped folder and, for ``fit``, points
    ``latest`` at it; other ranks only name it."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        return Path(given)
    if not _rank_zero():
        return root / datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = new_run_dir(root, subcommand)
    if subcommand == "fit":
        point_latest(run_dir)
    return run_dir

