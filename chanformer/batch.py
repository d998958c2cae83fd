"""The variable-channel batch every chanformer encoder consumes.

A :class:`ChannelSample` is one recording, image or series: ``values [C, *S]`` plus the
vocabulary ids of its ``C`` channels. :meth:`ChannelBatch.collate` pads samples with
different channel counts into one :class:`ChannelBatch`:

* ``values [B, C, *S]`` (padded channels are exactly zero),
* ``channel_ids [B, C]`` (long; padded slots hold :data:`PAD_ID`),
* ``mask [B, C]`` (bool, ``True`` = the channel is present),
* optional ``coords [B, C, k]`` (electrode positions, wavelengths, ...),
* optional ``target`` and ``covariates [B, K, T]`` (e.g. calendar features of a series),
* ``sfreq`` (Hz) when the trailing axis is time,
* optional ``lengths [B]``: valid samples along the trailing (time) axis of each sample, for
  recordings of different durations zero-padded to one length.

Every per-sample fact a model needs is a typed field; ``meta`` holds free-form extras only.
:class:`PaddedSet` is the one padded-set base: a channel batch is a set of channels with a mask,
and a multiple-instance bag (:class:`BagBatch`) is a set of instances with a mask, so device
moves, pinning, slicing, padding hygiene and finiteness checks exist once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor

from chanformer.channels import ChannelVocab, UnknownChannelError

if TYPE_CHECKING:  # pragma: no cover
    import mne
    import xarray as xr

__all__ = [
    "PAD_ID",
    "BagBatch",
    "ChannelBatch",
    "ChannelIdError",
    "ChannelSample",
    "EmptySampleError",
    "PaddedSet",
]

PAD_ID = 0
"""Channel id stored in padded slots. Padded slots are identified by ``mask``, never by id;
0 keeps embedding look-ups in range, and the mask removes their effect."""


class EmptySampleError(ValueError):
    """A sample of a batch has no present channel (or a bag no instance): nothing to encode."""


class ChannelIdError(ValueError):
    """Channel ids that a model's channel table cannot look up; the message names them."""


S = TypeVar("S", bound="PaddedSet")


