"""Self-supervised next-segment prediction for MVPFormer (contrastive, in embedding space).

As in MVPFormer's generative pre-training (Carzaniga et al.): the causal backbone's output for
segment ``t`` of a channel predicts the embedding of segment ``t + 1`` of the same channel (the
wavelet segment encoder's token). Each prediction is scored against its true next segment and
``num_negatives`` other next-segment tokens of the batch (other segments, channels and samples)
by cosine similarity / ``temperature``, with the InfoNCE (cross-entropy) loss.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.tasks.base import ChannelTask

__all__ = ["NextSegmentPretrainTask", "info_nce"]


def info_nce(
    pred: Tensor, target: Tensor, num_negatives: int = 30, temperature: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """InfoNCE of predictions ``pred [M, D]`` against their positives ``target [M, D]``.

    Each row's negatives are ``num_negatives`` OTHER rows of ``target`` drawn uniformly (with
    replacement when fewer exist). Returns ``(loss, logits [M, 1 + num_negatives])``; column 0 is
    the positive.
    """
    m = pred.shape[0]
    if m < 2:
        raise ValueError("info_nce needs at least 2 (prediction, target) pairs to draw negatives from")
    k = num_negatives
    draw = torch.randint(0, m - 1, (m, k), generator=generator, device="cpu").to(pred.device)
    rows = torch.arange(m, device=pred.device)[:, None]
    neg_idx = draw + (draw >= rows).long()  # skip the row itself
    p = F.normalize(pred, dim=-1)
    t = F.normalize(target, dim=-1)
    pos = (p * t).sum(-1, keepdim=True)
    neg = torch.einsum("md,mkd->mk", p, t[neg_idx])
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(m, dtype=torch.long, device=pred.device)), logits


class _SegmentEncoder(Protocol):
    """What this task uses of an MVPFormer-style encoder (checked with ``hasattr`` in ``__init__``)."""

    backbone: nn.Module

    def embed_segments(self, batch: ChannelBatch) -> Tensor: ...


class NextSegmentPretrainTask(ChannelTask):
    """Pre-train an MVPFormer encoder by contrastive next-segment prediction; no labels needed.

    ``prediction = Linear(D, D)(backbone output at (t, c))`` for ``t < T - 1``, positive = segment
    token at ``(t + 1, c)``; padded channels are skipped. Logs ``loss`` and ``top1`` (how often the
    true next segment scores highest among the ``1 + num_negatives`` candidates; chance is
    ``1 / (1 + num_negatives)``). ``fit`` exports the encoder (``save_pretrained``), which a
    downstream task loads with ``pretrained=<folder>``.

    Args:
        num_negatives: negatives per prediction (MVPFormer: 30).
        temperature: softmax temperature of the cosine similarities (MVPFormer: 0.1).
        max_anchors: use at most this many random predictions per batch (bounds memory).
        **kwargs: see :class:`ChannelTask` (``encoder`` must be an MVPFormer variant).

    """

    requires_target = False

    def __init__(self, *args: Any, num_negatives: int = 30, temperature: float = 0.1, max_anchors: int = 4096,
                 **kwargs: Any) -> None:
        self.num_negatives, self.temperature, self.max_anchors = num_negatives, temperature, max_anchors
        kwargs.setdefault("encoder", "mvpformer_test")
        super().__init__(*args, **kwargs)
        if not hasattr(self.encoder, "embed_segments") or not hasattr(self.encoder, "backbone"):
            raise TypeError(f"NextSegmentPretrainTask needs an MVPFormer encoder, got {type(self.encoder).__name__}")

    def configure_head(self) -> None:
        self.predictor = nn.Linear(self.encoder.embed_dim, self.encoder.embed_dim)

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"top1": MeanMetric()})

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        metrics["top1"].update((preds.argmax(-1) == target).float())

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        encoder = cast(_SegmentEncoder, self.encoder)
        tokens = encoder.embed_segments(batch)  # [B, T, C, D]
        context = encoder.backbone(tokens, batch.mask)
        if tokens.shape[1] < 2:
            raise ValueError("next-segment prediction needs windows of at least 2 segments")
        pred = self.predictor(context[:, :-1])
        target = tokens[:, 1:]
        valid = batch.mask[:, None, :].expand(-1, pred.shape[1], -1)
        pred, target = pred[valid], target[valid]
        if pred.shape[0] > self.max_anchors:
            keep = torch.randperm(pred.shape[0], device="cpu")[: self.max_anchors].to(pred.device)
            pred, target = pred[keep], target[keep]
        loss, logits = info_nce(pred, target, self.num_negatives, self.temperature)
        return loss, logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Pooled encoder embedding ``[B, D]``."""
        return self.encoder(batch)
