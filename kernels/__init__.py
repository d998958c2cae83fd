"""GPU kernels with PyTorch fallbacks, and the one switch that chooses between them.

``backend()`` returns ``"triton"`` when CUDA and triton are available and ``"torch"``
otherwise; ``CHANFORMER_KERNELS=torch`` (environment) or ``with use_backend("torch"):``
force the readable PyTorch reference, e.g. to compare results.
"""

from chanformer.kernels.config import backend, triton_available, use_backend

__all__ = ["backend", "triton_available", "use_backend"]
