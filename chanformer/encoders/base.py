"""The interface every chanformer encoder implements, and the channel contract it enforces."""

from __future__ import annotations

import abc
import functools
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch, ChannelIdError
from chanformer.channels import ChannelVocab
from chanformer.nn.pooling import masked_mean
from chanformer.remap import ChannelRemapError, VocabRemap, plan_remap, remap_rows
from chanformer.spec import DataSpec

__all__ = ["Encoder", "masked_mean"]


class Encoder(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``ChannelBatch -> [B, D]`` with ``D = embed_dim``.

    Subclasses implement :meth:`forward_features` (token-level output) and
    :meth:`pool` (tokens -> one vector per sample). Channel-adaptive encoders read
    ``batch.channel_ids``/``batch.mask``/``batch.coords``; an encoder with a fixed input
    layout declares it in :meth:`required_channels` and maps batches onto it explicitly.

    The channel contract, enforced here for every subclass (its ``forward_features`` is
    wrapped by :meth:`check_batch` when the class is defined, so a new family is covered by
    being written):

    * the input is a :class:`~chanformer.batch.ChannelBatch` (a clear ``TypeError`` otherwise);
    * a sample with no present channel raises :class:`~chanformer.batch.EmptySampleError`;
    * ids outside the channel table raise :class:`~chanformer.batch.ChannelIdError` naming them;
    * padded slots (and time steps past ``batch.lengths``) are zeroed before the model sees
      them, so NaN, inf or 1e30 in padding never reach an output.
    """

    embed_dim: int
    #: Which :class:`~chanformer.spec.DataSpec` fields fill which constructor arguments
    #: when a task builds the encoder from data (e.g. ``{"n_times": "seq_len"}``).
    data_args: ClassVar[dict[str, str]] = {}
    #: Constructor argument sizing the table whose row ``k`` belongs to vocabulary id ``k``
    #: (``None``: the family has no vocabulary-indexed table).
    channel_table_arg: ClassVar[str | None] = None
    #: Values of the ``channel_embedding`` argument that switch that table on.
    channel_table_switches: ClassVar[tuple[Any, ...]] = (True,)
    #: Vocabulary whose ids the encoder's channel embeddings (if any) are indexed by.
    vocab: ChannelVocab | None = None
    #: Set by :func:`create_encoder`: how to rebuild this encoder.
    encoder_name: str | None = None
    encoder_kwargs: dict[str, Any]

    @classmethod
    def data_kwargs(cls, spec: DataSpec, given: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments taken from the data (``data_args``) for a build with arguments
        ``given``. An optional channel table switched on with ``channel_embedding=True`` gets its
        size (``channel_table_arg``) from the vocabulary, so recipes never hard-code it (the values
        that switch it on: ``channel_table_switches``)."""
        out = spec.encoder_kwargs(cls.data_args)
        switch = given.get("channel_embedding")
        on = any(switch is v if isinstance(v, bool) else switch == v for v in cls.channel_table_switches)
        if cls.channel_table_arg and on and len(spec.vocab):
            out.setdefault(cls.channel_table_arg, len(spec.vocab))
        return out

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("forward_features")
        if impl is not None and not getattr(impl, "_checks_batch", False):
            cls.forward_features = _checked(impl)  # type: ignore[method-assign,assignment]

    @abc.abstractmethod
    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """Token features; shape documented by each encoder."""

    @abc.abstractmethod
    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Reduce :meth:`forward_features` output to ``[B, D]``."""

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Embed a batch: ``[B, C, *S] -> [B, D]``; padded channels (``mask=False``) never count."""
        batch = self.check_batch(batch)
        return self.pool(self.forward_features(batch), batch)

    def pretrained_spec(self) -> dict[str, Any]:
        """JSON-able spec from which :func:`chanformer.hub.load_pretrained` rebuilds this encoder."""
        if self.encoder_name is None:
            raise TypeError(
                f"{type(self).__name__} was not built with create_encoder(), so it cannot be saved by name; "
                "build it with chanformer.create_encoder(name, ...)"
            )
        return {"kind": "encoder", "name": self.encoder_name, "kwargs": getattr(self, "encoder_kwargs", {})}

    # -- the channel contract -------------------------------------------------------------------
    def channel_table(self) -> nn.Embedding | None:
        """The embedding whose row ``k`` is vocabulary id ``k`` (``None`` when the family has none)."""
        if self.channel_table_arg is None:
            return None
        table = getattr(self, "channel_embed", None)
        return table if isinstance(table, nn.Embedding) else None

    def required_channels(self) -> list[str]:
        """Channel keys a fixed input layout needs (``[]`` for channel-adaptive families)."""
        return []

    def channel_order_invariant(self) -> bool:
        """Whether the embedding ignores the order in which a sample lists its channels."""
        return False

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """A small valid input (random values; ragged channel sets where the family allows), for
        smoke tests, docs and export tracing."""
        raise NotImplementedError(f"{type(self).__name__} does not provide example_batch()")

    def _example_batch(
        self,
        tail: tuple[int, ...],
        n_channels: int,
        batch_size: int,
        seed: int,
        ids: list[int] | None = None,
        ragged: bool = True,
        durations: list[int] | None = None,
    ) -> ChannelBatch:
        """Samples of ``n_channels`` (one fewer in every other sample when ``ragged``) with values
        ``[C, *tail]``; ids drawn without replacement from ``ids`` (default: the channel table rows,
        else ``0..n_channels-1``); ``durations`` pads the last axis with typed lengths."""
        from chanformer.batch import ChannelSample

        g = torch.Generator().manual_seed(seed)
        table = self.channel_table()
        pool = ids if ids is not None else list(range(table.num_embeddings if table is not None else n_channels))
        samples = []
        for i in range(batch_size):
            c = max(1, n_channels - (i % 2 if ragged else 0))
            pick = torch.randperm(len(pool), generator=g)[:c] if ragged else torch.arange(c)
            shape = tail if durations is None else (*tail[:-1], durations[i % len(durations)])
            samples.append(ChannelSample(torch.randn(c, *shape, generator=g), torch.tensor([pool[int(j)] for j in pick])))
        return ChannelBatch.collate(samples, pad_time=durations is not None)

    def check_batch(self, batch: ChannelBatch) -> ChannelBatch:
        """Validate ``batch`` against the channel contract and zero its padding (see class doc)."""
        if getattr(batch, "_contract_checked", None) is self:
            return batch
        if not isinstance(batch, ChannelBatch):
            raise TypeError(
                f"{type(self).__name__} takes a ChannelBatch, got {type(batch).__name__}; build one with "
                "ChannelBatch.collate / from_numpy / from_mne / from_xarray"
            )
        batch.require_present("channel")
        table = self.channel_table()
        if table is not None:
            ids = batch.channel_ids[batch.mask]
            bad = (ids < 0) | (ids >= table.num_embeddings)
            if bool(bad.any()):
                wrong = sorted(set(ids[bad].tolist()))
                raise ChannelIdError(
                    f"{type(self).__name__}: channel id(s) {wrong[:10]}{' ...' if len(wrong) > 10 else ''} are outside "
                    f"its channel table of {table.num_embeddings} rows ({self.channel_table_arg}={table.num_embeddings}, "
                    f"ids 0..{table.num_embeddings - 1}); the batch "
                    "was built with a larger vocabulary than the model's: load the model with that vocabulary "
                    "(load_pretrained(..., vocab=...)) or rebuild it with the data's vocabulary size"
                )
        out = batch.padding_zeroed()
        object.__setattr__(out, "_contract_checked", self)
        return out

    def adapt_to_vocab(self, target: ChannelVocab, *, strict: bool = False) -> VocabRemap | None:
        """Re-index this encoder's channel-indexed parameters by channel KEY onto ``target``.

        Row ``j`` of the new table is the old row of ``target[j].key``. Keys the model never saw
        are initialised from metadata (:func:`chanformer.remap.remap_rows`: inverse-distance
        weighting of the 3 nearest known electrode positions, linear interpolation between the
        nearest known wavelengths, else the mean of the known rows) with a warning naming them;
        ``strict=True`` refuses them with :class:`~chanformer.remap.ChannelRemapError`. Fixed
        layouts (:meth:`required_channels`) refuse a target missing any of their keys. The same
        channels in another order give bit-identical embeddings. Returns the plan (``None`` when
        the encoder has no vocabulary to map from).
        """
        needed = self.required_channels()
        missing = [k for k in needed if k not in target]
        if missing:
            raise ChannelRemapError(
                f"{type(self).__name__} has a fixed input layout and cannot be mapped onto vocabulary "
                f"{target.name!r}: it lacks {missing}"
            )
        source = self.vocab
        table = self.channel_table()
        if table is not None and source is None:
            warnings.warn(
                f"{type(self).__name__} has a channel table but no saved vocabulary: assuming its rows are "
                f"already indexed by vocabulary {target.name!r} (save models with their vocabulary)",
                stacklevel=2,
            )
        if source is None or table is None:
            self.vocab = target
            return None
        plan = plan_remap(source, target)
        if plan.new_keys:
            if strict:
                raise ChannelRemapError(
                    f"{type(self).__name__}: vocabulary {target.name!r} has channel(s) the model never saw: "
                    f"{plan.new_keys}; strict loading refuses them (pass strict=False to initialise them from metadata)"
                )
            warnings.warn(
                f"{type(self).__name__}: initialising channel(s) the model never saw from metadata "
                f"({plan.init_summary()}): {plan.new_keys}",
                stacklevel=2,
            )
        if not plan.identical:
            weight = remap_rows(table.weight.detach(), plan)
            new = nn.Embedding(len(target), weight.shape[1], device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                new.weight.copy_(weight)
            self.channel_embed: nn.Embedding | None = new  # families without a table leave it None
            if self.channel_table_arg is not None and hasattr(self, "encoder_kwargs"):
                self.encoder_kwargs = {**self.encoder_kwargs, self.channel_table_arg: len(target)}
            if hasattr(self, self.channel_table_arg or ""):
                setattr(self, self.channel_table_arg, len(target))  # type: ignore[arg-type]
        self.vocab = target
        return plan


def _checked(impl: Callable[[Encoder, ChannelBatch], Tensor]) -> Callable[[Encoder, ChannelBatch], Tensor]:
    @functools.wraps(impl)
    def forward_features(self: Encoder, batch: ChannelBatch) -> Tensor:
        return impl(self, self.check_batch(batch))

    forward_features._checks_batch = True  # type: ignore[attr-defined]
    return forward_features
