"""Speaker-verification scoring: cosine scores, EER, minDCF, DET curve and s-norm.

Conventions: a trial is accepted when ``score >= threshold``. The ROC points are taken at
every distinct score (plus "accept nothing"), ``P_miss(t)`` = share of target trials with
``score < t`` and ``P_fa(t)`` = share of non-target trials with ``score >= t``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["compute_eer", "compute_min_dcf", "cosine_scores", "det_curve", "s_norm"]


def _np(x: Tensor | np.ndarray | list[float]) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)


def det_curve(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_fa, p_miss, thresholds)`` at every distinct score, thresholds decreasing, starting
    at ``+inf`` (``p_fa = 0``, ``p_miss = 1``)."""
    s, y = _np(scores), _np(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of the same length, got {s.shape} and {y.shape}")
    n_t, n_n = int(y.sum()), int((~y).sum())
    if n_t == 0 or n_n == 0:
        raise ValueError(f"need target and non-target trials, got {n_t} targets and {n_n} non-targets")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN/Inf")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    p_fa = np.r_[0.0, fp / n_n]
    p_miss = np.r_[1.0, 1.0 - tp / n_t]
    return p_fa, p_miss, np.r_[np.inf, s[last]]


def compute_eer(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where the piecewise-linear DET curve through the ROC
    points crosses ``P_fa = P_miss`` (linear interpolation between the two adjacent points)."""
    p_fa, p_miss, thr = det_curve(scores, labels)
    d = p_miss - p_fa  # goes from 1 down to -1
    i = int(np.flatnonzero(d <= 0)[0])
    if d[i] == 0:
        return float(p_fa[i]), float(thr[i])
    a = d[i - 1] / (d[i - 1] - d[i])
    eer = p_fa[i - 1] + a * (p_fa[i] - p_fa[i - 1])
    t_prev = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    return float(eer), float(t_prev + a * (thr[i] - t_prev))


def compute_min_dcf(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray, p_target: float = 0.01,
                    c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost and its threshold (NIST SRE):
    ``min_t [c_miss P_miss(t) p_target + c_fa P_fa(t) (1 - p_target)] / min(c_miss p_target, c_fa (1 - p_target))``,
    over the ROC points including "accept nothing" and "accept all"."""
    p_fa, p_miss, thr = det_curve(scores, labels)
    p_fa, p_miss, thr = np.r_[p_fa, 1.0], np.r_[p_miss, 0.0], np.r_[thr, -np.inf]
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    i = int(np.argmin(dcf))
    return float(dcf[i] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thr[i])


def cosine_scores(enrol: Tensor, test: Tensor) -> Tensor:
    """Row-wise cosine similarity of ``enrol [N, D]`` and ``test [N, D]`` -> ``[N]``."""
    return torch.nn.functional.cosine_similarity(enrol, test, dim=-1)


def s_norm(enrol: Tensor, test: Tensor, cohort: Tensor, top_k: int | None = None) -> Tensor:
    """Symmetric score normalisation of cosine scores (adaptive when ``top_k`` is set):
    ``0.5 [(s - mu_e) / sd_e + (s - mu_t) / sd_t]`` with ``mu_e, sd_e`` the mean and std of the
    enrolment embedding's scores against ``cohort [K, D]`` (its ``top_k`` highest only), and
    likewise for the test embedding."""
    s = cosine_scores(enrol, test)
    c = torch.nn.functional.normalize(cohort, dim=-1)

    def stats(x: Tensor) -> tuple[Tensor, Tensor]:
        sc = torch.nn.functional.normalize(x, dim=-1) @ c.T  # [N, K]
        if top_k is not None and top_k < sc.shape[1]:
            sc = sc.topk(top_k, dim=1).values
        return sc.mean(1), sc.std(1).clamp_min(1e-6)

    (me, se), (mt, st) = stats(enrol), stats(test)
    return 0.5 * ((s - me) / se + (s - mt) / st)
