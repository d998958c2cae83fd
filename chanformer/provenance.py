"""Where a sample came from: turn "batch 3, sample 5" into a file and a line, window or image.

A dataset may answer ``describe_sample(index) -> str`` (the EEG window and image manifest
datasets do); ``torch.utils.data.Subset`` and ``ConcatDataset`` are followed to the dataset
that holds the sample; ``.ts``-backed datasets (``data.path``, ``data.lines``, ``indices``) give
file and line. Otherwise the sample index and whatever source path the dataset stores are named.
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, IterableDataset, Subset

__all__ = ["describe_sample", "find_nonfinite_sample", "holds_nonfinite"]

#: Attributes naming a dataset's source, tried in this order.
_SOURCE_ATTRS = ("path", "source", "sources", "paths", "files", "root", "data_root", "manifest", "store")

#: At most this many samples are read when the batch position cannot be mapped to an index.
SCAN_LIMIT = 10_000


def _source_of(dataset: Any) -> str | None:
    for attr in _SOURCE_ATTRS:
        value = getattr(dataset, attr, None)
        if isinstance(value, (str, Path)) and str(value):
            return str(value)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
            shown = ", ".join(str(v) for v in value[:3])
            return shown + (f" (+{len(value) - 3} more)" if len(value) > 3 else "")
        inner = getattr(value, "path", None)  # a store object
        if isinstance(inner, (str, Path)):
            return str(inner)
    return None


def describe_sample(dataset: Any, index: int) -> str:
    """Where sample ``index`` of ``dataset`` comes from, as precisely as the dataset knows."""
    index = int(index)
    describe = getattr(dataset, "describe_sample", None)
    if callable(describe):
        return str(describe(index))
    if isinstance(dataset, Subset):
        return describe_sample(dataset.dataset, int(dataset.indices[index]))
    if isinstance(dataset, ConcatDataset):
        part = bisect.bisect_right(dataset.cumulative_sizes, index)
        start = dataset.cumulative_sizes[part - 1] if part else 0
        return describe_sample(dataset.datasets[part], index - start)
    data, indices = getattr(dataset, "data", None), getattr(dataset, "indices", None)
    path, lines = getattr(data, "path", None), getattr(data, "lines", None)
    if path is not None and lines and indices is not None:
        case = int(indices[index])
        return f"{path}, line {lines[case]} (case {case})"
    source = _source_of(dataset)
    where = f" of {source}" if source else ""
    return f"sample {index} of {type(dataset).__name__}{where} (it records no file per sample)"


def holds_nonfinite(sample: Any) -> bool:
    """True when a sample's ``values`` (or ``features``) hold NaN or inf."""
    for attr in ("values", "features"):
        value = getattr(sample, attr, None)
        if isinstance(value, torch.Tensor):
            return bool(value.is_floating_point() and not torch.isfinite(value).all())
        if isinstance(value, np.ndarray):
            return bool(np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all())
    return False


def find_nonfinite_sample(loader: Any, batch_idx: int | None, position: int) -> tuple[Any, int | None, bool]:
    """``(dataset, index, searched_all)`` of the sample at ``position`` of batch ``batch_idx``.

    The loader's batch sampler is replayed to map the position to a dataset index, and that
    sample is read again to confirm it holds the non-finite value; when it does not (a random
    sampler, an augmentation), the dataset is searched (up to :data:`SCAN_LIMIT` samples) for
    the first sample that does. ``index`` is None when no stored sample holds one;
    ``searched_all`` says whether the whole dataset was searched.
    """
    dataset = getattr(loader, "dataset", None)
    if dataset is None or isinstance(dataset, IterableDataset):
        return dataset, None, False
    batches = getattr(loader, "batch_sampler", None)
    if batches is not None and batch_idx is not None:
        try:
            indices = next(itertools.islice(iter(batches), batch_idx, None))
            candidate = int(list(indices)[position])
            if holds_nonfinite(dataset[candidate]):
                return dataset, candidate, False
        except Exception:  # noqa: BLE001 - a best-effort replay; the search below still runs
            pass
    try:
        n = len(dataset)
    except TypeError:
        return dataset, None, False
    for i in range(min(n, SCAN_LIMIT)):
        if holds_nonfinite(dataset[i]):
            return dataset, i, False
    return dataset, None, n <= SCAN_LIMIT
