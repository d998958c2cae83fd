"""Attention-based multiple instance learning: ACMIL and gated-attention ABMIL.

ACMIL: Zhang et al., "Attention-Challenging Multiple Instance Learning for Whole Slide Image
Classification" (ECCV 2024; official code dazhangyu123/ACMIL, class ``ACMIL_GA``).
ABMIL: Ilse et al., "Attention-based Deep Multiple Instance Learning" (ICML 2018), gated
attention variant.

A bag is a set of ``N`` instance features (e.g. tiles of a slide). Both models take padded
mini-batches of bags, ``x [B, N, D]`` with ``mask [B, N]`` (True = real instance); padded
instances get attention logit ``-inf`` (excluded from every softmax and from the top-K
masking), so a bag's outputs do not depend on the padding around it.

ACMIL, per bag:

1. ``h = ReLU(W x)`` (``W`` without bias), ``[N, E]``;
2. gated attention with ``K = n_token`` branches:
   ``logits = w(tanh(V h) * sigmoid(U h))^T``, ``[K, N]``;
3. training only, Stochastic Top-K Instance Masking (STKIM): per branch, of the top
   ``min(n_masked_patch, N)`` logits, ``int(that * mask_drop)`` chosen at random are set to
   ``-1e9``;
4. ``A = softmax(logits)`` over instances; branch ``k`` classifies ``A[k] @ h``;
5. the slide classifier classifies ``mean_k(A[k]) @ h``.

Training loss (:func:`acmil_loss`): cross-entropy of every branch against the bag label
(when ``K > 1``) + cross-entropy of the slide logits + the mean pairwise cosine similarity
of the branches' softmaxed attention (the attention-diversity term).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.mil.base import MILHead
from chanformer.nn.pooling import GatedAttention
from chanformer.registry import register_model, register_spec

__all__ = ["ABMIL", "ACMIL", "ABMILOutput", "ACMILOutput", "GatedAttention", "acmil_loss", "stkim_mask"]

#: Logit given to instances hidden by Stochastic Top-K Instance Masking (as in the paper's code).
STKIM_FILL = -1e9


class ACMILOutput(NamedTuple):
    """ACMIL outputs for ``B`` bags of (padded) size ``N``.

    Attributes:
        branch_logits: ``[B, K, n_classes]``, one prediction per attention branch.
        slide_logits: ``[B, n_classes]``, from the branch-averaged attention.
        attention: attention LOGITS ``[B, K, N]`` before the softmax over instances, after
            STKIM in training; padded instances hold ``-inf``.

    """

    branch_logits: Tensor
    slide_logits: Tensor
    attention: Tensor


class ABMILOutput(NamedTuple):
    """ABMIL outputs: ``logits [B, n_classes]``, attention logits ``[B, N]`` (padded: ``-inf``)."""

    logits: Tensor
    attention: Tensor


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return value


def _check_bags(x: Tensor, mask: Tensor | None, in_dim: int, who: str) -> tuple[Tensor, Tensor | None]:
    if x.ndim == 2:
        x = x.unsqueeze(0)
        mask = None if mask is None else mask.reshape(1, -1)
    if x.ndim != 3 or x.shape[-1] != in_dim:
        raise ValueError(f"{who}: x must be [B, N, D={in_dim}] (or one bag [N, D]), got {tuple(x.shape)}")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"{who}: mask must be a bool tensor, got {mask.dtype}")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"{who}: mask must be [B, N]={tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if not bool(mask.any(1).all()):
            raise ValueError(f"{who}: mask leaves a bag without any instance")
    return x, mask



def stkim_mask(
    logits: Tensor,
    n_masked_patch: int,
    mask_drop: float,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic Top-K Instance Masking: which instances to hide, ``[B, K, N]`` bool.

    Per bag and branch, among the bag's real instances (``mask [B, N]``), take the
    ``n_top = min(n_masked_patch, n_real)`` largest logits and pick ``int(n_top * mask_drop)``
    of them uniformly at random.

    Args:
        logits: attention logits ``[B, K, N]`` (padded instances may hold anything).
        n_masked_patch: size of the top set.
        mask_drop: fraction of the top set to hide, in ``[0, 1]``.
        mask: ``[B, N]`` True = real instance; ``None`` = all real.
        generator: random generator for the draw.

    """
    b, k, n = logits.shape
    hidden = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    top = min(n_masked_patch, n)
    if top <= 0 or mask_drop <= 0:
        return hidden
    n_real = torch.full((b,), n, device=logits.device) if mask is None else mask.sum(1)
    n_top = n_real.clamp_max(n_masked_patch)  # [B]
    n_drop = torch.floor(n_top.to(torch.float64) * mask_drop).long()  # = int(n_top * mask_drop)
    scores = (
        logits.detach() if mask is None else logits.detach().masked_fill(~mask[:, None, :], float("-inf"))
    )
    idx = scores.topk(top, dim=-1).indices  # [B, K, top]
    r = torch.rand((b, k, top), generator=generator, device="cpu" if generator is None else generator.device)
    r = r.to(logits.device)
    slot = torch.arange(top, device=logits.device)
    r = r.masked_fill(slot >= n_top[:, None, None], 2.0)  # slots beyond the bag's top set never win
    rank = r.argsort(-1).argsort(-1)  # random rank of every top slot
    chosen = rank < n_drop[:, None, None]
    hidden.scatter_(-1, idx, chosen)
    return hidden


