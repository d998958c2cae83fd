"""Classification of whole recordings, images or series from a pooled encoder embedding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import ConfusionMatrix, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCohenKappa, MulticlassF1Score

from chanformer.batch import ChannelBatch
from chanformer.tasks.base import ChannelTask

__all__ = ["ClassificationTask"]


class ClassificationTask(ChannelTask):
    """Encoder ``[B, D]`` -> dropout -> linear head -> class logits ``[B, num_classes]``.

    Reports accuracy, balanced accuracy (macro recall), macro-F1 and Cohen's kappa for every
    stage, and the test confusion matrix (``self.test_confusion`` after ``test``).

    Args:
        num_classes: overrides ``data_spec.num_classes``.
        label_smoothing: cross-entropy label smoothing.
        head_dropout: dropout before the linear head.
        **kwargs: see :class:`ChannelTask`.
    """

    def __init__(
        self, *args: Any, num_classes: int | None = None, label_smoothing: float = 0.0, head_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self._num_classes_arg = num_classes
        self.label_smoothing = label_smoothing
        self.head_dropout = head_dropout
        super().__init__(*args, **kwargs)
        self.confusion = ConfusionMatrix(task="multiclass", num_classes=self.num_classes)
        self.test_confusion: Tensor | None = None

    @property
    def num_classes(self) -> int:
        n = self._num_classes_arg or self.data_spec.num_classes
        if not n or n < 2:
            raise ValueError("ClassificationTask needs num_classes >= 2 (set num_classes= or link data.spec)")
        return int(n)

    def configure_head(self) -> None:
        self.head = nn.Sequential(nn.Dropout(self.head_dropout), nn.Linear(self.encoder.embed_dim, self.num_classes))

    def configure_metrics(self) -> MetricCollection:
        n = self.num_classes
        return MetricCollection({
            "acc": MulticlassAccuracy(n, average="micro"),
            "balanced_acc": MulticlassAccuracy(n, average="macro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
            "kappa": MulticlassCohenKappa(n),
        })

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.encoder(batch))

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch)
        target = batch.target.long()  # type: ignore[union-attr]
        loss = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing if self.training else 0.0)
        return loss, logits, target

    def test_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        loss = super().test_step(batch, batch_idx)
        with torch.no_grad():
            self.confusion.update(self(batch), batch.target.long())  # type: ignore[union-attr]
        return loss

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.confusion.compute().cpu()
        self.confusion.reset()

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return torch.softmax(self(batch), dim=-1)
