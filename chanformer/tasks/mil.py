"""Slide-level classification from bags of tile features (multiple instance learning)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from chanformer.hub import load_pretrained
from chanformer.mil import MILHead, acmil_loss
from chanformer.registry import create_model, list_models
from chanformer.spec import DataSpec
from chanformer.tasks.base import ChannelTask, OptimizerCallable, SchedulerCallable, _default_optimizer

__all__ = ["MILTask"]


class MILTask(ChannelTask):
    """A MIL head (``"acmil"``, ``"abmil"`` or the bag-mean baseline ``"mean"``) on padded bags.

    Batches are :class:`~chanformer.batch.BagBatch` (``features [B, N, D]``, ``mask [B, N]``,
    ``target [B]``). There is no encoder: features were extracted beforehand. Shares
    :class:`ChannelTask`'s step, logging, optimiser, resumption and export conventions; the
    exported module is the MIL head (``save_pretrained`` kind ``acmil``/``abmil``/``meanpool_mil``).

    Loss: :func:`~chanformer.mil.acmil_loss` for ACMIL (branch + slide cross-entropy, weighted by
    ``class_weights`` when given, + ``diversity_weight`` x attention similarity), cross-entropy
    otherwise. Metrics per stage: ``auroc`` (macro one-vs-rest; the binary AUROC for 2 classes),
    ``acc``, ``f1_macro``.

    Args:
        model: which MIL head.
        model_kwargs: its extra arguments (``embed_dim``, ``n_token``, ``mask_drop``, ``dropout``...).
        in_dim: feature width (default: ``data_spec.feature_dim``).
        num_classes: default: ``data_spec.num_classes``.
        class_weights: cross-entropy weight per class.
        diversity_weight: ACMIL attention-diversity weight.
        pretrained: a ``save_pretrained`` folder of the same MIL head to start from.
        data_spec / optimizer / lr_scheduler / export_dir: see :class:`ChannelTask`.
    """

    class_weights: Tensor | None  # buffer (non-persistent), set in configure_losses

    def __init__(
        self,
        model: Literal["acmil", "abmil", "mean"] = "acmil",
        model_kwargs: dict[str, Any] | None = None,
        in_dim: int | None = None,
        num_classes: int | None = None,
        class_weights: list[float] | None = None,
        diversity_weight: float = 1.0,
        data_spec: DataSpec | None = None,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: SchedulerCallable | None = None,
        export_dir: str | None = None,
    ) -> None:
        if class_weights is not None and num_classes is not None and len(class_weights) != num_classes:
            raise ValueError(f"MILTask(class_weights={class_weights}): needs {num_classes} values, one per class")
        self.model_name, self.diversity_weight = model, diversity_weight
        self._sizes = (in_dim, num_classes)
        super().__init__(encoder=None, data_spec=data_spec, pretrained=pretrained, optimizer=optimizer,
                         lr_scheduler=lr_scheduler, export_dir=export_dir)  # fmt: skip

    def configure_models(self) -> None:
        """The MIL head, from the registry's ``mil`` family; sizes from the arguments or ``data_spec``."""
        if self.model_name not in list_models("mil"):
            raise ValueError(f"MILTask(model={self.model_name!r}): expected one of {list_models('mil')}")
        in_dim = self._sizes[0] or self.data_spec.feature_dim
        num_classes = self._sizes[1] or self.data_spec.num_classes
        if not in_dim:
            raise ValueError("MILTask needs in_dim (set in_dim= or link data.spec from a BagDataModule)")
        if not num_classes or num_classes < 2:
            raise ValueError("MILTask needs num_classes >= 2 (set num_classes= or link data.spec)")
        class_weights = self.hparams.get("class_weights")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"MILTask(class_weights={class_weights}): needs {num_classes} values, one per class")
        self.hparams.update(in_dim=int(in_dim), num_classes=int(num_classes))  # resolved, so checkpoints rebuild alone
        self.num_classes = int(num_classes)
        kwargs = self.hparams.get("model_kwargs") or {}
        self.model: MILHead = create_model(self.model_name, in_dim=int(in_dim), n_classes=self.num_classes, **kwargs)

    def configure_losses(self) -> None:
        weights = self.hparams.get("class_weights")
        tensor = None if weights is None else torch.tensor(weights, dtype=torch.float32)
        self.register_buffer("class_weights", tensor, persistent=False)

    def configure_metrics(self) -> MetricCollection:
        n = self.num_classes
        return MetricCollection({
            "auroc": MulticlassAUROC(n, average="macro"),
            "acc": MulticlassAccuracy(n, average="micro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
        })

    def forward(self, batch: Any) -> Any:
        """The MIL head's output tuple for a :class:`~chanformer.batch.BagBatch`."""
        return self.model(batch)

    def slide_logits(self, output: Any) -> Tensor:
        return output.slide_logits if self.model_name == "acmil" else output.logits

    def compute(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        out = self(batch)
        target = batch.target.long()
        logits = self.slide_logits(out)
        w = self.class_weights
        if self.model_name == "acmil":
            if w is None:
                loss = acmil_loss(out, target, self.diversity_weight)
            else:  # acmil_loss with class-weighted cross-entropies
                b, k, c = out.branch_logits.shape
                parts = acmil_loss(out, target, self.diversity_weight, return_parts=True)
                flat = out.branch_logits.reshape(b * k, c)
                branch = F.cross_entropy(flat, target.repeat_interleave(k), weight=w) if k > 1 else 0.0
                loss = branch + F.cross_entropy(logits, target, weight=w) + self.diversity_weight * parts["diversity"]
        else:
            loss = F.cross_entropy(logits, target, weight=w)
        return loss, torch.softmax(logits.detach(), -1), target

    def exportable(self) -> nn.Module:
        return self.model

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        out = self(batch)
        return {"slides": batch.slides, "probs": torch.softmax(self.slide_logits(out), -1), "attention": out[-1]}

    def load_pretrained_weights(self, path: str) -> None:
        """Initialise the MIL head from a ``save_pretrained`` folder of the same head kind and sizes."""
        src = load_pretrained(path)
        if type(src) is not type(self.model):
            raise TypeError(f"pretrained={path!r} holds a {type(src).__name__}, not a {type(self.model).__name__}")
        self.model.load_state_dict(src.state_dict())

