"""Accuracy with only some channels available at test time (ChannelViT's partial-channel protocol).

The model is evaluated on the full channel set and on every non-empty subset of it (or a seeded
sample of subsets per size); hidden channels are removed through ``ChannelBatch.mask`` (values
zeroed), exactly as padding, so no retraining or reshaping is involved. Results are grouped by the
number of channels ``k`` (mean / min / max accuracy over the subsets of that size).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab

__all__ = ["ChannelSubsetResult", "evaluate_channel_subsets", "subset_batch"]


def subset_batch(batch: ChannelBatch, channel_ids: Sequence[int] | Tensor) -> ChannelBatch:
    """Keep only the channels whose vocabulary id is in ``channel_ids`` (others: ``mask=False``, zeros)."""
    want = torch.as_tensor(list(channel_ids) if not isinstance(channel_ids, Tensor) else channel_ids,
                           dtype=torch.long, device=batch.device)  # fmt: skip
    keep = batch.mask & torch.isin(batch.channel_ids, want)
    values = batch.values * keep.view(*keep.shape, *([1] * (batch.values.ndim - 2))).to(batch.values.dtype)
    coords = None if batch.coords is None else batch.coords * keep[..., None].to(batch.coords.dtype)
    return replace(batch, values=values, mask=keep, coords=coords)


@dataclass
class ChannelSubsetResult:
    """Per-subset accuracies.

    Attributes:
        rows: one dict per evaluated subset: ``channels`` (tuple of keys), ``k``, ``accuracy``,
            ``n`` (samples that had at least one of the subset's channels; others are skipped).
        full_accuracy: accuracy with every channel present.
    """

    rows: list[dict[str, Any]]
    full_accuracy: float

    def by_k(self) -> list[dict[str, Any]]:
        """One row per channel count ``k``: ``k``, ``n_subsets``, ``mean``, ``min``, ``max`` accuracy."""
        out = []
        for k in sorted({r["k"] for r in self.rows}):
            acc = [r["accuracy"] for r in self.rows if r["k"] == k]
            out.append({"k": k, "n_subsets": len(acc), "mean": sum(acc) / len(acc), "min": min(acc), "max": max(acc)})
        return out

    def table(self) -> str:
        """Plain-text table grouped by number of channels."""
        lines = [f"full channel set: accuracy {self.full_accuracy:.4f}", "k  subsets  mean    min     max"]
        for r in self.by_k():
            lines.append(f"{r['k']:<2} {r['n_subsets']:>7}  {r['mean']:.4f}  {r['min']:.4f}  {r['max']:.4f}")
        return "\n".join(lines)

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{**r, "channels": "+".join(r["channels"])} for r in self.rows])


def _subsets(channels: Sequence[int], subsets: str | int | Iterable[Sequence[int]], seed: int) -> list[tuple[int, ...]]:
    if isinstance(subsets, str):
        if subsets != "all":
            raise ValueError(f"evaluate_channel_subsets(subsets={subsets!r}): expected 'all', an int or a list")
        return [s for k in range(1, len(channels) + 1) for s in itertools.combinations(channels, k)]
    if isinstance(subsets, int):
        if subsets < 1:
            raise ValueError(f"evaluate_channel_subsets(subsets={subsets}): must be >= 1")
        rng = random.Random(seed)
        out = []
        for k in range(1, len(channels) + 1):
            combos = list(itertools.combinations(channels, k))
            out += combos if len(combos) <= subsets else sorted(rng.sample(combos, subsets))
        return out
    return [tuple(int(c) for c in s) for s in subsets]


@torch.no_grad()
def evaluate_channel_subsets(
    model: Callable[[ChannelBatch], Tensor],
    data: Any,
    subsets: str | int | Iterable[Sequence[int]] = "all",
    *,
    vocab: ChannelVocab | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> ChannelSubsetResult:
    """Accuracy of ``model`` (``batch -> logits``) on the full channel set and on channel subsets.

    Args:
        model: e.g. a :class:`~chanformer.tasks.ClassificationTask`; put in eval mode here.
        data: a datamodule (its ``test_dataloader()`` is used, after ``setup("test")``), a
            ``DataLoader`` or any iterable of :class:`ChannelBatch`.
        subsets: ``"all"`` (every non-empty subset: ``2**C - 1``), an int ``m`` (at most ``m``
            subsets per size ``k``, sampled with ``seed``), or explicit lists of channel ids.
        vocab: names the channels in the results (default: ``data.vocab`` or ``model.vocab``).
        device: where to run (default: the model's parameters' device).
        verbose: print the table grouped by ``k``.

    Returns:
        :class:`ChannelSubsetResult` (``rows``, ``full_accuracy``, ``by_k()``, ``table()``).
    """
    if hasattr(data, "test_dataloader"):
        if hasattr(data, "setup"):
            data.setup("test")
        vocab = vocab or getattr(data, "vocab", None)
        loader = data.test_dataloader()
    else:
        loader = data
    vocab = vocab or getattr(model, "vocab", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
    batches = [b.to(device) if device is not None else b for b in loader]
    if not batches:
        raise ValueError("evaluate_channel_subsets(): no batches to evaluate")
    present = torch.unique(torch.cat([b.channel_ids[b.mask] for b in batches]).cpu()).tolist()

    def name(i: int) -> str:
        return vocab[i].key if vocab is not None and i < len(vocab) else f"id{i}"

    def accuracy(ids: Sequence[int] | None) -> tuple[float, int]:
        correct = total = 0
        for b in batches:
            if b.target is None:
                raise ValueError("evaluate_channel_subsets(): batches need targets")
            bb = b if ids is None else subset_batch(b, ids)
            ok = bb.mask.any(1)
            if not bool(ok.any()):
                continue
            pred = model(bb).argmax(-1)
            target: Tensor = b.target
            correct += int(((pred == target.long()) & ok).sum())
            total += int(ok.sum())
        return (correct / total if total else float("nan")), total

    full, _ = accuracy(None)
    rows = []
    for s in _subsets(present, subsets, seed):
        acc, n = accuracy(s)
        if n:
            rows.append({"channels": tuple(name(i) for i in s), "k": len(s), "accuracy": acc, "n": n})
    result = ChannelSubsetResult(rows, full)
    if verbose:
        print(result.table())
    return result
