"""Kernel dispatch: Triton on CUDA when available, the PyTorch reference otherwise."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from functools import cache
from typing import Literal

import torch

Backend = Literal["triton", "torch"]
_override: list[Backend] = []


@cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def backend(device: torch.device | None = None) -> Backend:
    """The backend ops on ``device`` use: an active :func:`use_backend`, then the
    ``CHANFORMER_KERNELS`` environment variable, then automatic choice.
    """
    if _override:
        choice = _override[-1]
    else:
        env = os.environ.get("CHANFORMER_KERNELS", "auto").lower()
        if env not in ("auto", "triton", "torch"):
            raise ValueError(f"CHANFORMER_KERNELS={env!r}: expected 'auto', 'triton' or 'torch'")
        choice = env if env != "auto" else None  # type: ignore[assignment]
    on_cuda = device is not None and device.type == "cuda"
    if choice == "torch":
        return "torch"
    if choice == "triton":
        if not triton_available():
            raise RuntimeError("CHANFORMER_KERNELS=triton but triton is not installed (pip install 'chanformer[triton]')")
        return "triton"
    # Automatic choice: Triton only on CUDA. The CPU interpreter (TRITON_INTERPRET=1) is for tests
    # and runs only when Triton is forced.
    return "triton" if triton_available() and on_cuda else "torch"


@contextlib.contextmanager
def use_backend(name: Backend) -> Iterator[None]:
    """Force a backend inside a ``with`` block (nestable)."""
    if name not in ("triton", "torch"):
        raise ValueError(f"use_backend({name!r}): expected 'triton' or 'torch'")
    _override.append(name)
    try:
        yield
    finally:
        _override.pop()