class ACMIL(MILHead):
    """ACMIL with gated attention (the paper's ``ACMIL_GA``): bags ``[B, N, D] -> ACMILOutput``.

    Args:
        in_dim: instance feature width ``D`` (``D_feat``).
        n_classes: number of classes.
        embed_dim: width after the dimension reduction (``D_inner``, 128 in the paper).
        attn_dim: hidden width of the gated attention (``D``, 128 in the paper).
        n_token: number of attention branches ``K``.
        n_masked_patch: STKIM top-set size (0 disables STKIM).
        mask_drop: STKIM fraction of the top set hidden in training, in ``[0, 1]``.
        dropout: dropout before every classifier.

    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        embed_dim: int = 128,
        attn_dim: int = 128,
        n_token: int = 5,
        n_masked_patch: int = 10,
        mask_drop: float = 0.6,
        dropout: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("in_dim", in_dim), ("n_classes", n_classes), ("embed_dim", embed_dim),
                         ("attn_dim", attn_dim), ("n_token", n_token)):  # fmt: skip
            _positive_int(f"ACMIL({arg})", val)
        _positive_int("ACMIL(n_masked_patch)", n_masked_patch, 0)
        if not 0.0 <= mask_drop <= 1.0:
            raise ValueError(f"ACMIL(mask_drop={mask_drop}): must be in [0, 1]")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ACMIL(dropout={dropout}): must be in [0, 1)")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.in_dim, self.n_classes, self.embed_dim, self.attn_dim = in_dim, n_classes, embed_dim, attn_dim
        self.n_token, self.n_masked_patch, self.mask_drop, self.dropout_p = (
            n_token,
            n_masked_patch,
            mask_drop,
            dropout,
        )
        self.reduce = nn.Linear(in_dim, embed_dim, bias=False, **kw)
        self.attention = GatedAttention(embed_dim, attn_dim, n_token, **kw)
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleList(nn.Linear(embed_dim, n_classes, **kw) for _ in range(n_token))
        self.slide_classifier = nn.Linear(embed_dim, n_classes, **kw)

    def pretrained_spec(self) -> dict[str, Any]:
        return {
            "kind": "acmil",
            "kwargs": {
                "in_dim": self.in_dim,
                "n_classes": self.n_classes,
                "embed_dim": self.embed_dim,
                "attn_dim": self.attn_dim,
                "n_token": self.n_token,
                "n_masked_patch": self.n_masked_patch,
                "mask_drop": self.mask_drop,
                "dropout": self.dropout_p,
            },
        }

    def forward_tensors(  # type: ignore[override]
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> ACMILOutput:
        """Classify bags.

        Args:
            x: instance features ``[B, N, D]`` (or one bag ``[N, D]``, treated as ``B = 1``).
            mask: ``[B, N]`` bool, True = real instance; ``None`` = all real.
            generator: random generator for STKIM (training mode only).

        Returns:
            :class:`ACMILOutput` (``branch_logits [B, K, C]``, ``slide_logits [B, C]``,
            ``attention [B, K, N]`` logits).

        """
        x, mask = _check_bags(x, mask, self.in_dim, "ACMIL")
        h = F.relu(self.reduce(x), inplace=True)  # [B, N, E]; in place: the product keeps no output for backward
        logits = self.attention(h)  # [B, K, N]
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        if self.training and self.n_masked_patch > 0 and self.mask_drop > 0:
            hidden = stkim_mask(logits, self.n_masked_patch, self.mask_drop, mask, generator)
            logits = logits.masked_fill(hidden, STKIM_FILL)
        attn = torch.softmax(logits, dim=-1)
        # the K branch poolings and the slide's (mean attention) in one product: one pass over h
        pooled = torch.cat([attn, attn.mean(1, keepdim=True)], dim=1) @ h  # [B, K + 1, E]
        feats = self.dropout(pooled[:, :-1])  # [B, K, E]
        branch = torch.stack([clf(feats[:, i]) for i, clf in enumerate(self.classifiers)], dim=1)
        slide_feat = self.dropout(pooled[:, -1])
        return ACMILOutput(branch, self.slide_classifier(slide_feat), logits)


class ABMIL(MILHead):
    """Gated-attention MIL (one attention branch): bags ``[B, N, D] -> ABMILOutput``.

    ``h = ReLU(W x)``; ``a = softmax(GatedAttention(h))``; ``logits = classifier(a @ h)``.

    Args:
        in_dim: instance feature width ``D``.
        n_classes: number of classes.
        embed_dim: width after the dimension reduction.
        attn_dim: hidden width of the gated attention.
        dropout: dropout before the classifier.

    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        embed_dim: int = 128,
        attn_dim: int = 128,
        dropout: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("in_dim", in_dim), ("n_classes", n_classes), ("embed_dim", embed_dim),
                         ("attn_dim", attn_dim)):  # fmt: skip
            _positive_int(f"ABMIL({arg})", val)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ABMIL(dropout={dropout}): must be in [0, 1)")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.in_dim, self.n_classes, self.embed_dim, self.attn_dim, self.dropout_p = (
            in_dim, n_classes, embed_dim, attn_dim, dropout,
        )  # fmt: skip
        self.reduce = nn.Linear(in_dim, embed_dim, bias=False, **kw)
        self.attention = GatedAttention(embed_dim, attn_dim, 1, **kw)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, n_classes, **kw)

    def pretrained_spec(self) -> dict[str, Any]:
        return {
            "kind": "abmil",
            "kwargs": {
                "in_dim": self.in_dim,
                "n_classes": self.n_classes,
                "embed_dim": self.embed_dim,
                "attn_dim": self.attn_dim,
                "dropout": self.dropout_p,
            },
        }

    def forward_tensors(self, x: Tensor, mask: Tensor | None = None) -> ABMILOutput:  # type: ignore[override]
        """``x [B, N, D]`` (or ``[N, D]``), ``mask [B, N]`` -> logits ``[B, C]``, attention ``[B, N]``."""
        x, mask = _check_bags(x, mask, self.in_dim, "ABMIL")
        h = F.relu(self.reduce(x), inplace=True)
        logits = self.attention(h)[:, 0]  # [B, N]
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        pooled = (torch.softmax(logits, -1).unsqueeze(1) @ h).squeeze(1)
        return ABMILOutput(self.classifier(self.dropout(pooled)), logits)


