"""``chanformer fit|validate|test|predict`` (LightningCLI) plus ``recipes``, ``encoders``, ``reference``.

``main(args)`` is importable and testable from Python. Recipes are YAML files shipped in
``chanformer/recipes``; ``--config NAME`` accepts a recipe name as well as a path, and
``chanformer fit`` without arguments runs :data:`DEFAULT_RECIPE`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from chanformer.io import WriteError

DEFAULT_RECIPE = "basicmotions-softs"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_DEFAULT_RECIPE_ARGS = ("--trainer.", "--ckpt_path", "--print_config", "--run_name", "--test_after_fit",
                        "--seed_everything")


class UsageError(Exception):
    """A user mistake reported in one line, without a traceback."""


def recipe_dir() -> Path:
    return Path(str(resources.files("chanformer.recipes")))


def list_recipes() -> dict[str, str]:
    """Recipe name -> first comment line (its description)."""
    out = {}
    for path in sorted(recipe_dir().glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        out[path.stem] = first.lstrip("# ").strip()
    return out


def resolve_config(value: str) -> str:
    """A config path, or the path of the shipped recipe called ``value``; the file must hold a
    YAML mapping (an empty file, a list or invalid YAML is named in one line)."""
    if Path(value).is_file():
        check_config_file(Path(value))
        return value
    candidate = recipe_dir() / f"{Path(value).stem}.yaml"
    if candidate.is_file() and (value == candidate.stem or value == candidate.name or value.startswith("recipes/")):
        return str(candidate)
    raise UsageError(f"--config {value!r}: no such file, and no recipe of that name (`chanformer recipes` lists them)")


def check_config_file(path: Path) -> None:
    """Raise :class:`UsageError` naming ``path`` unless it is a readable YAML mapping."""
    import yaml

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: cannot be read as text ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"--config {path}: not valid YAML ({where}{problem})") from None
    if data is None:
        raise UsageError(f"--config {path}: the file is empty (a config needs trainer/model/data sections; "
                         "`chanformer recipes` lists complete ones)")  # fmt: skip
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of trainer/model/data sections, "
                         f"got a YAML {type(data).__name__}")  # fmt: skip


def _resolve_config_args(args: list[str]) -> list[str]:
    out = list(args)
    for i, a in enumerate(out):
        if a in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif a.startswith("--config="):
            out[i] = "--config=" + resolve_config(a.split("=", 1)[1])
    return out


def _lightning(args: list[str]) -> int:
    from chanformer.cli.lightning_cli import run_lightning_cli

    # Arguments that leave the model and data to a config: without --config, the default recipe
    # supplies them (so `fit --print_config` prints what a bare `fit` runs).
    if all(a.startswith(_DEFAULT_RECIPE_ARGS) for a in args[1:]):
        if not any(a in ("--config", "-c") or a.startswith("--config=") for a in args):
            args = [args[0], "--config", DEFAULT_RECIPE, *args[1:]]
    run_lightning_cli(_resolve_config_args(args))
    return 0


def _recipes(_: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table("recipe", "what it does", title="chanformer recipes (chanformer fit --config NAME)")
    for name, desc in list_recipes().items():
        table.add_row(name + (" (default)" if name == DEFAULT_RECIPE else ""), desc)
    Console().print(table)
    return 0


def _encoders(args: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from chanformer.encoders import encoder_entrypoint, list_encoders

    table = Table("encoder", "description", title="registered encoders (create_encoder(name, ...))")
    for name in list_encoders(args[0] if args else "*"):
        doc = (encoder_entrypoint(name).__doc__ or "").strip().splitlines()
        table.add_row(name, doc[0] if doc else "")
    Console().print(table)
    return 0


def _reference(args: list[str]) -> int:
    # Reproducible FFT rounding (MKL's conditional bitwise reproducibility) so phase angles at
    # exactly +-pi match the originals' runs; must be set before the first FFT of the process.
    os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
    from chanformer.cli.reference import reference_main

    return reference_main(args)


def _wsi(args: list[str]) -> int:
    from chanformer.cli.wsi import wsi_main

    return wsi_main(args)


def _embed(args: list[str]) -> int:
    from chanformer.cli.embed import embed_main

    return embed_main(args)


COMMANDS: dict[str, Any] = {"recipes": _recipes, "encoders": _encoders, "reference": _reference, "wsi": _wsi,
                            "embed": _embed}  # fmt: skip


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``chanformer`` command; returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: chanformer {fit,validate,test,predict,recipes,encoders,reference,wsi,embed} ...")
        print(f"  chanformer fit                 train the default recipe ({DEFAULT_RECIPE})")
        print("  chanformer fit --config NAME   train a shipped recipe or a YAML file")
        print("  chanformer recipes | encoders  list recipes / registered encoders")
        print("  chanformer reference check PATH...   compare with original implementations' outputs")
        print("  chanformer wsi synth|tile|extract|heatmap ...   whole-slide images -> feature bags -> heatmaps")
        print("  chanformer embed MODEL FILES... --out OUT.zarr   embeddings of recordings, images or audio")
        return 0
    try:
        if argv[0] in LIGHTNING_COMMANDS:
            return _lightning(argv)
        if argv[0] in COMMANDS:
            return int(COMMANDS[argv[0]](argv[1:]))
        raise UsageError(f"unknown command {argv[0]!r}; expected one of {[*LIGHTNING_COMMANDS, *COMMANDS]}")
    except (UsageError, ValueError, TypeError, FileNotFoundError, KeyError, WriteError, _misconfiguration()) as e:
        if os.environ.get("CHANFORMER_TRACEBACK"):
            raise
        print(f"chanformer: error: {_root_message(e)}", file=sys.stderr)
        return 2


def _misconfiguration() -> type[Exception]:
    """Lightning's error for impossible trainer settings (a user error, reported in one line)."""
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover - lightning is a dependency
        return UsageError
    return MisconfigurationException


def _root_message(exc: BaseException) -> str:
    """First line of the innermost chanformer error behind wrappers (jsonargparse wraps ours)."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        if isinstance(node, WriteError):  # names the destination; what it wraps is the bare OS error
            break
        # ``raise ... from None`` marks the context as irrelevant: the error raised is the message.
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    # KeyErrors at the bottom are look-up details; the ValueError above them says what to do.
    for err in reversed(chain):
        text = str(err).strip()
        if text and not isinstance(err, KeyError) and not text.startswith("Does not validate"):
            return text.splitlines()[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def console_main() -> None:
    sys.exit(main())
