"""The interface every chanformer encoder implements."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab

__all__ = ["Encoder", "masked_mean"]


class Encoder(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``ChannelBatch -> [B, D]`` with ``D = embed_dim``.

    Subclasses implement :meth:`forward_features` (token-level output) and
    :meth:`pool` (tokens -> one vector per sample). Channel-adaptive encoders read
    ``batch.channel_ids``/``batch.mask``/``batch.coords``; an encoder with a fixed input
    layout declares it in ``input_channels`` and maps batches onto it explicitly.
    """

    embed_dim: int
    #: Which :class:`~chanformer.spec.DataSpec` fields fill which constructor arguments
    #: when a task builds the encoder from data (e.g. ``{"n_times": "seq_len"}``).
    data_args: ClassVar[dict[str, str]] = {}
    #: Vocabulary whose ids the encoder's channel embeddings (if any) are indexed by.
    vocab: ChannelVocab | None = None
    #: Set by :func:`create_encoder`: how to rebuild this encoder.
    encoder_name: str | None = None
    encoder_kwargs: dict[str, Any]

    @abc.abstractmethod
    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """Token features; shape documented by each encoder."""

    @abc.abstractmethod
    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Reduce :meth:`forward_features` output to ``[B, D]``."""

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Embed a batch: ``[B, C, *S] -> [B, D]``; padded channels (``mask=False``) never count."""
        return self.pool(self.forward_features(batch), batch)


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean of ``x [B, N, D]`` over tokens where ``mask [B, N]`` is True -> ``[B, D]``."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp_min(1.0)

