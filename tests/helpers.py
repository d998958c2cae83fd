"""Test-only Lightning callbacks (imported by CLI subprocesses through PYTHONPATH)."""

from __future__ import annotations

import os

import lightning as L


class KillAtEpoch(L.Callback):
    """Kill the process without any clean-up when ``epoch`` starts (simulates a crash)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(17)
