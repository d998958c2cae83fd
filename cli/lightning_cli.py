"""The LightningCLI behind ``chanformer fit|validate|test|predict``."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from chanformer.callbacks import ValidationMonitorCheck, upgrade_checkpoint_callbacks
from chanformer.checkpoint import AtomicCheckpointIO, load_checkpoint_file, refuse_url
from chanformer.cli.main import UsageError
from chanformer.cli.output import RUN_DIR_ENV, plan_run_dir, quiet_lightning, run_root
from chanformer.tasks import ChannelTask

# Lightning's checkpoint path keywords (resolved by the trainer, not files).
_CKPT_KEYWORDS = ("best", "last", "hpc", "registry")


class CheckpointConfigMismatch(UsageError):
    """``--ckpt_path`` holds another model than the config describes."""


class ChanformerCLI(LightningCLI):
    """Links the datamodule's :class:`~chanformer.spec.DataSpec` into the task and, after
    ``fit``, evaluates the best checkpoint on the test split and prints the metrics.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.spec", "model.init_args.data_spec", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, evaluate the best checkpoint on the test split")
        parser.add_argument("--importance_plot", type=str | None, default=None,
                            help="test: write a bar chart (PNG) of mean channel importance over the test set")
        parser.add_argument("--ckpt_overrides_config", type=bool, default=False,
                            help="--ckpt_path: build the model from the checkpoint's saved hyperparameters where "
                                 "they differ from the config's model (default: refuse such a checkpoint)")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="keep this run's folders under <default_root_dir>/NAME (each run gets a "
                                 "timestamped folder there and `latest` points to the newest fit)")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        _parse_ints_as_ints(parser)
        if subcommand in ("test", "validate"):  # our results table replaces Lightning's (--verbose=true: both)
            parser.set_defaults(verbose=False)
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse as LightningCLI does, but report a parser error in one line (argument, file,
        fix) instead of the usage text; ``--help`` output is left alone."""
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                super().parse_arguments(parser, args)
        except SystemExit as e:
            if e.code in (0, None):
                sys.stderr.write(captured.getvalue())
                raise
            raise UsageError(parser_error_line(captured.getvalue(), list(args or []))) from None
        sys.stderr.write(captured.getvalue())

    def _parse_ckpt_path(self) -> None:
        """Read ``--ckpt_path`` tensors-only (URLs refused, unreadable files named in one line) and
        compare its saved hyperparameters with the config's model: a checkpoint of another model
        is refused unless ``--ckpt_overrides_config=true`` (then its hyperparameters win, which
        LightningCLI does, and a warning names what they replace)."""
        sub = self.config.get("subcommand")
        cfg = self.config.get(sub or "", {}) or {}
        path = cfg.get("ckpt_path") if hasattr(cfg, "get") else None
        refuse_url(path, "--ckpt_path")
        if not sub or not path:
            return
        if str(path) in _CKPT_KEYWORDS:
            return
        if not Path(path).is_file():
            raise FileNotFoundError(f"--ckpt_path {path}: no such file")
        ckpt = load_checkpoint_file(path, "--ckpt_path")
        if not isinstance(ckpt, dict):
            raise ValueError(f"--ckpt_path {path}: not a Lightning checkpoint (it holds a {type(ckpt).__name__})")
        saved = dict(ckpt.get("hyper_parameters") or {})
        saved.pop("_instantiator", None)
        if not saved:
            return
        model_cfg = cfg.get("model")
        diffs = hparam_differences(saved, model_cfg)
        if not diffs:
            return  # the checkpoint's hyperparameters are the config's: nothing to restore over it
        theirs, ours = describe_model(saved), describe_model(_model_dict(model_cfg))
        listing = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        if not cfg.get("ckpt_overrides_config", False):
            raise CheckpointConfigMismatch(
                f"--ckpt_path {path} holds {theirs} but the config's model is {ours} ({listing}; checkpoint vs config): "
                "use the config the checkpoint was trained with, or pass --ckpt_overrides_config=true to build "
                "the checkpoint's model"
            )
        print(f"chanformer: warning: --ckpt_path {path}: building the checkpoint's model {theirs} instead of the "
              f"config's {ours} (--ckpt_overrides_config=true): {listing}", file=sys.stderr)  # fmt: skip
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        """Refuse a remote ``--ckpt_path`` before anything is built (checkpoints are pickles), and
        impossible epoch/step limits; ``max_epochs=-1`` (train until stopped) gets a warning."""
        cfg = self.config.get(self.subcommand, {}) if self.subcommand else self.config
        refuse_url(cfg.get("ckpt_path"), "--ckpt_path")
        trainer = cfg.get("trainer") or {}
        for key in ("max_epochs", "min_epochs", "max_steps", "min_steps"):
            value = trainer.get(key) if hasattr(trainer, "get") else None
            if value is None:
                continue
            lowest = -1 if key.startswith("max") else 0
            if value < lowest:
                allowed = "a positive number, or -1 to train until stopped" if lowest == -1 else "0 or more"
                raise UsageError(f"--trainer.{key}={value}{_config_note(cfg)}: expected {allowed}")
        if self.subcommand == "fit" and trainer.get("max_epochs") == -1 and trainer.get("max_steps") in (None, -1) \
                and trainer.get("max_time") is None:
            print(f"chanformer: warning: --trainer.max_epochs=-1{_config_note(cfg)}: this run trains until it is stopped "
                  "(Ctrl-C, an EarlyStopping callback, --trainer.max_steps or --trainer.max_time); pass a positive "
                  "--trainer.max_epochs to stop after that many epochs", file=sys.stderr)  # fmt: skip

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Add a rich progress bar, atomic tensors-only checkpoint I/O and a ``last.ckpt`` written
        after every epoch (see :func:`~chanformer.callbacks.upgrade_checkpoint_callbacks`)."""
        kwargs = {**self._run_folder(), **kwargs}
        trainer = super().instantiate_trainer(**kwargs)
        # Trainer.callbacks is set by Lightning's callback connector and never declared on the class,
        # so its type is given here; the list is edited in place.
        callbacks: list[L.Callback] = trainer.callbacks  # type: ignore[attr-defined]
        upgrade_checkpoint_callbacks(callbacks)
        callbacks.append(ValidationMonitorCheck())
        if trainer.progress_bar_callback is not None and not isinstance(trainer.progress_bar_callback, RichProgressBar):
            callbacks[:] = [c for c in callbacks if c is not trainer.progress_bar_callback]
            callbacks.append(RichProgressBar(leave=True))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        elif not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            # A checkpoint IO of the config's choosing: it is trusted like any class_path in the
            # config, but its loads cannot be vouched for; say so once.
            warnings.warn(f"checkpoint_io {type(trainer.strategy.checkpoint_io).__name__} chosen by the config: "
                          "chanformer's tensors-only loading does not apply to it", stacklevel=1)  # fmt: skip
        return trainer

    def _run_folder(self) -> dict[str, Any]:
        """Trainer arguments that put this run in ``<root>/<timestamp>`` (``latest`` points to the
        newest ``fit``; see :mod:`chanformer.cli.output`). A logger chosen by the config keeps its
        own folders and nothing is changed."""
        sub = self.subcommand or "fit"
        trainer_cfg = self._get(self.config_init, "trainer", default={}) or {}
        logger = trainer_cfg.get("logger")
        if logger not in (None, True, False):
            return {}
        cfg = self.config.get(sub, {}) if self.subcommand else self.config
        files = [str(p) for p in (cfg.get("config") or [])]
        root = run_root(trainer_cfg.get("default_root_dir"), files, cfg.get("run_name"))
        run_dir = plan_run_dir(root, sub)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers started by this run reuse the folder
        out: dict[str, Any] = {"default_root_dir": str(run_dir)}
        if logger is not False:
            out["logger"] = _default_logger(run_dir)
        return out

    def after_fit(self) -> None:
        cfg = self.config.get(self.subcommand, {})
        if not cfg.get("test_after_fit", True) or not _has_test(self.datamodule):
            return
        checkpoint = self.trainer.checkpoint_callback
        ckpt = "best" if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        if self.trainer.is_global_zero and results:
            _print_results(results[0], ckpt)

    def after_test(self) -> None:
        self._print_stage_results("test")
        path = self.config.get(self.subcommand, {}).get("importance_plot")
        if path and self.trainer.is_global_zero:
            _write_importance_plot(self.model, self.datamodule, path)

    def after_validate(self) -> None:
        self._print_stage_results("val")

    def _print_stage_results(self, prefix: str) -> None:
        """``chanformer test`` / ``validate``: the same table as after ``fit`` (Lightning's own
        table is off by default; ``--verbose=true`` adds it)."""
        cfg = self.config.get(self.subcommand, {})
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(f"{prefix}/")}
        if not metrics or not self.trainer.is_global_zero:
            return
        _print_results(metrics, cfg.get("ckpt_path") or "current", stage="test" if prefix == "test" else "validation")


