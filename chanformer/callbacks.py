"""Lightning callbacks that chanformer recipes use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch

from chanformer.io import write_text_atomic

__all__ = ["RankConsistencyCheck", "parameter_digest"]


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
