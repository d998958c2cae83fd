"""Channel importance for every model: ``channel_importance(model, batch) -> [B, C]``.

Two families of methods:

* ``"native"``: the model's own channel weights. An encoder (or any module) opts in by
  implementing ``native_channel_importance(batch) -> [B, C]`` (the :class:`NativeImportance`
  protocol): :class:`~chanformer.encoders.gat.GAT` answers with its last layer's GAAM weights,
  :class:`~chanformer.encoders.dbconformer.DBConformer` with its channel-attention pooling.
  :class:`~chanformer.mil.ACMIL` / :class:`~chanformer.mil.ABMIL` answer with their softmaxed
  instance attention (averaged over ACMIL's branches); their "channels" are the bag's instances,
  ``batch.values [B, N, D]``.
* ``"occlusion"`` (model-agnostic): each present channel is removed in turn (``mask=False`` and
  zero values, the batch's own padding mechanism) and the change of the model output is measured:

  - for a classifier (a :class:`~chanformer.tasks.ClassificationTask`, ACMIL/ABMIL, or any
    callable when ``target`` is given): the DROP of the softmax probability of the target class
    (``target=None``: the class the model predicts on the full input), clipped at 0; for a
    multi-label ``ClassificationTask`` the drop of that label's sigmoid probability;
  - otherwise (an encoder's ``[B, D]`` embedding, a forecast ``[B, C, H]``, ...): the L2 norm of
    the output change. For outputs with a channel axis (``[B, C, ...]``) the occluded channel's
    own slot is left out, so a forecaster is scored by how much the OTHER channels depend on it.

  All ``(sample, channel)`` occlusions run as one expanded batch of ``sum(mask)`` rows, in chunks
  of ``chunk_size`` rows. Fixed-layout models that cannot lose a channel (DBConformer, and any
  encoder declaring ``input_channels``, e.g. ECAPA-TDNN's mel bins) get the channel's values
  zeroed with the mask left True instead.

``"auto"`` (default) uses ``"native"`` when the model has it, else ``"occlusion"``.

Normalisation (all methods): importance is ``>= 0``, exactly 0 on padded channels
(``mask=False``), and each row sums to 1 over the sample's present channels. A row whose raw
scores are all 0 (the output did not change at all) becomes uniform over the present channels;
a sample with a single present channel gets 1 there.

:func:`importance_factor` is the GAAM paper's Importance Factor computed from a GAT's Gaussian
weights (see its docstring for the formula used).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from chanformer.batch import BagBatch, ChannelBatch

__all__ = [
    "METHODS", "NativeImportance", "channel_importance", "has_native_importance", "importance_factor",
    "importance_by_channel",
]

METHODS = ("auto", "native", "occlusion")


@runtime_checkable
class NativeImportance(Protocol):
    """A model that reports its own channel weights ``[B, C]`` for a batch (batch slot order)."""

    def native_channel_importance(self, batch: ChannelBatch) -> Tensor: ...


def _unwrap(model: Any) -> Any:
    """The object whose native importance answers for ``model`` (a task answers through its encoder)."""
    if isinstance(model, NativeImportance):
        return model
    enc = getattr(model, "encoder", None)
    if isinstance(enc, NativeImportance):
        return enc
    from chanformer.mil import ABMIL, ACMIL

    if isinstance(model, (ACMIL, ABMIL)):
        return _MILNative(model)
    return None


def has_native_importance(model: Any) -> bool:
    """Whether ``channel_importance(model, batch, method="native")`` is available."""
    return _unwrap(model) is not None


class _MILNative:
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def native_channel_importance(self, batch: ChannelBatch) -> Tensor:
        att = self.model(BagBatch.from_tensors(batch.values, batch.mask)).attention  # logits, padded = -inf
        w = torch.softmax(att, dim=-1)
        return w.mean(1) if w.ndim == 3 else w  # ACMIL [B, K, N] -> mean over branches


def _is_classifier(model: Any) -> bool:
    from chanformer.mil import ABMIL, ACMIL
    from chanformer.tasks import ClassificationTask

    return isinstance(model, (ClassificationTask, ACMIL, ABMIL))


def _call(model: Any, batch: ChannelBatch) -> Tensor:
    from chanformer.mil import ABMIL, ACMIL

    if isinstance(model, ACMIL):
        return model(BagBatch.from_tensors(batch.values, batch.mask)).slide_logits
    if isinstance(model, ABMIL):
        return model(BagBatch.from_tensors(batch.values, batch.mask)).logits
    return model(batch)


def _zero_fill_only(model: Any) -> bool:
    """Fixed-layout encoders (DBConformer, or any declaring ``input_channels``) need every channel present."""
    from chanformer.encoders.dbconformer import DBConformer

    enc = getattr(model, "encoder", model)
    return isinstance(enc, DBConformer) or getattr(enc, "input_channels", None) is not None


def _rows(batch: ChannelBatch, idx: Tensor) -> ChannelBatch:
    kw = {f.name: getattr(batch, f.name) for f in fields(batch)}
    for k, v in kw.items():
        if isinstance(v, Tensor):
            kw[k] = v[idx]
    return ChannelBatch(**kw)


def normalize_importance(scores: Tensor, mask: Tensor) -> Tensor:
    """Clip at 0, zero padded channels, rows sum to 1 over present channels (all-zero rows: uniform)."""
    m = mask.to(scores.dtype)
    s = scores.clamp_min(0.0).nan_to_num(0.0) * m
    total = s.sum(1, keepdim=True)
    uniform = m / m.sum(1, keepdim=True).clamp_min(1.0)
    return torch.where(total > 0, s / total.clamp_min(torch.finfo(s.dtype).tiny), uniform)


@torch.no_grad()
def _occlusion(model: Any, batch: ChannelBatch, target: Tensor | int | None, chunk_size: int) -> Tensor:
    b, c = batch.mask.shape
    classifier = target is not None or _is_classifier(model)
    zero_fill = _zero_fill_only(model)
    full = _call(model, batch)
    # a multi-label ClassificationTask scores each label by its own sigmoid, not a softmax over labels
    multilabel = getattr(model, "multilabel", False) is True

    def squash(logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)

    if classifier:
        probs = squash(full.float())
        if target is None:
            tgt = probs.argmax(-1)
        else:
            tgt = torch.as_tensor(target, device=probs.device).long().expand(b)
        base = probs.gather(1, tgt[:, None]).squeeze(1)
    scores = torch.zeros(b, c, dtype=torch.float32, device=batch.device)
    n_present = batch.mask.sum(1)
    pairs = (batch.mask & (n_present[:, None] > 1)).nonzero()  # [R, 2]: (sample, channel)
    for start in range(0, pairs.shape[0], chunk_size):
        pb, pc = pairs[start : start + chunk_size].unbind(1)
        sub = _rows(batch, pb)
        r = torch.arange(pb.shape[0], device=batch.device)
        values = sub.values.clone()
        values[r, pc] = 0
        mask = sub.mask.clone()
        if not zero_fill:
            mask[r, pc] = False
        out = _call(model, replace(sub, values=values, mask=mask))
        if classifier:
            p = squash(out.float()).gather(1, tgt[pb][:, None]).squeeze(1)
            score = base[pb] - p
        else:
            diff = (out.float() - full[pb].float())
            if diff.ndim >= 3 and diff.shape[1] == c:  # per-channel output: leave the occluded slot out
                diff[r, pc] = 0
            score = diff.flatten(1).norm(dim=1)
        scores[pb, pc] = score
    single = n_present == 1
    scores[single] = batch.mask[single].to(scores.dtype)
    layout = _layout_ids(model)
    if layout is not None:  # a fixed-layout encoder never reads channels outside its layout
        inside = (batch.channel_ids[..., None] == layout.to(batch.device)).any(-1)
        scores = scores * inside
    return scores


def _layout_ids(model: Any) -> Tensor | None:
    """Vocabulary ids a fixed-layout encoder reads (``input_channels`` or DBConformer ``channels``)."""
    enc = getattr(model, "encoder", model)
    keys = getattr(enc, "input_channels", None) or getattr(enc, "channels", None)
    vocab = getattr(enc, "vocab", None)
    if not keys or vocab is None or not isinstance(keys, list | tuple):
        return None
    if any(k not in vocab for k in keys):
        return None
    return torch.tensor(vocab.ids(list(keys)), dtype=torch.long)


def channel_importance(
    model: Any,
    batch: ChannelBatch,
    *,
    method: str = "auto",
    target: Tensor | int | None = None,
    chunk_size: int = 512,
) -> Tensor:
    """Importance of each channel slot of ``batch`` for ``model``: ``[B, C]``.

    Args:
        model: an encoder, a task (e.g. :class:`~chanformer.tasks.ClassificationTask`), ACMIL/ABMIL,
            or any callable ``ChannelBatch -> Tensor``.
        batch: the input (for ACMIL/ABMIL, ``values [B, N, D]`` bags of instance features).
        method: ``"auto"``, ``"native"`` or ``"occlusion"`` (see the module docstring).
        target: class index (int or ``[B]``) whose probability drop scores an occlusion; makes
            any callable's output be treated as logits.
        chunk_size: rows per forward pass of the expanded occlusion batch.

    Returns:
        ``[B, C]`` float tensor, 0 on padded channels, each row summing to 1 over present ones.

    """
    if method not in METHODS:
        raise ValueError(f"channel_importance(method={method!r}): expected one of {METHODS}")
    native = _unwrap(model)
    if method == "native" and native is None:
        raise ValueError(
            f"{type(model).__name__} has no native channel importance (no native_channel_importance method); "
            "use method='occlusion'"
        )
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            if method == "native" or (method == "auto" and native is not None):
                raw = native.native_channel_importance(batch).float()  # type: ignore[union-attr]
            else:
                raw = _occlusion(model, batch, target, chunk_size)
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    if raw.shape != batch.mask.shape:
        raise ValueError(f"channel importance of shape {tuple(raw.shape)}, expected [B, C]={tuple(batch.mask.shape)}")
    return normalize_importance(raw, batch.mask)


def importance_factor(model: Any, batch: ChannelBatch, *, layers: str | int = "all") -> Tensor:
    """The GAAM Importance Factor (IF) of each channel, ``[B, C]`` in ``[0, 1]``.

    The GAAM paper (Ioannides et al. 2024) introduces the IF as a learning-based explainability
    metric read from the learned Gaussian weights. We compute, per sample: the GAAM weights
    ``w [B, C, D]`` of the chosen layer(s) (``"all"``: averaged over layers; an int: one layer),
    averaged over features -> ``a [B, C]``, then min-max normalised over the present channels,
    ``IF = (a - min a) / (max a - min a)`` (all equal -> 1). Padded channels get 0. Unlike
    :func:`channel_importance`, rows do not sum to 1: the most important channel has IF 1.

    Note: we could not check the paper's exact formula offline; this follows our reading of it
    (min-max normalised GAAM weights). The ranking equals that of the per-channel GAAM weight
    average, which is what ``channel_importance(gat, batch, method="native")`` returns.

    Args:
        model: a :class:`~chanformer.encoders.gat.GAT`, or a task whose ``encoder`` is one.
        batch: ``values [B, C, T]``.
        layers: ``"all"`` or a layer index.

    """
    from chanformer.encoders.gat import GAT

    enc = model if isinstance(model, GAT) else getattr(model, "encoder", None)
    if not isinstance(enc, GAT):
        raise TypeError(f"importance_factor needs a GAT encoder (GAAM weights), got {type(model).__name__}")
    was_training = enc.training
    enc.eval()
    try:
        with torch.no_grad():
            weights = enc.encode(batch)[1]
    finally:
        enc.train(was_training)
    a = torch.stack(weights).mean(0) if layers == "all" else weights[int(layers)]
    a = a.mean(-1).float()
    m = batch.mask
    lo = a.masked_fill(~m, float("inf")).amin(1, keepdim=True)
    hi = a.masked_fill(~m, float("-inf")).amax(1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 0, (a - lo) / span.clamp_min(torch.finfo(a.dtype).tiny), torch.ones_like(a))
    return out * m.to(out.dtype)


def importance_by_channel(
    model: Any, batches: Any, *, method: str = "auto", max_batches: int | None = None
) -> dict[int, float]:
    """Mean importance per vocabulary id over an iterable of batches (e.g. a test dataloader).

    Each channel's importance is averaged over the samples in which it is present, so channel
    sets may differ between samples. Returns ``{channel_id: mean importance}`` sorted by id.
    """
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    device = next(model.parameters()).device if isinstance(model, nn.Module) else None
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        if device is not None:
            batch = batch.to(device)
        imp = channel_importance(model, batch, method=method).cpu()
        ids, mask = batch.channel_ids.cpu(), batch.mask.cpu()
        for cid, val in zip(ids[mask].tolist(), imp[mask].tolist()):
            sums[cid] = sums.get(cid, 0.0) + val
            counts[cid] = counts.get(cid, 0) + 1
    return {k: sums[k] / counts[k] for k in sorted(sums)}
