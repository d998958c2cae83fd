"""The variable-channel batch every chanformer encoder consumes.

A :class:`ChannelSample` is one recording, image or series: ``values [C, *S]`` plus the
vocabulary ids of its ``C`` channels. :meth:`ChannelBatch.collate` pads samples with
different channel counts into one :class:`ChannelBatch`:

* ``values [B, C, *S]`` (padded channels are exactly zero),
* ``channel_ids [B, C]`` (long; padded slots hold :data:`PAD_ID`),
* ``mask [B, C]`` (bool, ``True`` = the channel is present),
* optional ``coords [B, C, k]`` (electrode positions, wavelengths, ...),
* optional ``target`` and ``covariates [B, K, T]`` (e.g. calendar features of a series),
* ``sfreq`` (Hz) when the trailing axis is time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from chanformer.channels import ChannelVocab, UnknownChannelError

if TYPE_CHECKING:  # pragma: no cover
    import mne
    import xarray as xr

__all__ = ["PAD_ID", "ChannelBatch", "ChannelSample"]

PAD_ID = 0
"""Channel id stored in padded slots. Padded slots are identified by ``mask``, never by id;
0 keeps embedding look-ups in range, and the mask removes their effect."""


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
class ChannelBatch:
    """A batch of samples whose channel sets may differ (see module docstring for shapes)."""

    values: Tensor
    channel_ids: Tensor
    mask: Tensor
    coords: Tensor | None = None
    target: Tensor | None = None
    covariates: Tensor | None = None
    sfreq: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

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

    # -- basic properties -----------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def n_channels(self) -> int:
        """Padded channel count ``C`` of the batch."""
        return self.values.shape[1]

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __len__(self) -> int:
        return self.batch_size

    # -- device / memory (Lightning moves any object with ``.to``) ------------------------
    def _map(self, fn: Any) -> ChannelBatch:
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, val in kw.items():
            if isinstance(val, Tensor):
                kw[k] = fn(val)
        return ChannelBatch(**kw)

    def to(self, *args: Any, **kwargs: Any) -> ChannelBatch:
        """Move tensors like :meth:`torch.Tensor.to`; a dtype applies to float tensors only."""
        dtype = kwargs.pop("dtype", None)
        rest = [a for a in args if not isinstance(a, torch.dtype)]
        dtype = next((a for a in args if isinstance(a, torch.dtype)), dtype)

        def move(t: Tensor) -> Tensor:
            t = t.to(*rest, **kwargs)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return self._map(move)

    def pin_memory(self) -> ChannelBatch:
        return self._map(lambda t: t.pin_memory())

    # -- validation -------------------------------------------------------------------------
    def check_finite(self, vocab: ChannelVocab | None = None) -> ChannelBatch:
        """Raise ``ValueError`` naming the sample and channel of the first NaN/Inf value."""
        flat = self.values.reshape(self.batch_size, self.n_channels, -1)
        bad = ~torch.isfinite(flat).all(dim=-1) & self.mask
        if bad.any():
            b, c = (int(i) for i in bad.nonzero()[0])
            cid = int(self.channel_ids[b, c])
            name = vocab[cid].key if vocab is not None and cid < len(vocab) else f"id {cid}"
            raise ValueError(f"non-finite values (NaN/Inf) in sample {b}, channel {name}")
        return self

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def collate(samples: Sequence[ChannelSample], sfreq: float | None = None) -> ChannelBatch:
        """Pad samples with different channel counts into one batch.

        All samples must share the trailing shape ``S``; channels are padded at the end,
        with zero values, ``mask=False`` and id :data:`PAD_ID`.
        """
        if len(samples) == 0:
            raise ValueError("collate() got an empty list of samples")
        spatial = samples[0].values.shape[1:]
        for i, s in enumerate(samples):
            if s.values.shape[1:] != spatial:
                raise ValueError(
                    f"collate(): sample {i} has trailing shape {tuple(s.values.shape[1:])}, sample 0 has "
                    f"{tuple(spatial)}; crop or pad them to one length/size first"
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
            values[i, :c] = s.values
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
        )

    def unbatch(self) -> list[ChannelSample]:
        """Split into samples holding only the present channels (inverse of :meth:`collate`)."""
        out = []
        for i in range(self.batch_size):
            m = self.mask[i]
            out.append(
                ChannelSample(
                    values=self.values[i][m],
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
    ) -> ChannelBatch:
        """Batch from an mne ``Raw`` (``B = 1``) or ``Epochs`` (``B = n_epochs``), values in volts.

        Channel names are resolved case-insensitively against ``vocab`` (``FP1``, ``Fp1`` and
        ``EEG Fp1-Ref`` all map to ``eeg/Fp1``); unknown names raise an error listing them.
        """
        names = list(inst.ch_names)
        keys = [vocab.resolve(n, prefix) for n in names]
        unknown = [n for n, k in zip(names, keys) if k is None]
        if unknown:
            raise UnknownChannelError(unknown, vocab.name)
        data = inst.get_data()
        if data.ndim == 2:
            data = data[None]
        return cls.from_numpy(data.astype(np.float32), keys, vocab, sfreq=float(inst.info["sfreq"]))  # type: ignore[arg-type]

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
