"""Re-indexing channel tables by channel KEY when a model meets another vocabulary.

A channel-embedding table row ``k`` belongs to vocabulary id ``k``. When a model saved with
vocabulary ``source`` is used with data whose vocabulary ``target`` orders, drops or adds
channels, :func:`plan_remap` matches the two by key and :func:`remap_rows` builds the table for
``target``: known channels keep their exact rows (so a reordered vocabulary gives bit-identical
embeddings), and channels the model never saw are initialised, in this order of preference:

1. **position** (electrodes): inverse-distance-weighted mean of the rows of the
   ``k = 3`` nearest known channels with positions (weights ``1 / d``; an exact position match
   copies that row);
2. **wavelength** (spectral bands, stains): linear interpolation between the rows of the two
   known channels with the nearest shorter and longer centre wavelengths (the nearest one
   outside the known range);
3. otherwise the mean of all known rows (the "average channel").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from chanformer.channels import Channel, ChannelVocab

__all__ = ["ChannelRemapError", "VocabRemap", "plan_remap", "remap_rows"]

#: Nearest known electrodes averaged for a new electrode's row.
POSITION_NEIGHBOURS = 3


class ChannelRemapError(ValueError):
    """A model cannot be mapped onto a vocabulary (fixed layout, or strict loading with new keys)."""


@dataclass
class VocabRemap:
    """How the rows of a ``source``-indexed table map onto ``target`` ids.

    Attributes:
        source / target: the two vocabularies.
        index: for each target id, the source id with the same key, or ``None`` (a new channel).
        new_keys: target keys absent from the source (initialised from metadata).
        dropped_keys: source keys absent from the target (their rows are discarded).
        init: for each new key, how its row is initialised (``"position"``, ``"wavelength"``, ``"mean"``).
    """

    source: ChannelVocab
    target: ChannelVocab
    index: list[int | None]
    new_keys: list[str] = field(default_factory=list)
    dropped_keys: list[str] = field(default_factory=list)
    init: dict[str, str] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """True when the target is the source, id for id (no table change at all)."""
        return len(self.index) == len(self.source) and all(i == j for j, i in enumerate(self.index))

    def init_summary(self) -> str:
        counts: dict[str, int] = {}
        for how in self.init.values():
            counts[how] = counts.get(how, 0) + 1
        return ", ".join(f"{n} by {how}" for how, n in sorted(counts.items()))


def plan_remap(source: ChannelVocab, target: ChannelVocab) -> VocabRemap:
    """Match ``target`` ids to ``source`` ids by key and decide how new channels are initialised."""
    index: list[int | None] = [source.id(k) if k in source else None for k in target.keys]
    new_keys = [k for k, i in zip(target.keys, index) if i is None]
    dropped = [k for k in source.keys if k not in target]
    known = [source[i] for i in index if i is not None]
    init = {k: _init_kind(target[k], known) for k in new_keys}
    return VocabRemap(source, target, index, new_keys, dropped, init)


def _init_kind(ch: Channel, known: list[Channel]) -> str:
    if _finite_pos(ch.position) and any(_finite_pos(c.position) for c in known):
        return "position"
    if ch.wavelength_nm is not None and any(c.wavelength_nm is not None for c in known):
        return "wavelength"
    return "mean"


def _finite_pos(pos: tuple[float, float, float] | None) -> bool:
    return pos is not None and all(math.isfinite(p) for p in pos)


def remap_rows(table: Tensor, plan: VocabRemap) -> Tensor:
    """``table [len(source), D]`` -> ``[len(target), D]`` following ``plan`` (see module doc)."""
    if table.shape[0] != len(plan.source):
        raise ChannelRemapError(
            f"channel table has {table.shape[0]} rows but the model's vocabulary {plan.source.name!r} has "
            f"{len(plan.source)} channels"
        )
    rows = [table[i] if i is not None else None for i in plan.index]
    known_ids = [i for i in plan.index if i is not None]
    if not known_ids and plan.new_keys:
        raise ChannelRemapError(
            f"vocabulary {plan.target.name!r} shares no channel with the model's {plan.source.name!r}: "
            "nothing to initialise the new channels from"
        )
    known = [(plan.source[i], table[i]) for i in known_ids]
    mean = torch.stack([r for _, r in known]).mean(0) if known else None
    for j, key in enumerate(plan.target.keys):
        if rows[j] is not None:
            continue
        how = plan.init[key]
        ch = plan.target[key]
        if how == "position":
            rows[j] = _from_position(ch, known)
        elif how == "wavelength":
            rows[j] = _from_wavelength(ch, known)
        else:
            rows[j] = mean
    return torch.stack(rows)  # type: ignore[arg-type]


def _from_position(ch: Channel, known: list[tuple[Channel, Tensor]]) -> Tensor:
    placed = [(c, r) for c, r in known if _finite_pos(c.position)]
    target = torch.tensor(ch.position, dtype=torch.float64)
    dist = torch.stack([torch.linalg.vector_norm(torch.tensor(c.position, dtype=torch.float64) - target) for c, _ in placed])
    order = torch.argsort(dist)[:POSITION_NEIGHBOURS].tolist()
    if float(dist[order[0]]) == 0.0:
        return placed[order[0]][1].clone()
    w = torch.stack([1.0 / dist[i] for i in order])
    w = (w / w.sum()).to(placed[0][1].dtype)
    return sum(wi * placed[i][1] for wi, i in zip(w, order))  # type: ignore[return-value]


def _from_wavelength(ch: Channel, known: list[tuple[Channel, Tensor]]) -> Tensor:
    banded = sorted(((float(c.wavelength_nm), r) for c, r in known if c.wavelength_nm is not None), key=lambda t: t[0])
    wl = float(ch.wavelength_nm)  # type: ignore[arg-type]
    below = [t for t in banded if t[0] <= wl]
    above = [t for t in banded if t[0] >= wl]
    if not below:
        return above[0][1].clone()
    if not above:
        return below[-1][1].clone()
    (w0, r0), (w1, r1) = below[-1], above[0]
    if w1 == w0:
        return r0.clone()
    a = (wl - w0) / (w1 - w0)
    return (1 - a) * r0 + a * r1