class PaddedSet:
    """Mixin for dataclasses holding padded sets: ``<set field> [B, N, *S]`` + ``mask [B, N]``.

    Subclasses name their set tensor in ``set_field`` (``values`` for channels, ``features`` for
    bag instances). Every tensor field whose first axis is ``B`` moves with :meth:`to`, pins with
    :meth:`pin_memory` and is sliced by ``batch[i]`` / ``batch[i:j]`` / ``batch[index_tensor]``;
    tensors inside ``meta`` (when the class has one) are moved too, in a copied dict.
    """

    set_field: str = "values"
    mask: Tensor

    @property
    def set_values(self) -> Tensor:
        return getattr(self, self.set_field)  # type: ignore[no-any-return]

    @property
    def batch_size(self) -> int:
        return int(self.set_values.shape[0])

    @property
    def device(self) -> torch.device:
        return self.set_values.device

    def __len__(self) -> int:
        return self.batch_size

    # -- tensor plumbing (Lightning moves any object with ``.to``) ----------------------------
    def _map(self: S, fn: Callable[[Tensor], Tensor]) -> S:
        kw = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        for k, val in kw.items():
            if isinstance(val, Tensor):
                kw[k] = fn(val)
            elif isinstance(val, dict):
                kw[k] = {mk: fn(mv) if isinstance(mv, Tensor) else mv for mk, mv in val.items()}
            elif isinstance(val, list):
                kw[k] = list(val)
        return type(self)(**kw)

    def to(self: S, *args: Any, **kwargs: Any) -> S:
        """Move tensors like :meth:`torch.Tensor.to`; a dtype applies to float tensors only."""
        dtype = kwargs.pop("dtype", None)
        rest = [a for a in args if not isinstance(a, torch.dtype)]
        dtype = next((a for a in args if isinstance(a, torch.dtype)), dtype)

        def move(t: Tensor) -> Tensor:
            t = t.to(*rest, **kwargs)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return self._map(move)

    def pin_memory(self: S) -> S:
        return self._map(lambda t: t.pin_memory())

    def __getitem__(self: S, index: int | slice | Tensor | Sequence[int]) -> S:
        """Samples ``index`` of the batch (an int keeps a batch of one)."""
        b = self.batch_size
        if isinstance(index, int):
            if not -b <= index < b:
                raise IndexError(f"{type(self).__name__}[{index}]: batch has {b} samples")
            index = slice(index % b, index % b + 1)
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        kw = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        rows = range(b)[index] if isinstance(index, slice) else index.tolist()

        def take(val: Any) -> Any:
            if isinstance(val, Tensor) and val.ndim and val.shape[0] == b:
                return val[index] if isinstance(index, slice) else val[index.to(val.device)]
            if isinstance(val, list) and len(val) == b:
                return [val[i] for i in rows]
            if isinstance(val, dict):
                return {k: take(v) for k, v in val.items()}
            return val

        return type(self)(**{k: take(v) for k, v in kw.items()})

    # -- padding hygiene --------------------------------------------------------------------
    def present_counts(self) -> Tensor:
        """Present members per sample: ``[B]`` long."""
        return self.mask.sum(1)

    def require_present(self, what: str = "channel") -> None:
        """Raise :class:`EmptySampleError` naming every sample without a present member."""
        empty = (~self.mask.any(1)).nonzero().flatten().tolist()
        if empty:
            raise EmptySampleError(
                f"sample(s) {empty} of the batch have no present {what} (mask all False); "
                f"drop them before encoding"
            )

    def padding_zeroed(self: S) -> S:
        """The same batch with exact zeros in every padded slot, whatever was stored there
        (NaN, inf, 1e30): what a model sees never depends on padding."""
        v = self.set_values
        keep = self.mask.view(*self.mask.shape, *([1] * (v.ndim - 2)))
        changes: dict[str, Tensor] = {self.set_field: torch.where(keep, v, torch.zeros((), dtype=v.dtype, device=v.device))}
        coords = getattr(self, "coords", None)
        if isinstance(coords, Tensor) and coords.is_floating_point():
            zero = torch.zeros((), dtype=coords.dtype, device=coords.device)
            changes["coords"] = torch.where(self.mask[..., None], coords, zero)
        return replace(self, **changes)  # type: ignore[type-var]

    def describe_member(self, b: int, n: int, names: Any = None) -> str:
        """Human-readable name of member ``n`` of sample ``b`` (used in error messages)."""
        return f"sample {b}, member {n}"

    def check_finite(self: S, names: Any = None) -> S:
        """Raise ``ValueError`` naming the sample and member of the first NaN/Inf among present ones."""
        flat = self.set_values.reshape(self.batch_size, self.mask.shape[1], -1)
        bad = ~torch.isfinite(flat).all(dim=-1) & self.mask
        if bad.any():
            b, n = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"non-finite values (NaN/Inf) in {self.describe_member(b, n, names)}")
        return self


@dataclass
class ChannelSample:
    """One sample before batching.

    Attributes:
        values: ``[C, *S]`` float tensor (``S`` = time, or height x width, ...).
        channel_ids: ``[C]`` long tensor of vocabulary ids, unique within the sample.
        coords: optional ``[C, k]`` per-channel metadata (positions in metres, wavelengths).
        target: optional label (0-d long tensor) or regression target tensor.
        covariates: optional ``[K, T]`` channel-independent inputs (calendar features).
    """

    values: Tensor
    channel_ids: Tensor
    coords: Tensor | None = None
    target: Tensor | None = None
    covariates: Tensor | None = None

    def __post_init__(self) -> None:
        self.values = torch.as_tensor(self.values)
        self.channel_ids = torch.as_tensor(self.channel_ids, dtype=torch.long)
        if self.values.ndim < 2:
            raise ValueError(f"ChannelSample.values must be [C, *S] with at least 2 dims, got {tuple(self.values.shape)}")
        if self.channel_ids.shape != (self.values.shape[0],):
            raise ValueError(
                f"ChannelSample.channel_ids must have shape [C]=[{self.values.shape[0]}], "
                f"got {tuple(self.channel_ids.shape)}"
            )
        if self.channel_ids.unique().numel() != self.channel_ids.numel():
            raise ValueError(f"ChannelSample.channel_ids has duplicates: {self.channel_ids.tolist()}")
        if self.coords is not None and self.coords.shape[0] != self.values.shape[0]:
            raise ValueError(
                f"ChannelSample.coords must be [C, k] with C={self.values.shape[0]}, got {tuple(self.coords.shape)}"
            )


