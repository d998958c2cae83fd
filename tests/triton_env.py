"""Where the Triton kernel tests run: the CPU interpreter (TRITON_INTERPRET=1, set by the root
conftest.py before triton is imported), or the GPU when there is one; the module is skipped otherwise."""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
INTERPRET: bool = bool(triton.knobs.runtime.interpret)
DEVICE = "cpu" if INTERPRET else "cuda"
if not INTERPRET and not torch.cuda.is_available():
    pytest.skip(
        "needs CUDA, or TRITON_INTERPRET=1 before triton is imported (the root conftest.py sets it without CUDA)",
        allow_module_level=True,
    )
MARKS = [pytest.mark.interpreter] if INTERPRET else []

