"""The entry point every MIL head shares: a :class:`~chanformer.batch.BagBatch` in, a named tuple out."""

from __future__ import annotations

import abc
from typing import Any

from torch import Tensor, nn

from chanformer.batch import BagBatch

__all__ = ["MILHead"]


class MILHead(nn.Module, metaclass=abc.ABCMeta):
    """Base of the MIL heads (ACMIL, ABMIL, bag mean).

    ``forward(bags)`` takes padded bags (``features [B, N, D]``, ``mask [B, N]``), refuses a bag
    without instances (:class:`~chanformer.batch.EmptySampleError`), zeroes padded rows (so NaN
    or inf there never reach an output) and calls :meth:`forward_tensors`, the thin tensor
    interface kept for converters and reference fixtures.
    """

    in_dim: int

    def forward(self, bags: BagBatch, **kwargs: Any) -> Any:
        """Classify padded bags ``features [B, N, D]``; outputs do not depend on padding."""
        if not isinstance(bags, BagBatch):
            raise TypeError(
                f"{type(self).__name__} takes a BagBatch (BagBatch.collate(bags) or BagBatch.from_tensors(x, mask)), "
                f"got {type(bags).__name__}"
            )
        bags.require_present("instance")
        bags = bags.padding_zeroed()
        return self.forward_tensors(bags.features, bags.mask, **kwargs)

    @abc.abstractmethod
    def forward_tensors(self, x: Tensor, mask: Tensor | None = None, **kwargs: Any) -> Any:
        """``x [B, N, D]`` (or one bag ``[N, D]``) with ``mask [B, N]`` -> the head's outputs."""
