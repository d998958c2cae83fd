"""Lightning callbacks that chanformer recipes use."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from torch import Tensor

from chanformer.io import write_text_atomic

__all__ = [
    "ModelCheckpoint",
    "RankConsistencyCheck",
    "ValidationMonitorCheck",
    "parameter_digest",
    "upgrade_checkpoint_callbacks",
]


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``save_last`` rewrites ``last.ckpt`` after every
    training epoch, whether or not the monitored metric improved.

    Lightning 2.x writes ``last.ckpt`` only when it has just saved a top-k checkpoint ("a copy
    whenever a checkpoint file gets saved"), so with ``monitor=`` and ``save_top_k=1`` a run
    whose metric stops improving keeps an old ``last.ckpt`` and a resume restarts many epochs
    back. Here ``last.ckpt`` always holds the end of the latest epoch (and of the latest
    validation run): a resume loses at most the epoch that was running. With ``save_last="link"``
    the link is replaced by a real file whenever it would point at an older epoch.
    """

    _last_current_step: int | None = None  # global step that last.ckpt holds (None: not written yet)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        # Saving (or linking to a checkpoint) of this step leaves _last_global_step_saved at it.
        if self.save_last and self._last_global_step_saved == trainer.global_step:
            self._last_current_step = trainer.global_step

    def _ensure_last(self, trainer: L.Trainer) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not self.save_last or not fitting or getattr(trainer, "fast_dev_run", False):
            return
        if self._last_current_step == trainer.global_step:
            return
        mode = self.save_last
        self.save_last = True  # a file, never a link to an older epoch's checkpoint
        try:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            self.save_last = mode

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._ensure_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Also on epochs without validation (check_val_every_n_epoch > 1): validation, when it
        # runs at an epoch's end, comes before this hook, so it is never saved twice.
        self._ensure_last(trainer)


def upgrade_checkpoint_callbacks(callbacks: Iterable[Any]) -> int:
    """Turn every plain Lightning ``ModelCheckpoint`` with ``save_last`` into :class:`ModelCheckpoint`
    (same settings and state; only ``last.ckpt`` is written more often). Returns how many.

    The chanformer CLI applies it to the trainer's callbacks, so configs naming
    ``lightning.pytorch.callbacks.ModelCheckpoint`` get a ``last.ckpt`` after every epoch too.
    """
    n = 0
    for cb in callbacks:
        if type(cb) is _LightningModelCheckpoint and cb.save_last:
            cb.__class__ = ModelCheckpoint  # adds behaviour only; no new state to initialise
            n += 1
    return n


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in name order (bit-exact identity of weights)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


class RankConsistencyCheck(L.Callback):
    """At the end of ``fit``, gather each rank's weight digest; fail if ranks disagree.

    Under DDP every rank must hold the same weights after each optimiser step; a mismatch
    means a non-synchronised buffer or an unsynchronised random decision. Rank 0 writes
    ``{"world_size": N, "digests": [...], "agree": bool}`` to ``report`` when given.
    """

    def __init__(self, report: str | None = None) -> None:
        self.report = report

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = parameter_digest(pl_module)
        digests = [digest]
        if trainer.world_size > 1:
            gathered: list[str | None] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, digest)
            digests = [str(d) for d in gathered]
        agree = len(set(digests)) == 1
        if trainer.is_global_zero and self.report:
            write_text_atomic(Path(self.report), json.dumps(
                {"world_size": trainer.world_size, "digests": digests, "agree": agree}))
        if not agree:
            raise RuntimeError(f"ranks hold different weights after fit: {digests}")


def _has_validation_batches(trainer: L.Trainer) -> bool | None:
    """Whether this fit will run validation batches (``None``: cannot tell without a data module)."""
    if trainer.limit_val_batches == 0:
        return False
    dm = trainer.datamodule  # type: ignore[attr-defined]
    if dm is None:
        return None
    loaders = dm.val_dataloader()
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    for loader in loaders:
        try:
            if len(loader) > 0:
                return True
        except TypeError:  # an iterable-style loader has no length: assume it yields batches
            return True
    return False


class ValidationMonitorCheck(L.Callback):
    """Stops a fit before its first step when a callback monitors a validation metric (``val/...``,
    e.g. ``EarlyStopping(monitor="val/loss")``) that the run can never log: no validation split
    (``val_fraction=0``) or ``limit_val_batches=0``. Without it the fit trains one epoch and then
    Lightning raises deep inside the callback. Added by the CLI to every fit."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
        watchers = [(type(c).__name__, c.monitor) for c in callbacks
                    if isinstance(getattr(c, "monitor", None), str) and c.monitor.startswith("val")]  # fmt: skip
        if not watchers or _has_validation_batches(trainer) is not False:
            return
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        dm = trainer.datamodule  # type: ignore[attr-defined]
        if trainer.limit_val_batches == 0:
            why = "--trainer.limit_val_batches=0"
        elif getattr(dm, "val_fraction", None) == 0:
            why = f"{type(dm).__name__}(val_fraction=0) holds out no validation cases"
        else:
            why = f"{type(dm).__name__} gives no validation batches"
        named = " and ".join(f"{name} monitors {metric!r}" for name, metric in watchers)
        raise MisconfigurationException(
            f"{named}, but this fit has no validation data ({why}). To train on every training case for a "
            "fixed number of epochs, drop the callbacks that watch validation metrics (--trainer.callbacks=[]; "
            "the last epoch's weights are then kept and tested); otherwise keep a validation split."
        )