def _int_first_union(args: tuple[Any, ...]) -> Any:
    """``Union[args]`` in exactly this order. ``typing`` caches unions by their unordered set of
    members, so ``Union[int, float]`` can come back as ``Union[float, int]`` when some library
    (scikit-learn, for one) built that first; the raw constructor bypasses the cache."""
    getitem = type(typing.Union).__getitem__
    raw = getattr(getitem, "__wrapped__", None)
    return raw(typing.Union, args) if raw is not None else None


def _parse_ints_as_ints(parser: LightningArgumentParser) -> None:
    """Make ``int | float`` arguments try ``int`` first, whatever order ``typing`` handed out.

    Lightning reads ``limit_train_batches=1`` as one batch but ``1.0`` as all of them; with the
    members in the order ``float, int`` the parser turned the ``1`` a user wrote into ``1.0``
    (seen whenever scikit-learn was imported before the CLI parsed, e.g. in a notebook).
    """
    for action in parser._actions:
        hint = getattr(action, "_typehint", None)
        args = getattr(hint, "__args__", ())
        if typing.get_origin(hint) is typing.Union and int in args and float in args and args.index(float) < args.index(int):
            ordered = (int, float, *(a for a in args if a not in (int, float)))
            fixed = _int_first_union(ordered)
            if fixed is not None:
                action._typehint = fixed  # type: ignore[attr-defined]


