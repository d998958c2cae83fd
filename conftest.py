"""Root pytest configuration: the Triton CPU interpreter for the ``interpreter`` tests.

``triton.jit`` (also inside triton's own standard library) decides at import time whether kernels
are compiled or interpreted, so ``TRITON_INTERPRET=1`` must be set before anything (lightning,
torch._dynamo) imports triton. It is set here on machines without CUDA; the kernels use the
interpreter only when Triton is forced (``CHANFORMER_KERNELS=triton`` / ``use_backend("triton")``),
so the rest of the suite keeps running the PyTorch paths.
"""

import os

# Bitwise-reproducible MKL FFTs: reference fixtures whose inputs put STFT phases exactly at +-pi
# (MambAttention) only match when rounding does not depend on the CPU's vector width.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

# One intra-op thread for the suite and everything it starts (CLI subprocesses, notebook kernels,
# DDP workers): the tests run tiny tensors, where a second thread gains little on a quiet machine,
# and on a loaded 2-core machine OpenMP threads that wait for each other made single tests 10-40x
# slower (the microscopy notebook took 80 s instead of 10). A caller's own setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import torch  # noqa: E402

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
