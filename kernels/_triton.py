"""Shared helper for the Triton kernels: the run-Triton-here decision.

``triton.jit`` decides at decoration time whether a kernel is compiled or run by the CPU
interpreter (``TRITON_INTERPRET=1``), so the kernel modules (``_*_triton.py``) are imported lazily,
on the first launch: set ``TRITON_INTERPRET`` before then.
"""

from __future__ import annotations

import os

import torch

from chanformer.kernels import config
from chanformer.kernels.config import backend, triton_available

__all__ = ["interpreting", "use_triton"]


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _forced() -> bool:
    if config._override:
        return config._override[-1] == "triton"
    return os.environ.get("CHANFORMER_KERNELS", "auto").lower() == "triton"


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the dispatch switch says ``"triton"`` and Triton can run on these tensors: CUDA
    tensors, or CPU tensors under ``TRITON_INTERPRET=1`` when Triton is forced
    (``CHANFORMER_KERNELS=triton`` or ``use_backend("triton")``; the interpreter is for tests).
    """
    device = tensors[0].device
    if backend(device) != "triton" or not triton_available():
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return interpreting() and _forced() and all(t.device.type == "cpu" for t in tensors)
