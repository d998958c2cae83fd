"""Classification of whole recordings, images or series from a pooled encoder embedding:
single-label (softmax over classes) or multi-label (one sigmoid per label, multi-hot targets)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import ConfusionMatrix, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassF1Score,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from chanformer.batch import ChannelBatch
from chanformer.tasks.base import ChannelTask

__all__ = ["ClassificationTask"]


class ClassificationTask(ChannelTask):
    """Encoder ``[B, D]`` -> dropout -> linear head -> logits ``[B, num_classes]``.

    Single-label (the default): cross-entropy over class indices ``[B]``; reports accuracy
    (``acc``), balanced accuracy (``balanced_acc``, macro recall), macro-F1 (``f1_macro``) and
    Cohen's kappa (``kappa``) for every stage; ``predict`` returns softmax probabilities.

    Multi-label (``multilabel=True``, or a data spec with ``multilabel=True`` such as
    BigEarthNet's): targets are multi-hot ``[B, num_classes]``, the loss is binary cross-entropy
    with logits (optionally ``pos_weight``), and the metrics are the mean average precision micro-
    and macro-averaged over labels (``map_micro``, ``map_macro``) and F1 at threshold 0.5
    (``f1_micro``, ``f1_macro``); ``predict`` returns one sigmoid probability per label. A label
    without a positive sample in the evaluated set counts as 0 in the macro averages
    (torchmetrics' convention).

    ``self.test_confusion`` holds the test confusion matrix after ``test``: ``[C, C]``
    single-label, ``[C, 2, 2]`` (one binary matrix per label) multi-label.

    Args:
        num_classes: overrides ``data_spec.num_classes`` (the number of labels when multi-label).
        multilabel: multi-hot targets and sigmoid outputs; default: ``data_spec.multilabel``.
        pos_weight: multi-label only: weight of the positive term of each label's loss (one value
            for all labels, or one per label), e.g. ``negatives / positives`` for rare labels.
        label_smoothing: cross-entropy label smoothing (single-label only).
        head_dropout: dropout before the linear head.
        **kwargs: see :class:`ChannelTask`.
    """

    pos_weight: Tensor | None  # buffer (register_buffer)

    def __init__(
        self, *args: Any, num_classes: int | None = None, multilabel: bool | None = None,
        pos_weight: float | list[float] | None = None, label_smoothing: float = 0.0, head_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self._num_classes_arg = num_classes
        self._multilabel_arg = multilabel
        self._pos_weight_arg = pos_weight
        self.label_smoothing = label_smoothing
        self.head_dropout = head_dropout
        super().__init__(*args, **kwargs)
        if self.multilabel:
            self.confusion = ConfusionMatrix(task="multilabel", num_labels=self.num_classes)
        else:
            self.confusion = ConfusionMatrix(task="multiclass", num_classes=self.num_classes)
        self.test_confusion: Tensor | None = None

    @property
    def num_classes(self) -> int:
        n = self._num_classes_arg or self.data_spec.num_classes
        if not n or n < 2:
            raise ValueError(f"{type(self).__name__} needs num_classes >= 2 (set num_classes= or link data.spec)")
        return int(n)

    @property
    def multilabel(self) -> bool:
        """Whether targets are multi-hot (the argument, else the data spec's ``multilabel``)."""
        if self._multilabel_arg is not None:
            return bool(self._multilabel_arg)
        return bool(self.data_spec.multilabel)

    def configure_head(self) -> None:
        if self._multilabel_arg is False and self.data_spec.multilabel:
            raise ValueError(f"{type(self).__name__}(multilabel=False): the data spec says the targets are multi-hot "
                             "(multilabel=True); cross-entropy would read them as class probabilities")  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(self.head_dropout), nn.Linear(self.encoder.embed_dim, self.num_classes))

    def configure_losses(self) -> None:
        weight, tensor = self._pos_weight_arg, None
        if self.multilabel and self.label_smoothing:
            raise ValueError(f"{type(self).__name__}(label_smoothing={self.label_smoothing}): single-label only")
        if weight is not None:
            if not self.multilabel:
                raise ValueError(f"{type(self).__name__}(pos_weight=...): multi-label only (multilabel=True)")
            values = [float(weight)] if isinstance(weight, (int, float)) else [float(w) for w in weight]
            if len(values) not in (1, self.num_classes):
                raise ValueError(f"{type(self).__name__}(pos_weight={weight}): needs 1 or {self.num_classes} values")
            tensor = torch.tensor(values, dtype=torch.float32)
        self.register_buffer("pos_weight", tensor, persistent=False)

    def configure_metrics(self) -> MetricCollection:
        n = self.num_classes
        if self.multilabel:
            return MetricCollection({
                "map_micro": MultilabelAveragePrecision(n, average="micro"),
                "map_macro": MultilabelAveragePrecision(n, average="macro"),
                "f1_micro": MultilabelF1Score(n, threshold=0.5, average="micro"),
                "f1_macro": MultilabelF1Score(n, threshold=0.5, average="macro"),
            })
        return MetricCollection({
            "acc": MulticlassAccuracy(n, average="micro"),
            "balanced_acc": MulticlassAccuracy(n, average="macro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
            "kappa": MulticlassCohenKappa(n),
        })

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head(self.encoder(batch))

    def probabilities(self, logits: Tensor) -> Tensor:
        """Softmax over classes, or one sigmoid per label (multi-label)."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    def _target(self, batch: ChannelBatch) -> Tensor:
        target: Tensor = batch.target  # type: ignore[assignment]
        n = self.num_classes
        if self.multilabel and tuple(target.shape[1:]) != (n,):
            raise ValueError(f"{type(self).__name__}(multilabel=True) needs multi-hot targets [B, {n}], "
                             f"got {tuple(target.shape)}")  # fmt: skip
        if not self.multilabel and target.ndim != 1:
            raise ValueError(f"{type(self).__name__} needs class indices [B], got targets {tuple(target.shape)}"
                             " (multi-hot? set multilabel=true or link a data spec with multilabel=True)")  # fmt: skip
        return target

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch)
        target = self._target(batch)
        if self.multilabel:
            pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
            loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pos_weight)
            return loss, torch.sigmoid(logits.detach()), target.long()
        target = target.long()
        loss = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing if self.training else 0.0)
        return loss, logits, target

    def test_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        loss = super().test_step(batch, batch_idx)
        with torch.no_grad():
            self.confusion.update(self.probabilities(self(batch)), self._target(batch).long())
        return loss

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.confusion.compute().cpu()
        self.confusion.reset()

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.probabilities(self(batch))