@overload
def acmil_loss(
    output: ACMILOutput | tuple[Tensor, Tensor, Tensor],
    target: Tensor,
    diversity_weight: float = ...,
    return_parts: Literal[False] = ...,
) -> Tensor: ...
@overload
def acmil_loss(
    output: ACMILOutput | tuple[Tensor, Tensor, Tensor],
    target: Tensor,
    diversity_weight: float = ...,
    *,
    return_parts: Literal[True],
) -> dict[str, Tensor]: ...
@overload
def acmil_loss(
    output: ACMILOutput | tuple[Tensor, Tensor, Tensor],
    target: Tensor,
    diversity_weight: float = ...,
    return_parts: bool = ...,
) -> Tensor | dict[str, Tensor]: ...
def acmil_loss(
    output: ACMILOutput | tuple[Tensor, Tensor, Tensor],
    target: Tensor,
    diversity_weight: float = 1.0,
    return_parts: bool = False,
) -> Tensor | dict[str, Tensor]:
    """ACMIL training loss.

    ``CE(branch_logits, target repeated per branch)`` (only when ``K > 1``)
    ``+ CE(slide_logits, target)``
    ``+ diversity_weight * mean over branch pairs i < j of cos(softmax(attn_i), softmax(attn_j))``,
    each term averaged over the batch. Padded instances (logit ``-inf``) get zero attention
    and so do not change the cosine similarities.

    Args:
        output: an :class:`ACMILOutput` (or the same three tensors).
        target: class indices ``[B]`` (long).
        diversity_weight: weight of the attention-diversity term (1 in the paper's code).
        return_parts: return ``{"loss", "branch", "slide", "diversity"}`` instead.

    """
    branch_logits, slide_logits, attention = output
    if target.ndim != 1 or target.shape[0] != slide_logits.shape[0]:
        raise ValueError(
            f"acmil_loss(target=...): expected [B={slide_logits.shape[0]}], got {tuple(target.shape)}"
        )
    b, k, c = branch_logits.shape
    zero = slide_logits.new_zeros(())
    branch = F.cross_entropy(branch_logits.reshape(b * k, c), target.repeat_interleave(k)) if k > 1 else zero
    slide = F.cross_entropy(slide_logits, target)
    diversity = zero
    if k > 1:
        a = F.normalize(torch.softmax(attention, dim=-1), dim=-1, eps=1e-8)
        sim = a @ a.transpose(1, 2)  # [B, K, K]
        iu = torch.triu_indices(k, k, offset=1, device=sim.device)
        diversity = sim[:, iu[0], iu[1]].mean()
    loss = branch + slide + diversity_weight * diversity
    if return_parts:
        return {"loss": loss, "branch": branch, "slide": slide, "diversity": diversity}
    return loss


@register_model("mil")
def acmil(**kwargs: Any) -> ACMIL:
    """ACMIL with the paper's defaults (5 branches, top-10 masking, 0.6 drop)."""
    return ACMIL(**kwargs)


@register_model("mil")
def abmil(**kwargs: Any) -> ABMIL:
    """Gated-attention ABMIL."""
    return ABMIL(**kwargs)


@register_spec("acmil")
def _build_acmil(spec: dict[str, Any]) -> nn.Module:
    return ACMIL(**spec["kwargs"])


@register_spec("abmil")
def _build_abmil(spec: dict[str, Any]) -> nn.Module:
    return ABMIL(**spec["kwargs"])
