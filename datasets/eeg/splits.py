"""Train/val/test splits of EEG trials by subject, shared by the public-dataset datamodules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from chanformer.datasets.base import stratified_split

__all__ = ["subject_split"]


def _n_held(fraction: float, n: int) -> int:
    """``round(fraction * n)`` subjects, at least one when ``fraction > 0``."""
    return max(round(fraction * n), 1) if fraction > 0 else 0


def subject_split(
    subjects: np.ndarray,
    labels: np.ndarray,
    split: Literal["cross_subject", "within_subject"],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_subjects: Sequence[object] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window indices ``(train, val, test)``, each sorted.

    ``"cross_subject"``: whole subjects are held out. ``test_subjects`` names the test subjects;
    otherwise ``test_fraction`` of the subjects (at least one when > 0) are drawn with ``seed``,
    then ``val_fraction`` of all subjects (at least one when > 0) from the rest; the remaining
    subjects train. No subject is in two splits. ``"within_subject"``: every subject's trials are
    split, stratified by class: ``test_fraction`` to test, ``val_fraction`` to val (both of that
    subject's trials), every class keeping at least one trial in train.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"need val_fraction, test_fraction >= 0 summing to < 1, got {val_fraction}, {test_fraction}")
    subjects, labels = np.asarray(subjects), np.asarray(labels)
    idx = np.arange(len(labels))
    ids = np.unique(subjects)
    if split == "cross_subject":
        rng = np.random.default_rng(seed)
        if test_subjects is not None:
            test_ids = np.unique(np.asarray(list(test_subjects), dtype=ids.dtype))
            absent = sorted(set(test_ids.tolist()) - set(ids.tolist()))
            if absent:
                raise ValueError(f"test_subjects {absent} have no trials; the subjects are {ids.tolist()}")
            rest = rng.permutation(np.setdiff1d(ids, test_ids))
        else:
            order = rng.permutation(ids)
            n_test = _n_held(test_fraction, len(ids))
            test_ids, rest = order[:n_test], order[n_test:]
        n_val = _n_held(val_fraction, len(ids))
        val_ids, train_ids = rest[:n_val], rest[n_val:]
        if not len(train_ids):
            raise ValueError(
                f"cross_subject split of {len(ids)} subject(s) leaves none to train on ({len(test_ids)} test, "
                f"{len(val_ids)} val); lower val_fraction/test_fraction or add subjects"
            )
        return tuple(idx[np.isin(subjects, g)] for g in (train_ids, val_ids, test_ids))  # type: ignore[return-value]
    if split != "within_subject":
        raise ValueError(f"split must be 'cross_subject' or 'within_subject', got {split!r}")
    out: list[list[np.ndarray]] = [[], [], []]
    for g in ids:
        sub = idx[subjects == g]
        trva, te = stratified_split(labels[sub], test_fraction, seed)
        tr, va = stratified_split(labels[sub][trva], val_fraction / (1 - test_fraction), seed + 1)
        for part, sel in zip(out, (sub[trva][tr], sub[trva][va], sub[te])):
            part.append(sel)
    return tuple(np.sort(np.concatenate(p)) for p in out)  # type: ignore[return-value]
