"""Evaluation protocols: partial-channel accuracy (ChannelViT) and frozen-feature 1-NN (CHAMMI)."""

from chanformer.eval.channel_subsets import ChannelSubsetResult, evaluate_channel_subsets, subset_batch
from chanformer.eval.knn import extract_features, knn_evaluate, knn_macro_f1

__all__ = [
    "ChannelSubsetResult",
    "evaluate_channel_subsets",
    "extract_features",
    "knn_evaluate",
    "knn_macro_f1",
    "subset_batch",
]
from chanformer.eval.verification import compute_eer, compute_min_dcf, cosine_scores, det_curve, s_norm  # noqa: E402

__all__ += ["compute_eer", "compute_min_dcf", "cosine_scores", "det_curve", "s_norm"]
from chanformer.eval.report import print_results, results_table  # noqa: E402

__all__ += ["print_results", "results_table"]
