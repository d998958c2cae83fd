"""xarray / Zarr storage of channel data: a lazy dataset and an atomic writer.

Layout: a DataArray (Zarr variable ``values``) with dims ``(sample, channel, *S)`` whose
``channel`` coordinate holds vocabulary keys; optional per-sample ``target`` and
``covariates`` variables. Samples with different channel sets are stored on the union of
their channels, absent channels filled with NaN (dropped again when read).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.io import atomic_directory

__all__ = ["XarrayDataset", "save_zarr"]

PathLike = str | os.PathLike[str]


def _open(path: PathLike) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Zarr store not found: {path}")
    try:
        return xr.open_zarr(path, chunks=None, consolidated=False)  # lazy, no dask; one sample per item
    except Exception as e:
        raise ValueError(f"cannot open Zarr store {path}: {e}") from e


def _pick_variable(ds: xr.Dataset, variable: str | None, sample_dim: str, channel_dim: str) -> xr.DataArray:
    if variable is not None:
        if variable not in ds.data_vars:
            raise KeyError(f"variable {variable!r} not in dataset (variables: {list(ds.data_vars)})")
        return ds[variable]
    if "values" in ds.data_vars:
        return ds["values"]
    cands = [k for k, v in ds.data_vars.items() if sample_dim in v.dims and channel_dim in v.dims]
    if len(cands) != 1:
        raise ValueError(f"pass variable=: cannot pick the data variable among {list(ds.data_vars)}")
    return ds[cands[0]]


class XarrayDataset(Dataset[ChannelSample]):
    """One :class:`ChannelSample` per index along ``sample_dim`` of a DataArray or Zarr store.

    Args:
        da_or_path: a DataArray, a Dataset, or a Zarr store path (opened lazily with
            ``xarray.open_zarr``; each ``__getitem__`` reads one sample).
        vocab: vocabulary holding the keys of the ``channel_dim`` coordinate; keys it lacks
            raise :class:`~chanformer.channels.UnknownChannelError` naming them.
        sample_dim / channel_dim: dimension names; the remaining dims keep their order.
        target: name of a per-sample variable or ``sample_dim`` coordinate (e.g. ``"label"``,
            ``"target"``), or an array with one entry per sample; integer targets become long.
        variable: data variable to read from a Dataset/store (default ``values`` or the only
            one with both dims).
        drop_nan_channels: drop channels that are entirely NaN in a sample (absent channels).

    """

    def __init__(
        self,
        da_or_path: xr.DataArray | xr.Dataset | PathLike,
        *,
        vocab: ChannelVocab,
        sample_dim: str = "sample",
        channel_dim: str = "channel",
        target: str | Sequence[Any] | np.ndarray | None = None,
        variable: str | None = None,
        drop_nan_channels: bool = True,
    ) -> None:
        obj = da_or_path if isinstance(da_or_path, xr.DataArray | xr.Dataset) else _open(da_or_path)
        ds = obj if isinstance(obj, xr.Dataset) else None
        da = obj if isinstance(obj, xr.DataArray) else _pick_variable(obj, variable, sample_dim, channel_dim)
        for dim in (sample_dim, channel_dim):
            if dim not in da.dims:
                raise ValueError(f"DataArray has no {dim!r} dimension (dims: {da.dims})")
        if channel_dim not in da.coords:
            raise ValueError(f"DataArray has no {channel_dim!r} coordinate holding the channel keys")
        self.vocab, self.sample_dim, self.drop_nan_channels = vocab, sample_dim, drop_nan_channels
        self.channel_keys = [str(k) for k in da.coords[channel_dim].values]
        self.channel_ids = torch.tensor(vocab.ids(self.channel_keys), dtype=torch.long)
        rest = [d for d in da.dims if d not in (sample_dim, channel_dim)]
        self.da = da.transpose(sample_dim, channel_dim, *rest)
        self.sfreq = self.da.attrs.get("sfreq")
        pos = [vocab[k].position for k in self.channel_keys]
        self._coords = None if any(p is None for p in pos) else torch.tensor(pos, dtype=torch.float32)
        self.targets = self._load_target(target, ds, da)

    def _load_target(self, target: Any, ds: xr.Dataset | None, da: xr.DataArray) -> torch.Tensor | None:
        if target is None:
            return None
        if isinstance(target, str):
            if ds is not None and target in ds.variables:
                arr = ds[target]
            elif target in da.coords:
                arr = da.coords[target]
            else:
                where = list(ds.variables) if ds is not None else list(da.coords)
                raise KeyError(f"target {target!r} is neither a variable nor a coordinate (have {where})")
            if arr.dims[:1] != (self.sample_dim,):
                raise ValueError(
                    f"target {target!r} must have {self.sample_dim!r} first, has dims {arr.dims}"
                )
            values = np.asarray(arr.values)
        else:
            values = np.asarray(target)
        if len(values) != len(self):
            raise ValueError(f"target has {len(values)} entries for {len(self)} samples")
        if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
            return torch.from_numpy(values.astype(np.int64))
        return torch.from_numpy(values.astype(np.float32))

    def __len__(self) -> int:
        return self.da.sizes[self.sample_dim]

    def __getitem__(self, i: int) -> ChannelSample:
        arr = np.asarray(self.da.isel({self.sample_dim: int(i)}).values, dtype=np.float32)
        ids, coords = self.channel_ids, self._coords
        if self.drop_nan_channels:
            keep = ~np.isnan(arr.reshape(arr.shape[0], -1)).all(axis=1)
            if not keep.all():
                k = torch.from_numpy(keep)
                arr, ids = arr[keep], ids[k]
                coords = None if coords is None else coords[k]
        return ChannelSample(
            values=torch.from_numpy(arr),
            channel_ids=ids,
            coords=coords,
            target=None if self.targets is None else self.targets[i],
        )


def _samples_to_dataset(samples: Sequence[ChannelSample], vocab: ChannelVocab | None) -> xr.Dataset:
    if vocab is None:
        raise ValueError("save_zarr(samples): pass vocab= to name the channels of channel_ids")
    if not samples:
        raise ValueError("save_zarr(): no samples")
    spatial = tuple(samples[0].values.shape[1:])
    ids: list[int] = []
    for s in samples:
        if tuple(s.values.shape[1:]) != spatial:
            raise ValueError(
                f"save_zarr(): samples differ in trailing shape ({tuple(s.values.shape[1:])} vs {spatial})"
            )
        ids += [i for i in s.channel_ids.tolist() if i not in ids]
    col = {cid: j for j, cid in enumerate(ids)}
    values = np.full((len(samples), len(ids), *spatial), np.nan, dtype=np.float32)
    for n, s in enumerate(samples):
        values[n, [col[c] for c in s.channel_ids.tolist()]] = s.values.detach().cpu().numpy()
    rest = (
        ("time",)
        if len(spatial) == 1
        else ("y", "x")
        if len(spatial) == 2
        else tuple(f"dim_{k}" for k in range(len(spatial)))
    )
    keys = np.array([vocab[int(i)].key for i in ids], dtype=object)
    ds = xr.Dataset({"values": (("sample", "channel", *rest), values)}, coords={"channel": keys})
    for name in ("target", "covariates"):
        items = [getattr(s, name) for s in samples]
        if all(x is not None for x in items):
            arr = torch.stack([torch.as_tensor(x) for x in items]).cpu().numpy()
            ds[name] = (("sample", *[f"{name}_{k}" for k in range(arr.ndim - 1)]), arr)
    return ds


def save_zarr(
    data: Sequence[ChannelSample] | xr.DataArray | xr.Dataset,
    path: PathLike,
    *,
    vocab: ChannelVocab | None = None,
    overwrite: bool = False,
) -> Path:
    """Write samples (with ``vocab`` naming their ids) or a DataArray/Dataset to a Zarr store.

    Writes to a temporary sibling directory and renames it into place, so ``path`` never holds
    a half-written store. An existing ``path`` raises ``FileExistsError`` unless ``overwrite``.
    """
    path = Path(path)
    if isinstance(data, xr.DataArray):
        ds = data.to_dataset(name=data.name or "values")
    elif isinstance(data, xr.Dataset):
        ds = data
    else:
        ds = _samples_to_dataset(list(data), vocab)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    for (
        name,
        coord,
    ) in ds.coords.items():  # variable-length strings avoid zarr v3's unstable fixed-width dtype
        if coord.dtype.kind == "U":
            ds = ds.assign_coords({name: coord.astype(object)})
    with atomic_directory(path) as tmp:
        ds.to_zarr(tmp, mode="w-", consolidated=False)
    return path