@dataclass
class ChannelBatch(PaddedSet):
    """A batch of samples whose channel sets may differ (see module docstring for shapes)."""

    values: Tensor
    channel_ids: Tensor
    mask: Tensor
    coords: Tensor | None = None
    target: Tensor | None = None
    covariates: Tensor | None = None
    sfreq: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        v, ids, m = self.values, self.channel_ids, self.mask
        if v.ndim < 3:
            raise ValueError(f"ChannelBatch.values must be [B, C, *S] (>= 3 dims), got shape {tuple(v.shape)}")
        if ids.shape != v.shape[:2]:
            raise ValueError(f"ChannelBatch.channel_ids must be [B, C]={tuple(v.shape[:2])}, got {tuple(ids.shape)}")
        if m.shape != v.shape[:2]:
            raise ValueError(f"ChannelBatch.mask must be [B, C]={tuple(v.shape[:2])}, got {tuple(m.shape)}")
        if ids.dtype != torch.long:
            raise TypeError(f"ChannelBatch.channel_ids must be torch.long, got {ids.dtype}")
        if m.dtype != torch.bool:
            raise TypeError(f"ChannelBatch.mask must be torch.bool, got {m.dtype}")
        if self.coords is not None and self.coords.shape[:2] != v.shape[:2]:
            raise ValueError(f"ChannelBatch.coords must be [B, C, k] with [B, C]={tuple(v.shape[:2])}")
        if self.lengths is not None:
            lengths = self.lengths
            if lengths.shape != v.shape[:1] or lengths.is_floating_point() or lengths.dtype == torch.bool:
                raise ValueError(
                    f"ChannelBatch.lengths must be an integer tensor [B]=[{v.shape[0]}] of valid samples along "
                    f"the last axis, got {lengths.dtype} {tuple(lengths.shape)}"
                )
            if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > v.shape[-1]):
                raise ValueError(
                    f"ChannelBatch.lengths must lie in [1, {v.shape[-1]}] (the padded length), got {lengths.tolist()}"
                )
        if "lengths" in self.meta:
            raise ValueError("ChannelBatch.meta['lengths'] is not read by any model: use the typed field lengths=")

    # -- basic properties -----------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Padded channel count ``C`` of the batch."""
        return self.values.shape[1]

    def time_mask(self) -> Tensor:
        """``[B, T]`` bool, True where the trailing-axis sample is real (all True without ``lengths``)."""
        t = self.values.shape[-1]
        steps = torch.arange(t, device=self.device)
        if self.lengths is None:
            return steps.expand(self.batch_size, t) >= 0
        return steps[None, :] < self.lengths.to(self.device)[:, None]

    def padding_zeroed(self) -> ChannelBatch:
        """Zeros in padded channel slots and, with ``lengths``, past each sample's length."""
        out = PaddedSet.padding_zeroed(self)
        if self.lengths is not None:
            keep = self.time_mask().view(self.batch_size, *([1] * (self.values.ndim - 2)), -1)
            out = replace(out, values=torch.where(keep, out.values, torch.zeros((), dtype=out.values.dtype, device=self.device)))
        return out

    # -- validation -------------------------------------------------------------------------
    def describe_member(self, b: int, n: int, names: Any = None) -> str:
        cid = int(self.channel_ids[b, n])
        vocab = names
        name = vocab[cid].key if isinstance(vocab, ChannelVocab) and 0 <= cid < len(vocab) else f"id {cid}"
        return f"sample {b}, channel {name}"

    def check_finite(self, vocab: ChannelVocab | None = None) -> ChannelBatch:
        """Raise ``ValueError`` naming the sample and channel of the first NaN/Inf value
        among present channels (and, with ``lengths``, real time steps)."""
        batch = self
        if self.lengths is not None:  # time padding may hold anything; only real samples count
            batch = replace(self, values=torch.where(
                self.time_mask().view(self.batch_size, *([1] * (self.values.ndim - 2)), -1), self.values, 0.0))
        PaddedSet.check_finite(batch, vocab)
        return self

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def collate(samples: Sequence[ChannelSample], sfreq: float | None = None, pad_time: bool = False) -> ChannelBatch:
        """Pad samples with different channel counts into one batch.

        Channels are padded at the end, with zero values, ``mask=False`` and id :data:`PAD_ID`.
        All samples must share the trailing shape ``S``, unless ``pad_time=True``: then samples
        of different durations (last axis) are zero-padded to the longest and ``lengths [B]``
        records each one's valid length.
        """
        if len(samples) == 0:
            raise ValueError("collate() got an empty list of samples")
        spatial: tuple[int, ...] = tuple(samples[0].values.shape[1:])
        durations = [int(s.values.shape[-1]) for s in samples]
        if pad_time:
            spatial = (*spatial[:-1], max(durations))
        for i, s in enumerate(samples):
            shape = tuple(s.values.shape[1:-1] if pad_time else s.values.shape[1:])
            if shape != spatial[: len(shape)] or len(shape) != len(spatial) - int(pad_time):
                raise ValueError(
                    f"collate(): sample {i} has trailing shape {tuple(s.values.shape[1:])}, sample 0 has "
                    f"{tuple(samples[0].values.shape[1:])}; crop or pad them to one length/size first"
                    + ("" if pad_time else " (or collate(..., pad_time=True) for different durations)")
                )
        n_max = max(s.values.shape[0] for s in samples)
        b = len(samples)
        dtype = samples[0].values.dtype if samples[0].values.is_floating_point() else torch.float32
        values = samples[0].values.new_zeros((b, n_max, *spatial), dtype=dtype)
        ids = torch.full((b, n_max), PAD_ID, dtype=torch.long)
        mask = torch.zeros((b, n_max), dtype=torch.bool)
        has_coords = [s.coords is not None for s in samples]
        if any(has_coords) and not all(has_coords):
            raise ValueError("collate(): some samples have coords and others do not")
        coords = None
        if all(has_coords):
            k = samples[0].coords.shape[1]  # type: ignore[union-attr]
            coords = torch.zeros((b, n_max, k), dtype=torch.float32)
        for i, s in enumerate(samples):
            c = s.values.shape[0]
            values[i, :c, ..., : durations[i]] = s.values
            ids[i, :c] = s.channel_ids
            mask[i, :c] = True
            if coords is not None:
                coords[i, :c] = s.coords.to(torch.float32)  # type: ignore[union-attr]
        return ChannelBatch(
            values=values,
            channel_ids=ids,
            mask=mask,
            coords=coords,
            target=_stack_optional([s.target for s in samples], "target"),
            covariates=_stack_optional([s.covariates for s in samples], "covariates"),
            sfreq=sfreq,
            lengths=torch.tensor(durations, dtype=torch.long) if pad_time else None,
        )

    def unbatch(self) -> list[ChannelSample]:
        """Split into samples holding only the present channels (inverse of :meth:`collate`)."""
        out = []
        for i in range(self.batch_size):
            m = self.mask[i]
            values = self.values[i][m]
            if self.lengths is not None:
                values = values[..., : int(self.lengths[i])]
            out.append(
                ChannelSample(
                    values=values,
                    channel_ids=self.channel_ids[i][m],
                    coords=None if self.coords is None else self.coords[i][m],
                    target=None if self.target is None else self.target[i],
                    covariates=None if self.covariates is None else self.covariates[i],
                )
            )
        return out

    @classmethod
    def from_numpy(
        cls,
        values: np.ndarray | Tensor,
        channels: Sequence[str],
        vocab: ChannelVocab,
        *,
        sfreq: float | None = None,
        target: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> ChannelBatch:
        """Batch from an array ``[B, C, *S]`` (or one sample ``[C, *S]``) whose channels are
        named by ``channels`` (keys of ``vocab``); every channel is present. Values are
        cast to ``dtype`` (float32 by default, what the encoders expect).
        """
        arr = torch.as_tensor(np.asarray(values) if isinstance(values, np.ndarray) else values).to(dtype)
        batched = arr.ndim >= 3 and arr.shape[1] == len(channels)
        if not batched and arr.ndim >= 2 and arr.shape[0] == len(channels):
            arr = arr.unsqueeze(0)  # one sample [C, *S]
        if arr.ndim < 3:
            raise ValueError(f"from_numpy(values=...): expected [B, C, *S] or [C, *S], got {tuple(arr.shape)}")
        if arr.shape[1] != len(channels):
            raise ValueError(
                f"from_numpy(): values has {arr.shape[1]} channels on axis 1 but channels= names {len(channels)}"
            )
        ids = torch.tensor(vocab.ids(list(channels)), dtype=torch.long).expand(arr.shape[0], -1).clone()
        tgt = None if target is None else torch.as_tensor(target)
        return cls(arr, ids, torch.ones(ids.shape, dtype=torch.bool), coords=_coords_for(ids, vocab), target=tgt, sfreq=sfreq)

    @classmethod
    def from_xarray(cls, da: xr.DataArray, vocab: ChannelVocab, *, channel_dim: str = "channel") -> ChannelBatch:
        """Batch from a DataArray with a ``channel`` dimension whose coordinate holds channel keys.

        Dims other than ``channel`` keep their order; a leading ``batch``/``sample`` dim becomes
        ``B``, otherwise ``B = 1``. ``attrs['sfreq']`` is carried over.
        """
        if channel_dim not in da.dims:
            raise ValueError(f"from_xarray(): DataArray has no '{channel_dim}' dimension (dims: {da.dims})")
        keys = [str(k) for k in da.coords[channel_dim].values]
        batch_dims = [d for d in da.dims if d in ("batch", "sample")]
        order = batch_dims + [channel_dim] + [d for d in da.dims if d not in batch_dims and d != channel_dim]
        arr = da.transpose(*order).values
        if not batch_dims:
            arr = arr[None]
        return cls.from_numpy(arr.astype(np.float32, copy=False), keys, vocab, sfreq=da.attrs.get("sfreq"))

    @classmethod
    def from_mne(
        cls,
        inst: mne.io.BaseRaw | mne.BaseEpochs,
        vocab: ChannelVocab,
        *,
        prefix: str = "eeg/",
        on_unknown: str = "raise",
        aliases: dict[str, str] | None = None,
    ) -> ChannelBatch:
        """Batch from an mne ``Raw`` (``B = 1``) or ``Epochs`` (``B = n_epochs``), values in volts.

        Channel names are resolved case-insensitively against ``vocab`` through
        :meth:`ChannelVocab.resolve` (``FP1``, ``Fp1``, ``EEG Fp1-Ref``, PhysioNet's ``Fp1.`` all
        map to ``eeg/Fp1``; ``aliases`` maps further names to keys). Channels that do not resolve
        (unknown names, and non-EEG channels: stim/``Status``, ECG, EOG, EMG, respiration, ... by
        mne type or by name) are handled by ``on_unknown``:

        * ``"raise"`` (default): :class:`UnknownChannelError` naming every one of them;
        * ``"warn"``: leave them out with a ``UserWarning`` naming them and why;
        * ``"drop"``: leave them out silently.

        Either way, the channels left out are in ``batch.meta["dropped_channels"]``
        (``{name: reason}``); a recording left with no channel raises.
        """
        if on_unknown not in ("raise", "drop", "warn"):
            raise ValueError(f"from_mne(on_unknown={on_unknown!r}): expected 'raise', 'drop' or 'warn'")
        names = list(inst.ch_names)
        kept, keys, dropped = resolve_mne_channels(names, inst.get_channel_types(), vocab, prefix=prefix, aliases=aliases)
        if dropped and on_unknown == "raise":
            raise UnknownChannelError(
                [f"{n} ({why})" for n, why in dropped.items()],
                f"{vocab.name} (pass on_unknown='drop' or 'warn' to leave them out)",
            )
        if dropped and on_unknown == "warn":
            import warnings

            listing = ", ".join(f"{n} ({why})" for n, why in dropped.items())
            warnings.warn(f"from_mne(): leaving out {len(dropped)} channel(s): {listing}", UserWarning, stacklevel=2)
        if not kept:
            raise UnknownChannelError(names, f"{vocab.name} (no channel of the recording resolves)")
        data = inst.get_data(picks=kept)
        if data.ndim == 2:
            data = data[None]
        batch = cls.from_numpy(data.astype(np.float32), keys, vocab, sfreq=float(inst.info["sfreq"]))
        batch.meta["dropped_channels"] = dropped
        return batch

    # -- channel operations -------------------------------------------------------------------
    def select(self, channel_ids: Sequence[int] | Tensor) -> ChannelBatch:
        """Reorder/pick channels by vocabulary id: output channel ``j`` is ``channel_ids[j]``.

        Output shape ``[B, K, *S]`` with ``K = len(channel_ids)``; a requested channel that a
        sample lacks is returned masked (zeros, ``mask=False``).
        """
        want = torch.as_tensor(channel_ids, dtype=torch.long, device=self.device)
        if want.ndim != 1:
            raise ValueError(f"select(channel_ids=...) must be 1-D, got shape {tuple(want.shape)}")
        # match[b, j, c] = sample b's channel c is requested channel j
        match = (self.channel_ids[:, None, :] == want[None, :, None]) & self.mask[:, None, :]
        present = match.any(-1)
        src = match.to(torch.int8).argmax(-1)  # [B, K]
        idx = src.view(*src.shape, *([1] * (self.values.ndim - 2))).expand(-1, -1, *self.values.shape[2:])
        values = torch.gather(self.values, 1, idx) * _bcast(present, self.values)
        coords = None
        if self.coords is not None:
            cidx = src[..., None].expand(-1, -1, self.coords.shape[-1])
            coords = torch.gather(self.coords, 1, cidx) * present[..., None]
        ids = torch.where(present, want[None].expand_as(src), torch.full_like(src, PAD_ID))
        return replace(self, values=values, channel_ids=ids, mask=present, coords=coords)

    def drop_channels(self, p: float, generator: torch.Generator | None = None) -> ChannelBatch:
        """Randomly hide each present channel with probability ``p`` (keeps >= 1 per sample).

        Used for channel-dropout augmentation and Hierarchical Channel Sampling: hidden
        channels get ``mask=False`` and zero values, shape stays ``[B, C, *S]``.
        """
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_channels(p={p}): p must be in [0, 1)")
        r = torch.rand(self.mask.shape, generator=generator, device="cpu").to(self.device)
        keep = self.mask & (r >= p)
        # guarantee one present channel per sample: keep the highest-scoring present one
        none_left = ~keep.any(1)
        if none_left.any():
            best = torch.where(self.mask, r, torch.full_like(r, -1.0)).argmax(1)
            keep[none_left, best[none_left]] = True
        return replace(self, values=self.values * _bcast(keep, self.values), mask=keep)

    def vocab_keys(self, vocab: ChannelVocab, sample: int = 0) -> list[str]:
        """Channel keys of one sample's present channels."""
        ids = self.channel_ids[sample][self.mask[sample]].tolist()
        return [vocab[i].key for i in ids]



#: mne channel types that carry brain signals (others: stim, ecg, eog, emg, resp, misc, bio, ...).
MNE_DATA_TYPES = ("eeg", "seeg", "ecog", "dbs")
#: Name prefixes of channels that are not EEG even when a file types them as EEG (EDF often does).
NON_EEG_NAMES = ("ECG", "EKG", "EOG", "EMG", "SAO2", "SPO2", "RESP", "PULSE", "PLETH", "STATUS", "STI", "TRIG",
                 "PHOTIC", "EVENT", "MARKER", "BP", "TEMP", "HR", "ERGO", "DC", "X", "$", "PAT", "TECH")  # fmt: skip


def non_eeg_reason(name: str, ch_type: str | None = None) -> str | None:
    """Why channel ``name`` (of mne type ``ch_type``) is not an EEG/iEEG signal, or ``None``.

    By type (``stim``, ``ecg``, ``eog``, ``misc``, ...) or by name: the type word of an EDF
    label (``ECG ECG1``, ``SaO2 X9``), ``Status``/trigger channels, and EDF ``POL`` labels of
    polygraphic inputs (``POL DC01``, ``POL $A1``, ``POL EKG1``).
    """
    if ch_type is not None and ch_type not in MNE_DATA_TYPES:
        return f"{ch_type} channel"
    label = name.strip().upper()
    for lead in ("POL ", "EEG "):
        if label.startswith(lead):
            label = label[len(lead) :].strip()
    word = label.replace("-", " ").replace("_", " ").split(" ")[0] if label else ""
    for pre in NON_EEG_NAMES:
        if pre in ("X", "DC", "BP", "HR", "$"):
            # short prefixes: only with a number (X1, DC01, BP3) or for $-labels
            if word.startswith(pre) and (pre == "$" or word[len(pre):].isdigit()):
                return "not EEG (name)"
        elif word.startswith(pre):
            return "not EEG (name)"
    return None


def resolve_mne_channels(
    names: Sequence[str],
    ch_types: Sequence[str] | None,
    vocab: ChannelVocab,
    *,
    prefix: str = "eeg/",
    aliases: dict[str, str] | None = None,
) -> tuple[list[int], list[str], dict[str, str]]:
    """Resolve recording channel ``names`` against ``vocab``: ``(kept indices, their keys,
    {left-out name: reason})``. A name that resolves is kept unless its type says it is not a
    brain signal; a key claimed by two channels keeps the first."""
    kept: list[int] = []
    keys: list[str] = []
    dropped: dict[str, str] = {}
    types = list(ch_types) if ch_types is not None else [None] * len(names)
    for i, (name, kind) in enumerate(zip(names, types)):
        if kind is not None and kind not in MNE_DATA_TYPES:
            dropped[name] = f"{kind} channel"
            continue
        key = vocab.resolve(name, prefix, aliases)
        if key is None:
            dropped[name] = non_eeg_reason(name) or f"not in vocabulary {vocab.name!r}"
            continue
        if key in keys:
            dropped[name] = f"duplicate of {names[kept[keys.index(key)]]!r} ({key})"
            continue
        kept.append(i)
        keys.append(key)
    return kept, keys, dropped


class BagLike(Protocol):
    """What :meth:`BagBatch.collate` reads from each bag (e.g. :class:`chanformer.datasets.wsi.store.Bag`)."""

    features: Tensor
    coords: Tensor
    label: int | None
    slide: str


@dataclass
class BagBatch(PaddedSet):
    """Padded multiple-instance bags: a bag is a set of instances, as a recording is a set of channels.

    Attributes:
        features: ``[B, N, D]`` instance features (padded rows are zero).
        mask: ``[B, N]`` bool, True = real instance.
        target: ``[B]`` long bag labels, or ``None``.
        coords: ``[B, N, 2]`` instance positions (tile corners for slides).
        slides: the bag names, for messages and predictions.
    """

    set_field = "features"

    features: Tensor
    mask: Tensor
    target: Tensor | None
    coords: Tensor
    slides: list[str]

    def __post_init__(self) -> None:
        f, m = self.features, self.mask
        if f.ndim != 3:
            raise ValueError(f"BagBatch.features must be [B, N, D], got shape {tuple(f.shape)}")
        if m.shape != f.shape[:2] or m.dtype != torch.bool:
            raise ValueError(f"BagBatch.mask must be bool [B, N]={tuple(f.shape[:2])}, got {m.dtype} {tuple(m.shape)}")
        if len(self.slides) != f.shape[0]:
            raise ValueError(f"BagBatch.slides names {len(self.slides)} bags, features hold {f.shape[0]}")

    @property
    def values(self) -> Tensor:
        """The instance features (the set tensor), named as for :class:`ChannelBatch`."""
        return self.features

    def describe_member(self, b: int, n: int, names: Any = None) -> str:
        return f"slide {self.slides[b]}, tile {n}"

    @staticmethod
    def from_tensors(features: Tensor, mask: Tensor | None = None, names: Sequence[str] | None = None) -> BagBatch:
        """Bags from ``features [B, N, D]`` (or one bag ``[N, D]``) and an optional ``mask [B, N]``."""
        if features.ndim == 2:
            features = features.unsqueeze(0)
            mask = None if mask is None else mask.reshape(1, -1)
        if features.ndim != 3:
            raise ValueError(f"BagBatch.from_tensors(features=...): expected [B, N, D] or [N, D], got {tuple(features.shape)}")
        b, n = features.shape[:2]
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=features.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"BagBatch.from_tensors(mask=...): must be a bool tensor, got {mask.dtype}")
        coords = torch.zeros(b, n, 2, dtype=torch.long, device=features.device)
        return BagBatch(features, mask, None, coords, list(names) if names is not None else [f"bag {i}" for i in range(b)])

    @staticmethod
    def collate(bags: Sequence[BagLike]) -> BagBatch:
        """Pad bags of different sizes to the largest; padded rows are zero and masked out."""
        if not bags:
            raise ValueError("BagBatch.collate() got an empty list of bags")
        n = max(len(b.features) for b in bags)
        d = bags[0].features.shape[1]
        feats = torch.zeros(len(bags), n, d)
        coords = torch.zeros(len(bags), n, 2, dtype=torch.long)
        mask = torch.zeros(len(bags), n, dtype=torch.bool)
        for i, b in enumerate(bags):
            if b.features.ndim != 2 or b.features.shape[1] != d:
                raise ValueError(
                    f"slide {b.slide}: features of shape {tuple(b.features.shape)}, slide {bags[0].slide} has [N, {d}]"
                )
            k = len(b.features)
            feats[i, :k], coords[i, :k], mask[i, :k] = b.features, b.coords, True
        labels = [b.label for b in bags]
        target = None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.long)
        return BagBatch(feats, mask, target, coords, [b.slide for b in bags])


def _bcast(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(*mask.shape, *([1] * (like.ndim - 2))).to(like.dtype)


def _stack_optional(items: list[Tensor | None], name: str) -> Tensor | None:
    if all(x is None for x in items):
        return None
    if any(x is None for x in items):
        raise ValueError(f"collate(): some samples have a {name} and others do not")
    return torch.stack([torch.as_tensor(x) for x in items])  # type: ignore[misc]


def _coords_for(ids: Tensor, vocab: ChannelVocab) -> Tensor | None:
    """Electrode positions ``[B, C, 3]`` when every channel in the vocabulary has one."""
    rows = [vocab[int(i)].position for i in ids[0]]
    if any(r is None for r in rows):
        return None
    pos = torch.tensor(rows, dtype=torch.float32)
    return pos.unsqueeze(0).expand(ids.shape[0], -1, -1).clone()