def _default_logger(run_dir: Path) -> Any:
    """Lightning's default logger (TensorBoard when installed, else CSV) writing straight into
    ``run_dir`` instead of ``lightning_logs/version_N``."""
    from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    cls = TensorBoardLogger if (_TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE) else CSVLogger
    return cls(save_dir=str(run_dir.parent), name="", version=run_dir.name)


def _write_importance_plot(model: Any, datamodule: Any, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chanformer.importance import has_native_importance, importance_by_channel
    from chanformer.viz import plot_channel_importance

    means = importance_by_channel(model, datamodule.test_dataloader())
    vocab = model.vocab
    names = [vocab[i].key if i < len(vocab) else f"id {i}" for i in means]
    how = "native" if has_native_importance(model) else "occlusion"
    ax = plot_channel_importance(list(means.values()), names, title=f"mean channel importance on the test set ({how})")
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)
    print(f"wrote channel importance plot to {path}")


def _has_test(dm: Any) -> bool:
    try:
        return dm is not None and type(dm).test_dataloader is not L.LightningDataModule.test_dataloader
    except AttributeError:
        return False


def _print_results(metrics: Mapping[str, float], ckpt: str | None, stage: str = "test") -> None:
    from chanformer.eval.report import print_results

    weights = ckpt if ckpt in (None, "best", "last", "current") else Path(ckpt).name
    print_results(metrics, f"{stage} results ({weights or 'last'} weights)")


def run_lightning_cli(args: list[str]) -> ChanformerCLI:
    # main() resolves recipe names, so it passes args even when sys.argv holds the same words.
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    before = os.environ.get(RUN_DIR_ENV)
    try:
        with quiet_lightning():
            return ChanformerCLI(
                ChannelTask,
                L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                args=args,
                save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,
            )
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before


# -- one-line reports ---------------------------------------------------------------------------
def _config_note(cfg: Any) -> str:
    files = [str(p) for p in (cfg.get("config") or [])] if hasattr(cfg, "get") else []
    return f" (config {', '.join(files)})" if files else ""


def _plain(value: Any) -> Any:
    """Namespaces, tuples and paths as plain dicts, lists and strings (for comparison and display)."""
    if hasattr(value, "as_dict") and callable(value.as_dict):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _model_dict(model_cfg: Any) -> dict[str, Any]:
    """The config's model as ``{"_class_path": ..., **init_args}`` (the layout of saved hyperparameters)."""
    model = _plain(model_cfg) if model_cfg is not None else {}
    if not isinstance(model, dict):
        return {}
    out: dict[str, Any] = {}
    if model.get("class_path"):
        out["_class_path"] = model["class_path"]
    out.update(model.get("init_args") or {})
    out.update(model.get("dict_kwargs") or {})
    return out


def _field_differences(key: str, saved: Any, config: Any) -> list[str]:
    if isinstance(saved, dict) and isinstance(config, dict):
        out: list[str] = []
        for k in [*saved, *(k for k in config if k not in saved)]:
            out += _field_differences(f"{key}.{k}", saved.get(k, "(unset)"), config.get(k, "(unset)"))
        return out
    if saved == config or (saved is None and config == {}) or (saved == {} and config is None):
        return []
    return [f"{key} {saved!r} vs {config!r}"]


