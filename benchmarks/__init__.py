"""Benchmarks of chanformer's fast paths against their references, and of the encoders.

``python -m benchmarks run --device cpu|cuda [--quick] [--json out.json]``

For every op the reference and the fast path run in the same process on the same inputs. The fast
path is first checked against the reference (``torch.testing.assert_close`` style tolerances,
flash-linear-attention style); a mismatch makes the row ``FAIL`` and it is not timed. Times are
the minimum over repeats (quick: 3), after a warm-up run (the correctness check) and a memory run
(CUDA synchronised); the minimum is the least-disturbed run on a shared machine.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the inputs; on CPU the peak
resident-set size (``/proc/self/statm``, sampled every 0.5 ms in a thread, after ``malloc_trim``)
above the level before the call -- an approximation (allocator caching can hide reuse).
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Result", "run", "OPS", "ENCODERS"]


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


def _peak_mem_mb(fn: Callable[[], Any], device: torch.device) -> float:
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


def _time_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
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


def _fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], kw: dict[str, Any]) -> Callable[[], Any]:
    def go() -> list[torch.Tensor | None]:
        leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
        out = fn(*leaves, **kw)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()
        return [out.detach(), *(t.grad for t in leaves)]

    return go


def _fwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], kw: dict[str, Any]) -> Callable[[], Any]:
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


def _compare(
    res: Result, ref: Callable[[], Any], fast: Callable[[], Any] | None, device: torch.device, repeats: int,
    atol: float, rtol: float,
) -> Result:
    if fast is None:
        res.status = "n/a"
        ref()  # warm-up
    else:
        res.max_err, ok = _max_err(fast(), ref(), atol, rtol)  # also the warm-up (compilation, allocator)
        if not ok:
            res.status = "FAIL"
            return res
    res.ref_mem_mb = _peak_mem_mb(ref, device)
    res.ref_ms = _time_ms(ref, device, repeats)
    if fast is not None:
        res.fast_mem_mb = _peak_mem_mb(fast, device)
        res.fast_ms = _time_ms(fast, device, repeats)
    return res


def _triton_ok(device: torch.device) -> bool:
    from chanformer.kernels import triton_available

    return device.type == "cuda" and triton_available()


# -- ops -----------------------------------------------------------------------------------------------
def bench_selective_scan(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.nn.selective_scan import selective_scan_chunked, selective_scan_reference

    b, d, n, length = (2, 128, 16, 256) if quick else (4, 512, 16, 1024)
    g = torch.Generator().manual_seed(0)
    u, z = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    delta = torch.randn(b, d, length, generator=g) * 0.5
    # Mamba's initialisation: A = -[1..N] per channel, softplus(bias) log-uniform in [1e-3, 1e-1]
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    dt0 = 1e-3 * 100.0 ** torch.rand(d, generator=g)
    bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    Dv = torch.randn(d, generator=g)
    inputs = [t.to(device) for t in (u, delta, A, B, C, Dv, z, bias)]
    kw = {"delta_softplus": True}

    def args(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda u, dl, A, B, C, Dv, z, bias, **k: fn(u, dl, A, B, C, D=Dv, z=z, delta_bias=bias, **k)

    shape = f"B={b} D={d} N={n} L={length}"
    ref = _fwd_bwd(args(selective_scan_reference), inputs, kw)
    rows = [
        _compare(
            Result("selective_scan fwd", "op", shape, "per-step loop", "chunked torch"),
            _fwd(args(selective_scan_reference), inputs, kw), _fwd(args(selective_scan_chunked), inputs, kw),
            device, repeats, 1e-3, 1e-3,
        ),
        _compare(
            Result("selective_scan fwd+bwd", "op", shape, "per-step loop", "chunked torch"),
            ref, _fwd_bwd(args(selective_scan_chunked), inputs, kw), device, repeats, 1e-3, 1e-3,
        )
    ]
    if _triton_ok(device):
        from chanformer.kernels.selective_scan import selective_scan_triton

        rows.append(_compare(
            Result("selective_scan fwd+bwd", "op", shape, "chunked torch", "triton fwd+bwd"),
            _fwd_bwd(args(selective_scan_chunked), inputs, kw), _fwd_bwd(args(selective_scan_triton), inputs, kw),
            device, repeats, 1e-3, 1e-3,
        ))
    else:
        rows.append(Result("selective_scan fwd+bwd", "op", shape, "chunked torch", "triton fwd+bwd", status="n/a",
                           note="triton kernels need CUDA"))
    return rows


def bench_ragged_attention(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.kernels.ragged_attention import ragged_attention_reference

    b, h, c, p, hd = (4, 4, 8, 32, 32) if quick else (8, 6, 16, 196, 64)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, c * p, hd, generator=g).to(device) for _ in range(3))
    present = torch.arange(c)[None, :] < torch.linspace(2, c, b).long()[:, None]
    key_mask = present[:, :, None].expand(b, c, p).reshape(b, c * p).to(device)
    shape = f"B={b} H={h} C={c} P={p} hd={hd} ({float(present.float().mean()):.0%} real)"
    ref = _fwd_bwd(ragged_attention_reference, [q, k, v, key_mask], {})
    res = Result("ragged_attention fwd+bwd", "op", shape, "SDPA + bool mask", "triton fwd+bwd")
    fast = None
    if _triton_ok(device):
        from chanformer.kernels.ragged_attention import ragged_attention_triton

        fast = _fwd_bwd(ragged_attention_triton, [q, k, v, key_mask], {})
    else:
        res.note = "triton kernels need CUDA"
    return [_compare(res, ref, fast, device, repeats, 2e-4, 1e-3), _flex_row(q, k, v, key_mask, shape, ref, device, repeats)]


def _flex_row(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, shape: str,
    ref: Callable[[], Any], device: torch.device, repeats: int,
) -> Result:
    """SDPA + boolean mask vs FlexAttention with a block mask built from the same key mask:
    forward+backward compiled on CUDA; forward only on CPU, where PyTorch has no FlexAttention
    backward and runs the forward unfused."""
    from chanformer.kernels.ragged_attention import ragged_attention_reference

    on_gpu = device.type == "cuda"
    name = "ragged_attention fwd+bwd" if on_gpu else "ragged_attention fwd"
    res = Result(name, "op", shape, "SDPA + bool mask", "FlexAttention block mask")
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:  # older PyTorch
        res.status, res.note = "n/a", f"FlexAttention unavailable: {e}"
        return res

    def keep(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return key_mask[b, kv_idx]

    n = q.shape[-2]
    block_mask = create_block_mask(keep, q.shape[0], None, n, n, device=str(device))
    attend = torch.compile(flex_attention) if on_gpu else flex_attention
    wrap = _fwd_bwd if on_gpu else _fwd
    fast = wrap(lambda q, k, v: attend(q, k, v, block_mask=block_mask), [q, k, v], {})
    if not on_gpu:
        ref = _fwd(ragged_attention_reference, [q, k, v, key_mask], {})
    with warnings.catch_warnings():  # eager FlexAttention warns that it is unfused on CPU
        warnings.simplefilter("ignore")
        res = _compare(res, ref, fast, device, repeats, 2e-4, 1e-3)
    if not on_gpu:
        res.note = "CPU: forward only, eager (unfused) FlexAttention; its block skipping pays off compiled on GPU"
    return res


def bench_mvpa(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.nn.mvpa import mvpa, relative_channel_index

    b, h, h_kv, t, c, hd = (2, 4, 2, 8, 8, 32) if quick else (4, 12, 4, 32, 32, 64)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, t, c, hd, generator=g)
    k, v = torch.randn(b, h_kv, t, c, hd, generator=g), torch.randn(b, h_kv, t, c, hd, generator=g)
    mask = torch.arange(c)[None, :] < torch.linspace(c // 2, c, b).long()[:, None]
    tabs = [torch.randn(h_kv, t, hd, generator=g), torch.randn(h_kv, c, hd, generator=g)]
    biases = [torch.randn(h_kv, hd, generator=g) * 0.1 for _ in range(3)]
    dev = [x.to(device) for x in (q, k, v, *tabs, relative_channel_index(mask), *biases, mask)]
    kw = dict(content_bias=dev[6], time_bias=dev[7], chan_bias=dev[8], key_mask=dev[9], window=3)
    shape = f"B={b} H={h}/{h_kv} T={t} C={c} hd={hd}"
    rows = []
    for mode, label in ((_fwd, "fwd"), (_fwd_bwd, "fwd+bwd")):
        res = Result(f"mvpa {label}", "op", shape, "reference (torch)", f"triton {label}")
        fast = None
        if _triton_ok(device):
            from chanformer.kernels.mvpa import mvpa_triton

            fast = mode(mvpa_triton, dev[:6], kw)
        else:
            res.note = "triton kernels need CUDA"
        rows.append(_compare(res, mode(mvpa, dev[:6], kw), fast, device, repeats, 2e-4, 1e-3))
    return rows


# -- encoders ------------------------------------------------------------------------------------------
def _encoder_case(name: str, quick: bool) -> tuple[torch.nn.Module, Any, str]:
    from chanformer import ChannelBatch, ChannelSample, create_encoder

    g = torch.Generator().manual_seed(0)
    if name == "softs":
        length, bsz, chans = (96, 16, 7) if quick else (336, 32, 21)
        model = create_encoder("softs_small", seq_len=length)
        samples = [
            ChannelSample(torch.randn(chans - i % 3, length, generator=g), torch.arange(chans - i % 3)) for i in range(bsz)
        ]
        return model, ChannelBatch.collate(samples), f"softs_small B={bsz} C<={chans} L={length}"
    if name == "channelvit":
        size, bsz, chans, depth = (64, 4, 5, 2) if quick else (224, 8, 5, 12)
        model = create_encoder("channelvit_small_p16", img_size=size, depth=depth, num_channels=8)
        samples = [
            ChannelSample(torch.randn(chans - i % 2, size, size, generator=g), torch.arange(chans - i % 2)) for i in range(bsz)
        ]
        return model, ChannelBatch.collate(samples), f"channelvit_small_p16 {size}px depth={depth} B={bsz} C<={chans}"
    if name == "mvpformer":
        seg, bsz, chans = (8, 2, 8) if quick else (32, 4, 32)
        model = create_encoder("mvpformer_test", embed_dim=64, num_heads=4, num_kv_heads=2, mlp_hidden=128,
                               n_positions=max(16, seg), n_channels=max(16, chans))
        samples = [ChannelSample(torch.randn(chans - i, seg * 64, generator=g), torch.arange(chans - i)) for i in range(bsz)]
        return model, ChannelBatch.collate(samples), f"mvpformer d=64 depth=2 B={bsz} T={seg} C<={chans}"
    raise KeyError(name)


def bench_encoder(name: str, device: torch.device, quick: bool, repeats: int) -> list[Result]:
    model, batch, shape = _encoder_case(name, quick)
    model = model.to(device).train()
    batch = batch.to(device) if hasattr(batch, "to") else batch

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(batch)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()

    from chanformer.kernels import use_backend

    def on_torch() -> None:
        with use_backend("torch"):
            step()

    res = Result(f"{name} fwd+bwd", "encoder", shape, "torch path", "auto dispatch (Triton on CUDA)")
    if not _triton_ok(device):
        res.status, res.note = "n/a", "CPU: encoders run their PyTorch path (kernels need CUDA)"
        on_torch()  # warm-up
        res.ref_mem_mb = _peak_mem_mb(on_torch, device)
        res.ref_ms = _time_ms(on_torch, device, repeats)
        return [res]
    on_torch()
    step()  # warm-up both paths (Triton compilation)
    res.ref_mem_mb, res.ref_ms = _peak_mem_mb(on_torch, device), _time_ms(on_torch, device, repeats)
    res.fast_mem_mb, res.fast_ms = _peak_mem_mb(step, device), _time_ms(step, device, repeats)
    return [res]


OPS: dict[str, Callable[[torch.device, bool, int], list[Result]]] = {
    "selective_scan": bench_selective_scan,
    "ragged_attention": bench_ragged_attention,
    "mvpa": bench_mvpa,
}
ENCODERS = ("softs", "channelvit", "mvpformer")


def run(
    device: str = "cpu",
    quick: bool = True,
    ops: list[str] | None = None,
    encoders: list[str] | None = None,
    repeats: int | None = None,
    json_path: str | None = None,
    print_table: bool = True,
) -> list[Result]:
    """Run the benchmarks; ``ops``/``encoders`` select (default all; ``[]`` none). Returns the rows."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run(device='cuda'): CUDA is not available")
    repeats = repeats or (3 if quick else 10)
    torch.manual_seed(0)
    results: list[Result] = []
    for name in OPS if ops is None else ops:
        results += OPS[name](dev, quick, repeats)
    for name in ENCODERS if encoders is None else encoders:
        results += bench_encoder(name, dev, quick, repeats)
    if print_table:
        print_results(results, dev)
    if json_path:
        meta = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "torch": torch.__version__, "quick": quick, "repeats": repeats,
                "memory": "cuda max_memory_allocated" if dev.type == "cuda" else "peak RSS delta (sampled)"}
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "results": [r.to_dict() for r in results]}, f, indent=2)
    return results


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_results(results: list[Result], device: torch.device) -> None:
    from rich.console import Console
    from rich.table import Table

    mem = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS delta, sampled"
    table = Table(title=f"chanformer benchmarks on {device} (memory: {mem})")
    for col in ("op", "shape", "reference", "fast path", "status", "max rel err", "ref ms", "fast ms", "speed-up",
                "ref MiB", "fast MiB", "mem ratio", "note"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.name, r.shape, r.ref, r.fast, r.status, _fmt(r.max_err, ".1e"), _fmt(r.ref_ms, ".1f"), _fmt(r.fast_ms, ".1f"),
            _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""), _fmt(r.ref_mem_mb, ".1f"), _fmt(r.fast_mem_mb, ".1f"),
            _fmt(r.mem_ratio, ".2f"), r.note,
        )
    Console(width=250).print(table)
