"""Shared Lightning plumbing: encoder construction, one step for every stage, optimisers,
reproducible resumption, and the pretrained export at the end of ``fit``.
"""

from __future__ import annotations

import abc
import random
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab
from chanformer.checkpoint import CheckpointMismatchError
from chanformer.contract import InputContract
from chanformer.encoders import Encoder, create_encoder
from chanformer.hub import ModelCard, load_pretrained, save_pretrained, update_model_card
from chanformer.remap import ChannelRemapError, plan_remap, remap_rows
from chanformer.spec import DataSpec

__all__ = ["ChannelTask", "OptimizerCallable", "SchedulerCallable"]

SchedulerCallable = LRSchedulerCallable


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)


class ChannelTask(L.LightningModule, metaclass=abc.ABCMeta):
    """Base task: an injected encoder plus a task head, trained through one shared step.

    Args:
        encoder: registered encoder name (``chanformer encoders`` lists them).
        encoder_kwargs: overrides of the encoder variant's defaults.
        data_spec: facts about the data (linked from the datamodule by the CLI); fills the
            encoder's data-dependent arguments and the head size.
        pretrained: optional chanformer pretrained folder whose encoder weights initialise ours;
            its channel table is re-indexed by channel key onto the data's vocabulary
            (:meth:`~chanformer.encoders.Encoder.adapt_to_vocab`).
        strict_channels: refuse (instead of initialising from metadata with a warning) channels
            that a pretrained encoder or a ``--ckpt_path`` checkpoint never saw.
        optimizer: callable ``params -> Optimizer`` (AdamW, lr 1e-3 by default).
        lr_scheduler: optional callable ``optimizer -> LRScheduler`` (stepped per epoch).
        export_dir: where ``fit`` writes the trained encoder with ``save_pretrained``
            (default: ``<log_dir>/pretrained``).
    """

    #: Whether every batch must carry a ``target`` (False for self-supervised tasks).
    requires_target: ClassVar[bool] = True

    def __init__(
        self,
        encoder: str | None = "softs_small",
        encoder_kwargs: dict[str, Any] | None = None,
        data_spec: DataSpec | None = None,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: SchedulerCallable | None = None,
        export_dir: str | None = None,
        strict_channels: bool = False,
    ) -> None:
        super().__init__()
        self.strict_channels = bool(strict_channels)
        # export_dir is where this run writes, not a property of the model: LightningCLI restores
        # saved hyperparameters on --ckpt_path, which must not redirect a resumed run's export.
        # horizon comes from the data (Lightning refuses a model and datamodule hparam that differ).
        self.save_hyperparameters(
            ignore=["optimizer", "lr_scheduler", "data_spec", "export_dir", "horizon", "strict_channels"]
        )
        self.data_spec = data_spec or DataSpec()
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.export_dir = export_dir
        self.configure_models()
        if pretrained is not None:
            self.load_pretrained_weights(pretrained)
        self.configure_losses()
        metrics = self.configure_metrics()
        # One collection per stage (attributes, since ModuleDict cannot hold a key named "train").
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    # -- hooks for subclasses (as torchgeo's trainers: models, losses, metrics) ----------------
    def configure_models(self) -> None:
        """Build the trainable modules. Default: the registered encoder named by ``encoder``
        (data-dependent arguments filled from ``data_spec``), then :meth:`configure_head`.
        Tasks without an encoder (MIL heads, speech enhancement) override this."""
        name = self.hparams.get("encoder")
        if name is None:
            raise ValueError(f"{type(self).__name__}(encoder=None): this task needs a registered encoder name")
        self.encoder: Encoder = create_encoder(name, data_spec=self.data_spec, **(self.hparams.get("encoder_kwargs") or {}))
        self.configure_head()

    def configure_head(self) -> None:
        """Create the task head(s) from ``self.encoder.embed_dim`` and ``self.data_spec``."""

    def configure_losses(self) -> None:
        """Create loss modules or weights (called after the models and any pretrained weights)."""

    @abc.abstractmethod
    def configure_metrics(self) -> MetricCollection:
        """The metrics of one stage; cloned with a ``train/``, ``val/``, ``test/`` prefix."""

    @abc.abstractmethod
    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(loss, predictions for metrics, targets for metrics)``."""

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        metrics.update(preds, target)

    # -- the one shared step ------------------------------------------------------------------
    @property
    def vocab(self) -> ChannelVocab:
        return self.data_spec.vocab

    def shared_step(self, batch: ChannelBatch, stage: str) -> Tensor:
        if self.requires_target and batch.target is None:
            raise ValueError(f"{type(self).__name__}: the {stage} batch has no target")
        try:
            batch.check_finite(self.vocab if len(self.vocab) else None)
        except ValueError as e:
            raise ValueError(f"{stage} batch {self._batch_index.get(stage, '?')}: {e}{self._origin(batch, stage)}") from None
        loss, preds, target = self.compute(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage} loss is {loss.item()} at step {self.global_step}")
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        self.update_metrics(metrics, preds, target, batch)  # type: ignore[arg-type]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=batch.batch_size)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch.batch_size)
        return loss

    def _origin(self, batch: ChannelBatch, stage: str) -> str:
        """``; it is sample 17 of the train dataset: FILE, line 25 (case 17)``, as far as the
        dataset knows (see :mod:`chanformer.provenance`); empty when there is no loader to ask."""
        from chanformer.provenance import describe_sample, find_nonfinite_sample

        position = next((b for b in range(batch.batch_size) if not _finite(batch[b], self.vocab)), None)
        trainer = self._trainer
        if position is None or trainer is None:
            return ""
        loaders = {"train": "train_dataloader", "val": "val_dataloaders", "test": "test_dataloaders"}
        loader = getattr(trainer, loaders.get(stage, ""), None)
        if isinstance(loader, (list, tuple)):
            loader = loader[0] if len(loader) == 1 else None
        dataset, index, searched_all = find_nonfinite_sample(loader, self._batch_index.get(stage), position)
        if dataset is None:
            return ""
        if index is None:
            if not searched_all:
                return ""
            return (f"; no sample of the {stage} dataset ({type(dataset).__name__}) holds a non-finite value, so it "
                    "arose after loading (an augmentation or transform, or the transfer to the device)")  # fmt: skip
        return f"; it is sample {index} of the {stage} dataset: {describe_sample(dataset, index)}"

    @property
    def _batch_index(self) -> dict[str, int]:
        if "_batch_indices" not in self.__dict__:
            self.__dict__["_batch_indices"] = {}
        return self.__dict__["_batch_indices"]  # type: ignore[no-any-return]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_index["train"] = batch_idx

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_index["val"] = batch_idx

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_index["test"] = batch_idx

    def training_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "epoch"}}

    # -- pretrained export / import -------------------------------------------------------------
    def load_pretrained_weights(self, path: str) -> None:
        """Initialise the encoder from a ``save_pretrained`` folder, re-indexed onto the data's
        vocabulary; shapes and keys must match (a named error lists what differs)."""
        vocab = self.vocab if len(self.vocab) else None
        src = load_pretrained(path, vocab=vocab, strict=self.strict_channels)
        if not isinstance(src, Encoder):
            raise TypeError(f"pretrained={path!r} holds a {type(src).__name__}, not an encoder")
        ours, theirs = self.encoder.state_dict(), src.state_dict()
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(ours[k].shape)}" for k, v in theirs.items()
                  if k in ours and v.shape != ours[k].shape]  # fmt: skip
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        if missing or unexpected or shapes:
            raise ValueError(f"pretrained={path!r} does not fit encoder {self.hparams['encoder']!r}: "
                             f"missing {missing}, unexpected {unexpected}, shapes (pretrained vs ours) {shapes}")
        self.encoder.load_state_dict(theirs)
        self.encoder.vocab = src.vocab

    def export_path(self) -> Path:
        if self.export_dir is not None:
            return Path(self.export_dir)
        log_dir = self.trainer.log_dir if self._trainer is not None else None
        return Path(log_dir or ".") / "pretrained"

    def exportable(self) -> nn.Module:
        """The module written by ``save_pretrained`` at the end of ``fit``."""
        return self.encoder

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self.export_pretrained(self.exportable(), self.vocab)
            self.print(f"exported {type(self.exportable()).__name__} to {path}")

    # -- what travels with the export: input contract and model card ----------------------------
    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def input_contract(self) -> InputContract | None:
        """The preprocessing the exported model expects: the datamodule's ``input_contract()``
        when it has one, else what its ``spec`` (or this task's ``data_spec``) tells. A contract
        that cannot be built is reported with a warning (the export goes on without it)."""
        dm = self._datamodule()
        try:
            fn = getattr(dm, "input_contract", None)
            if callable(fn):
                return fn()  # type: ignore[no-any-return]
            spec = getattr(dm, "spec", None)
            return InputContract.from_spec(spec if isinstance(spec, DataSpec) else self.data_spec)
        except Exception as e:  # noqa: BLE001 - an export must not fail on its description
            warnings.warn(f"{type(self).__name__}: no input contract exported ({type(e).__name__}: {e})", stacklevel=2)
            return None

    def run_metrics(self, prefix: str = "") -> dict[str, float]:
        """Finite scalar metrics logged so far in this run (``trainer.callback_metrics``)."""
        out: dict[str, float] = {}
        if self._trainer is None:
            return out
        for name, value in self.trainer.callback_metrics.items():
            if not name.startswith(prefix):
                continue
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if np.isfinite(v):
                out[name] = v
        return out

    def model_card(self) -> ModelCard:
        """The exported model's card: task, training data (the datamodule and its arguments),
        metrics of the run so far; test metrics are added by :meth:`on_test_end`."""
        dm = self._datamodule()
        data = ""
        if dm is not None:
            hp = getattr(dm, "hparams", {}) or {}
            shown = [f"{k}={v!r}" for k, v in hp.items() if isinstance(v, (str, int, float, bool)) and v is not None][:8]
            data = f"{type(dm).__name__}({', '.join(shown)})"
        model = self.hparams.get("encoder") or self.hparams.get("model") or type(self.exportable()).__name__
        return ModelCard(model=str(model), task=type(self).__name__, training_data=data, metrics=self.run_metrics())

    def export_pretrained(self, module: nn.Module, vocab: ChannelVocab | None) -> Path:
        """``save_pretrained`` of ``module`` to :meth:`export_path` with this run's input contract
        and model card (tasks that export something else call this from their ``on_fit_end``)."""
        vocab = vocab if vocab is not None and len(vocab) else None
        path = save_pretrained(module, self.export_path(), vocab=vocab, input_contract=self.input_contract(),
                               card=self.model_card())  # fmt: skip
        self.__dict__["_exported_to"] = path
        return path

    def on_test_end(self) -> None:
        """Add the test metrics to the model card this run exported (if it exported one)."""
        path = self.__dict__.get("_exported_to")
        if path is not None and self.trainer.is_global_zero and Path(path, "README.md").is_file():
            update_model_card(path, metrics=self.run_metrics("test/"))

    def _remap_checkpoint_channels(self, checkpoint: dict[str, Any], saved: ChannelVocab) -> None:
        """Re-index the checkpoint's channel tables by key onto this run's vocabulary (in place)."""
        if saved == self.vocab:
            return
        stage = self._trainer.state.fn if self._trainer is not None else None
        if stage == "fit":
            plan = plan_remap(saved, self.vocab)
            raise ChannelRemapError(
                f"the checkpoint was trained on vocabulary {saved.name!r} and this run's data uses "
                f"{self.vocab.name!r} (new: {plan.new_keys}, dropped: {plan.dropped_keys}, or another order); "
                "resuming would misalign the optimiser state: fine-tune with model.pretrained=<exported folder> instead"
            )
        state = checkpoint.get("state_dict", {})
        for name, module in self.named_modules():
            if not isinstance(module, Encoder):
                continue
            missing = [k for k in module.required_channels() if k not in self.vocab]
            if missing:
                raise ChannelRemapError(
                    f"{type(module).__name__} has a fixed input layout; this run's vocabulary lacks {missing}"
                )
            key = f"{name}.channel_embed.weight" if name else "channel_embed.weight"
            if module.channel_table() is None or key not in state:
                continue
            plan = plan_remap(saved, self.vocab)
            if plan.new_keys and self.strict_channels:
                raise ChannelRemapError(f"the checkpoint never saw channel(s) {plan.new_keys} (strict_channels=True)")
            if plan.new_keys:
                warnings.warn(f"initialising channel(s) the checkpoint never saw ({plan.init_summary()}): {plan.new_keys}",
                              stacklevel=2)  # fmt: skip
            state[key] = remap_rows(state[key], plan)
            module.vocab = self.vocab

    def _check_checkpoint_fits(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one line, a checkpoint whose tensors do not fit this model (before Lightning's
        ``load_state_dict`` would raise its multi-line error): file, first differing keys and shapes."""
        state = checkpoint.get("state_dict")
        if not isinstance(state, dict):
            return
        ours = self.state_dict()
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(ours[k].shape)}" for k, v in state.items()
                  if k in ours and isinstance(v, Tensor) and v.shape != ours[k].shape]  # fmt: skip
        strict = bool(getattr(self, "strict_loading", True))
        missing = sorted(set(ours) - set(state)) if strict else []
        unexpected = sorted(set(state) - set(ours)) if strict else []
        if not (shapes or missing or unexpected):
            return
        path = self._trainer.ckpt_path if self._trainer is not None else None

        def first(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

        parts = [f"shapes (checkpoint vs model): {first(shapes)}"] if shapes else []
        parts += [f"missing from the checkpoint: {first(missing)}"] if missing else []
        parts += [f"not in the model: {first(unexpected)}"] if unexpected else []
        name = self.hparams.get("encoder") or self.hparams.get("model")
        model = f"{type(self).__name__}({name!r})" if isinstance(name, str) else type(self).__name__
        raise CheckpointMismatchError(
            f"--ckpt_path {path or '(checkpoint)'}: its tensors do not fit the config's model {model}: "
            f"{'; '.join(parts)}; the checkpoint was trained with "
            "another model or other data (channels, classes): use that config and data"
        )

    # -- reproducible resumption: RNG states travel in the checkpoint ---------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain tensors, ints and tuples only, so the checkpoint loads with weights_only=True.
        state = np.random.get_state(legacy=True)
        if not isinstance(state, tuple):  # pragma: no cover - the global RandomState is always MT19937
            raise RuntimeError("numpy's global RandomState did not return its legacy MT19937 state")
        name, keys, pos, has_gauss, gauss = state
        checkpoint["chanformer_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "python": random.getstate(),
        }
        checkpoint["chanformer_vocab"] = self.vocab.to_json()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("chanformer_vocab")
        if saved is not None and len(self.vocab):
            self._remap_checkpoint_channels(checkpoint, ChannelVocab.from_json(saved))
        self._check_checkpoint_fits(checkpoint)
        rng = checkpoint.get("chanformer_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])


def _finite(sample: ChannelBatch, vocab: ChannelVocab) -> bool:
    try:
        sample.check_finite(vocab if len(vocab) else None)
    except ValueError:
        return False
    return True