def hparam_differences(saved: dict[str, Any], model_cfg: Any) -> list[str]:
    """Fields where a checkpoint's saved hyperparameters and the config's model differ
    (``"name checkpoint-value vs config-value"``, nested dicts by dotted key); class first."""
    config = _model_dict(model_cfg)
    saved = _plain(saved)
    out: list[str] = []
    if saved.get("_class_path") and config.get("_class_path") and saved["_class_path"] != config["_class_path"]:
        out.append(f"class {saved['_class_path']} vs {config['_class_path']}")
    for key, value in saved.items():
        # Keys the config's class does not take are what a subclass passed to its base class
        # (MILTask's encoder=None): they follow from the arguments compared here.
        if not key.startswith("_") and key in config:
            out += _field_differences(key, value, config[key])
    return out


def describe_model(hparams: dict[str, Any]) -> str:
    """``ClassificationTask(encoder='softs_test')``: the class and the name of what it builds."""
    name = str(hparams.get("_class_path") or "model").rsplit(".", 1)[-1]
    ident = [f"{k}={hparams[k]!r}" for k in ("encoder", "model") if isinstance(hparams.get(k), str)]
    return f"{name}({', '.join(ident)})"


def _first_item(lines: list[str]) -> str:
    """The first ``- `` item of a jsonargparse union error that is not ``NoneType``, with the
    lines indented under it, as one line."""
    for i, line in enumerate(lines):
        text = line.strip()
        if not text.startswith("- ") or "NoneType" in text:
            continue
        indent = len(line) - len(line.lstrip())
        block = [text[2:]]
        for more in lines[i + 1:]:
            if len(more) - len(more.lstrip()) <= indent or more.strip().startswith("Given value"):
                break
            block.append(more.strip().removeprefix("- "))
        return " ".join(block)
    rest = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(("Given value", "Subtypes", "Errors"))]
    return rest[0] if rest else "invalid value"


def _key_message(key: str, lines: list[str]) -> str:
    """``--model.init_args.frobnicate: ...`` from a ``Parser key "model"`` union error."""
    detail = _first_item(lines[1:])
    given = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("Given value:")), None)
    nested = re.match(r"Problem with given class_path '([\w.]+)':\s*(.*)", detail)
    if nested:
        cls, inner = nested.groups()
        arg = re.match(r'Parser key "([^"]+)":\s*(.*)', inner)
        unknown = re.match(r"Option '([^']+)' is not accepted", inner)
        if arg:
            key, detail, given = f"{key}.init_args.{arg.group(1)}", arg.group(2), None
        elif unknown:
            return f"--{key}.init_args.{unknown.group(1)}: {cls.rsplit('.', 1)[-1]} has no such argument"
        else:
            key, detail, given = f"{key}.class_path", f"{cls}: {inner}", None
    got = re.match(r"(.*)\. Got value: (.*)", detail)
    if got:
        detail, given = got.groups()
    if given and given not in detail and "NestedArg" not in given:
        detail += f" (given {given})"
    return f"--{key}: {detail}"


def parser_error_line(text: str, args: list[str]) -> str:
    """One line from jsonargparse's usage + ``error: ...`` output: the argument, what is wrong,
    the config file(s) given, and where the accepted options are listed."""
    at = text.rfind("error: ")
    body = text[at + len("error: "):] if at >= 0 else text
    lines = [ln.rstrip() for ln in body.splitlines() if ln.strip()]
    head = lines[0].strip() if lines else "invalid arguments"
    sub = next((a for a in args if a in ("fit", "validate", "test", "predict")), "fit")
    key = re.match(r'Parser key "([^"]+)":', head)
    option = re.match(r"Subcommand '(\w+)' does not accept option '([^']+)'", head)
    if key:
        message = _key_message(key.group(1), lines)
    elif option:
        message = f"--{option.group(2)}: `chanformer {option.group(1)}` has no such option"
    elif head.startswith("Unexpected config"):
        message = "--config: the config is empty or is not a mapping of trainer/model/data sections"
    else:
        message = head
    message = re.sub(r"Expected an? <class '([\w.]+)'>", r"expected \1", message)
    message = re.sub(r"<class '([\w.]+)'>", r"\1", message)
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    note = f" (config {', '.join(configs)})" if configs else ""
    return f"{message}{note}; `chanformer {sub} --help` lists the accepted options and their types"
