"""CHAMMI-style evaluation of frozen features: 1-nearest-neighbour macro-F1.

Features of a labelled reference set (e.g. the training split) and of a query set (e.g. the test
split) are extracted with a frozen encoder; each query takes the label of its nearest reference
(cosine distance by default) and the macro-averaged F1 over classes is reported, as in the CHAMMI
benchmark (Chen et al., NeurIPS 2023 Datasets and Benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from chanformer.batch import ChannelBatch

__all__ = ["extract_features", "knn_evaluate", "knn_macro_f1"]


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, batches: Iterable[ChannelBatch],
                     device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Frozen embeddings ``[N, D]`` (float32) and targets ``[N]`` of every batch (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    if device is None:
        p = next(encoder.parameters(), None)
        device = p.device if p is not None else "cpu"
    feats, labels = [], []
    try:
        for b in batches:
            if b.target is None:
                raise ValueError("extract_features(): batches need targets (labels)")
            feats.append(encoder(b.to(device)).float().cpu())
            labels.append(b.target.cpu())
    finally:
        encoder.train(was_training)
    if not feats:
        raise ValueError("extract_features(): no batches")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def knn_macro_f1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 k: int = 1, metric: str = "cosine") -> float:  # fmt: skip
    """Macro-F1 of a ``k``-nearest-neighbour classifier fitted on ``(train_x, train_y)``."""
    from sklearn.metrics import f1_score
    from sklearn.neighbors import KNeighborsClassifier

    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"knn_macro_f1(): need [N, D] features of one width, got {train_x.shape} and {test_x.shape}")
    clf = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute").fit(train_x, np.asarray(train_y))
    return float(f1_score(np.asarray(test_y), clf.predict(test_x), average="macro"))


def knn_evaluate(encoder: torch.nn.Module, datamodule: Any, k: int = 1, metric: str = "cosine",
                 reference: str = "train", query: str = "test") -> float:  # fmt: skip
    """1-NN macro-F1 of ``encoder``'s frozen features: ``reference`` split as the labelled
    neighbours, ``query`` split as the evaluated set (datamodule dataloaders; the training loader
    is used as is: batch-level HCS does not apply outside a Trainer, but sample transforms do).
    """
    datamodule.setup("fit")
    ref = getattr(datamodule, f"{reference}_dataloader")()
    qry = getattr(datamodule, f"{query}_dataloader")()
    tx, ty = extract_features(encoder, ref)
    qx, qy = extract_features(encoder, qry)
    return knn_macro_f1(tx, ty, qx, qy, k=k, metric=metric)
