"""Seizure detection: binary classification of iEEG/EEG windows with clinical metrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryCohenKappa, BinaryRecall, BinarySpecificity

from chanformer.batch import ChannelBatch
from chanformer.tasks.classification import ClassificationTask

__all__ = ["FalseAlarmsPerHour", "SeizureDetectionTask"]


class FalseAlarmsPerHour(Metric):
    """False positives per hour of non-seizure signal: ``FP / (n_negative_windows * window_s / 3600)``.

    ``preds`` are seizure probabilities (thresholded at ``threshold``), ``target`` 0/1 labels.
    """

    full_state_update = False
    false_pos: Tensor  # metric states (add_state)
    negatives: Tensor

    def __init__(self, window_s: float, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if window_s <= 0:
            raise ValueError(f"FalseAlarmsPerHour(window_s={window_s}): must be positive")
        self.window_s, self.threshold = float(window_s), threshold
        self.add_state("false_pos", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("negatives", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        neg = target == 0
        self.false_pos += ((preds >= self.threshold) & neg).sum().float()
        self.negatives += neg.sum().float()

    def compute(self) -> Tensor:
        hours = self.negatives * self.window_s / 3600.0
        return self.false_pos / hours.clamp_min(1e-12)


class SeizureDetectionTask(ClassificationTask):
    """Seizure / background classification of windows.

    The head is MVPFormer's: the encoder's pooled embedding (for MVPFormer, the mean over present
    channels of the LAST segment's tokens) -> ``Linear(D, 2)``. Metrics on the seizure probability:
    accuracy, sensitivity (seizure recall), specificity, AUROC, Cohen's kappa and false alarms per
    hour (window length from ``window_s`` or ``data_spec.n_times / data_spec.sfreq``).

    Args:
        window_s: window duration in seconds (default: from the data spec).
        seizure_weight: class weight of seizure windows in the loss (they are rare).
        **kwargs: see :class:`ClassificationTask`; load a pre-trained encoder with ``pretrained=``.

    """

    class_weight: Tensor  # buffer (register_buffer)

    def __init__(self, *args: Any, window_s: float | None = None, seizure_weight: float = 1.0, **kwargs: Any) -> None:
        self.window_s_arg, self.seizure_weight = window_s, seizure_weight
        kwargs["num_classes"] = 2
        kwargs.setdefault("encoder", "mvpformer_test")
        super().__init__(*args, **kwargs)
        self.register_buffer("class_weight", torch.tensor([1.0, float(seizure_weight)]), persistent=False)

    @property
    def window_s(self) -> float:
        if self.window_s_arg is not None:
            return float(self.window_s_arg)
        spec = self.data_spec
        if spec.n_times and spec.sfreq:
            return spec.n_times / spec.sfreq
        raise ValueError("SeizureDetectionTask needs window_s= (or a data spec with n_times and sfreq)")

    def configure_head(self) -> None:
        self.head = nn.Sequential(nn.Dropout(self.head_dropout), nn.Linear(self.encoder.embed_dim, 2))

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({
            "acc": BinaryAccuracy(),
            "sensitivity": BinaryRecall(),
            "specificity": BinarySpecificity(),
            "auroc": BinaryAUROC(),
            "kappa": BinaryCohenKappa(),
            "fa_per_hour": FalseAlarmsPerHour(self.window_s),
        })

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        metrics.update(torch.softmax(preds.float(), dim=-1)[:, 1], target)

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch)
        target = batch.target.long()  # type: ignore[union-attr]
        loss = nn.functional.cross_entropy(logits, target, weight=self.class_weight.to(logits.dtype),
                                           label_smoothing=self.label_smoothing if self.training else 0.0)
        return loss, logits, target
