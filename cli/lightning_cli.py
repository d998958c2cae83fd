"""The LightningCLI behind ``chanformer fit|validate|test|predict``."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from chanformer.callbacks import upgrade_checkpoint_callbacks
from chanformer.checkpoint import AtomicCheckpointIO, load_checkpoint_file, refuse_url
from chanformer.tasks import ChannelTask


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

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads the hyperparameters of ``--ckpt_path`` (tensors-only) before anything
        else: refuse URLs first, and turn its unpickling errors into one named line."""
        cfg = self.config.get(self.config.get("subcommand") or "", {}) or {}
        path = cfg.get("ckpt_path") if hasattr(cfg, "get") else None
        refuse_url(path, "--ckpt_path")
        failure: Exception | None = None
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as e:
            failure = e
        if failure is not None:
            load_checkpoint_file(path, "--ckpt_path")  # raises the named error for the same fault
            raise failure

    def before_instantiate_classes(self) -> None:
        """Refuse a remote ``--ckpt_path`` before anything is built (checkpoints are pickles)."""
        cfg = self.config.get(self.subcommand, {}) if self.subcommand else self.config
        refuse_url(cfg.get("ckpt_path"), "--ckpt_path")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Add a rich progress bar, atomic tensors-only checkpoint I/O and a ``last.ckpt`` written
        after every epoch (see :func:`~chanformer.callbacks.upgrade_checkpoint_callbacks`)."""
        trainer = super().instantiate_trainer(**kwargs)
        upgrade_checkpoint_callbacks(trainer.callbacks)
        if trainer.progress_bar_callback is not None and not isinstance(trainer.progress_bar_callback, RichProgressBar):
            trainer.callbacks = [c for c in trainer.callbacks if c is not trainer.progress_bar_callback]
            trainer.callbacks.append(RichProgressBar(leave=True))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        elif not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            # A checkpoint IO of the config's choosing: it is trusted like any class_path in the
            # config, but its loads cannot be vouched for; say so once.
            warnings.warn(f"checkpoint_io {type(trainer.strategy.checkpoint_io).__name__} chosen by the config: "
                          "chanformer's tensors-only loading does not apply to it", stacklevel=1)  # fmt: skip
        return trainer

    def after_fit(self) -> None:
        cfg = self.config.get(self.subcommand, {})
        if not cfg.get("test_after_fit", True) or not _has_test(self.datamodule):
            return
        ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        if self.trainer.is_global_zero and results:
            _print_results(results[0], ckpt)

    def after_test(self) -> None:
        path = self.config.get(self.subcommand, {}).get("importance_plot")
        if path and self.trainer.is_global_zero:
            _write_importance_plot(self.model, self.datamodule, path)


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


def _print_results(metrics: dict[str, float], ckpt: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value", title=f"test results ({ckpt or 'last'} weights)")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


def run_lightning_cli(args: list[str]) -> ChanformerCLI:
    # main() resolves recipe names, so it passes args even when sys.argv holds the same words.
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    return ChanformerCLI(
        ChannelTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
