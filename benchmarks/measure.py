"""Measurement for the benchmarks: one result row, timing, peak memory, and the
check-then-time comparison of a fast path against its reference.

Times are the minimum over repeats, after a warm-up run (the correctness check) and a memory run
(CUDA synchronised); the minimum is the least-disturbed run on a shared machine. Peak memory: on
CUDA ``torch.cuda.max_memory_allocated`` above the inputs; on CPU the peak resident-set size
(``/proc/self/statm``, sampled every 0.5 ms in a thread, after ``malloc_trim``) above the level
before the call -- an approximation (allocator caching can hide reuse).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Result", "compare", "fwd", "fwd_bwd", "peak_mem_mb", "time_ms", "triton_ok"]


@dataclass
class Result:
    name: str
    kind: str  # "op" or "encoder"
    shape: str
    ref: str
    fast: str
    status: str = "ok"  # ok | FAIL | n/a
    max_err: float | None = None
    ref_ms: float | None = None
    fast_ms: float | None = None
    ref_mem_mb: float | None = None
    fast_mem_mb: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return self.ref_ms / self.fast_ms if self.ref_ms and self.fast_ms else None

    @property
    def mem_ratio(self) -> float | None:
        return self.ref_mem_mb / self.fast_mem_mb if self.ref_mem_mb and self.fast_mem_mb else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"speedup": self.speedup, "mem_ratio": self.mem_ratio}


# -- measurement ---------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the RSS peak of the next call is its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_mem_mb(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    _malloc_trim()
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        stop.set()
        thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return max(0.0, (peak[0] - base) / 2**20)


def time_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Minimum wall time over ``repeats`` calls; the caller has run ``fn`` once already (warm-up)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)  # the least-disturbed run: robust on a shared machine


def fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], kw: dict[str, Any]) -> Callable[[], Any]:
    """A closure running ``fn(*inputs, **kw)`` forward and backward (loss: mean square of the output);
    it returns the output and the gradients of the floating-point positional inputs."""
    def go() -> list[torch.Tensor | None]:
        leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
        out = fn(*leaves, **kw)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()
        return [out.detach(), *(t.grad for t in leaves)]

    return go


def fwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], kw: dict[str, Any]) -> Callable[[], Any]:
    """A closure running ``fn(*inputs, **kw)`` without autograd; it returns ``[output]``."""
    def go() -> list[torch.Tensor]:
        with torch.no_grad():
            return [fn(*inputs, **kw)]

    return go


def _max_err(a: list[Any], b: list[Any], atol: float, rtol: float) -> tuple[float, bool]:
    worst, ok = 0.0, True
    for x, y in zip(a, b):
        if x is None or y is None:
            ok = ok and (x is None) == (y is None)
            continue
        x, y = x.float(), y.float()
        err = (x - y).abs()
        if err.numel():  # reported relative to the tensor's scale
            worst = max(worst, float(err.max()) / max(1.0, float(y.abs().max())))
        ok = ok and bool((err <= atol + rtol * y.abs()).all())
    return worst, ok


def compare(
    res: Result, ref: Callable[[], Any], fast: Callable[[], Any] | None, device: torch.device, repeats: int,
    atol: float, rtol: float,
) -> Result:
    """Fill ``res``: check ``fast()`` against ``ref()`` (``|err| <= atol + rtol |ref|`` on every
    returned tensor; a mismatch gives status ``FAIL`` and no timing), then measure peak memory and
    time of each. ``fast=None``: only the reference is measured (status ``n/a``)."""
    if fast is None:
        res.status = "n/a"
        ref()  # warm-up
    else:
        res.max_err, ok = _max_err(fast(), ref(), atol, rtol)  # also the warm-up (compilation, allocator)
        if not ok:
            res.status = "FAIL"
            return res
    res.ref_mem_mb = peak_mem_mb(ref, device)
    res.ref_ms = time_ms(ref, device, repeats)
    if fast is not None:
        res.fast_mem_mb = peak_mem_mb(fast, device)
        res.fast_ms = time_ms(fast, device, repeats)
    return res


def triton_ok(device: torch.device) -> bool:
    """Whether the Triton kernels can run (compiled) on ``device``."""
    from chanformer.kernels import triton_available

    return device.type == "cuda" and triton_available()
