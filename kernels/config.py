"""The one switch that chooses between the Triton kernels and the PyTorch references.

Triton is **opt-in**: :func:`backend` returns ``"torch"`` unless Triton is forced, by
``CHANFORMER_KERNELS=triton`` in the environment or inside ``with use_backend("triton"):``. No kernel
has run compiled on a GPU yet (they are tested under the CPU interpreter), so nothing picks Triton
on its own, on CUDA either; the automatic choice returns once the kernel tests have passed compiled
on a GPU (``docs/performance.md``, "Triton status").

The op dispatch functions (:func:`chanformer.kernels.mvpa.mvpa`,
:func:`chanformer.kernels.ragged_attention.ragged_attention`,
:func:`chanformer.kernels.selective_scan.selective_scan`) ask :func:`use_triton` for their tensors;
nothing else decides.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from functools import cache
from typing import Literal

import torch

__all__ = ["Backend", "backend", "forced_backend", "interpreting", "triton_available", "use_backend", "use_triton"]

Backend = Literal["triton", "torch"]
ENV = "CHANFORMER_KERNELS"
_ENV_VALUES = ("auto", "triton", "torch")  # "auto" (the default) means "torch" while Triton is opt-in
_forced: list[Backend] = []  # the use_backend() stack, innermost last


@cache
def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``, read by triton at import)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def forced_backend() -> Backend | None:
    """The backend forced by the innermost active :func:`use_backend`, else by ``CHANFORMER_KERNELS``
    (``"triton"`` or ``"torch"``), else ``None`` (nothing forced; ``"auto"`` or unset).

    Raises:
        ValueError: ``CHANFORMER_KERNELS`` holds anything but ``auto``, ``triton`` or ``torch``.
    """
    if _forced:
        return _forced[-1]
    env = os.environ.get(ENV, "auto").lower()
    if env not in _ENV_VALUES:
        raise ValueError(f"{ENV}={env!r}: expected 'auto', 'triton' or 'torch'")
    return None if env == "auto" else env  # type: ignore[return-value]


def backend(device: torch.device | None = None) -> Backend:
    """The backend the ops use: ``"triton"`` only when forced (:func:`forced_backend`), ``"torch"`` otherwise.

    Args:
        device: the tensors' device. Unused while Triton is opt-in; kept for the automatic choice
            (Triton on CUDA) that returns once the kernels have passed their tests compiled on a GPU.

    Raises:
        RuntimeError: Triton is forced but not installed.
    """
    del device
    choice = forced_backend()
    if choice == "triton":
        if not triton_available():
            raise RuntimeError(f"{ENV}=triton but triton is not installed (pip install 'chanformer[triton]')")
        return "triton"
    return "torch"


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether an op should launch its Triton kernel on ``tensors``: :func:`backend` says ``"triton"``
    and every tensor is on CUDA, or every tensor is on the CPU and Triton runs in its interpreter
    (``TRITON_INTERPRET=1``: the tests). Mixed or other devices take the PyTorch path.
    """
    if not tensors or backend(tensors[0].device) != "triton":
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return interpreting() and all(t.device.type == "cpu" for t in tensors)


@contextlib.contextmanager
def use_backend(name: Backend) -> Iterator[None]:
    """Force ``name`` (``"triton"`` or ``"torch"``) inside a ``with`` block; blocks nest, the innermost wins."""
    if name not in ("triton", "torch"):
        raise ValueError(f"use_backend({name!r}): expected 'triton' or 'torch'")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()
