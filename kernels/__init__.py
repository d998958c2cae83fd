"""Kernels, one package per operation, each beside its PyTorch reference (``README.md``).

* :mod:`chanformer.kernels.mvpa` -- multi-variate parallel attention (MVPFormer);
* :mod:`chanformer.kernels.ragged_attention` -- attention over padded channel tokens;
* :mod:`chanformer.kernels.selective_scan` -- Mamba's S6 recurrence.

Each package holds ``reference.py`` (the readable float32 PyTorch reference), ``triton.py`` (the
Triton kernels, imported on the first launch), ``autograd.py`` (the launchers ``<op>_fwd`` /
``<op>_bwd`` and the autograd Function) and, in its ``__init__``, the one dispatch function named
after the op, which validates the inputs and picks the implementation.

The switch (:mod:`chanformer.kernels.config`): :func:`backend` is ``"torch"`` unless Triton is forced
with ``CHANFORMER_KERNELS=triton`` or ``with use_backend("triton"):``. Triton is opt-in until the
kernel tests have passed compiled on a GPU.

This package imports nothing from the rest of chanformer: blocks (:mod:`chanformer.nn`) import it.
"""

from chanformer.kernels.config import backend, forced_backend, triton_available, use_backend

__all__ = ["backend", "forced_backend", "triton_available", "use_backend"]
