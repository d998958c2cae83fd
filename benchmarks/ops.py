"""Op benchmarks: each fast path against its reference on the same inputs.

Quick shapes are small enough for CI on two CPU cores; the full shapes are the realistic ones the
kernels are for: Mamba's scan over the time axis of MambAttention on 4 s of 16 kHz audio,
ChannelViT-S/16 attention on 8-channel 224 px images with half the channels padded, and MVPA at
MVPFormer-S width (12 heads, 4 key/value heads, head dim 64) on 25 segments of 64 and 128 channels.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.measure import Result, compare, fwd, fwd_bwd, triton_ok

__all__ = ["OPS", "bench_mvpa", "bench_ragged_attention", "bench_selective_scan"]


# -- selective scan ---------------------------------------------------------------------------------------
def _scan_inputs(b: int, d: int, n: int, length: int, device: torch.device) -> list[torch.Tensor]:
    """Mamba-initialised scan inputs ``u, delta, A, B, C, D, z, delta_bias`` (``[B, D, L]`` sequences)."""
    g = torch.Generator().manual_seed(0)
    u, z = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    delta = torch.randn(b, d, length, generator=g) * 0.5
    # Mamba's initialisation: A = -[1..N] per channel, softplus(bias) log-uniform in [1e-3, 1e-1]
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    dt0 = 1e-3 * 100.0 ** torch.rand(d, generator=g)
    bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    Dv = torch.randn(d, generator=g)
    return [t.to(device) for t in (u, delta, A, B, C, Dv, z, bias)]


def _scan_call(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Adapt a ``selective_scan(u, delta, A, B, C, D=, z=, delta_bias=)`` function to positional inputs."""

    def call(u: torch.Tensor, dl: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,  # noqa: N803
             Dv: torch.Tensor, z: torch.Tensor, bias: torch.Tensor, **kw: Any) -> torch.Tensor:
        return fn(u, dl, A, B, C, D=Dv, z=z, delta_bias=bias, **kw)

    return call


def _mamba_ssm_scan() -> Callable[..., torch.Tensor] | None:
    """mamba-ssm's CUDA selective scan when that package is installed (never a dependency)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # type: ignore[import-not-found]
    except ImportError:
        return None
    return selective_scan_fn  # type: ignore[no-any-return]


def bench_selective_scan(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.kernels.selective_scan import selective_scan_chunked, selective_scan_reference

    if quick:
        b, d, n, length = 2, 128, 16, 256
        shape = f"B={b} D={d} N={n} L={length}"
    else:  # MambAttention time axis, one 4 s utterance: F' = 100 frequency rows x 641 STFT frames, d_inner 256
        b, d, n, length = 100, 256, 16, 641
        shape = f"MambAttention 4 s @ 16 kHz (time axis): B*F'={b} D={d} N={n} L={length}"
    inputs = _scan_inputs(b, d, n, length, device)
    kw = {"delta_softplus": True}
    loop, chunked = _scan_call(selective_scan_reference), _scan_call(selective_scan_chunked)
    rows = [
        compare(Result("selective_scan fwd", "op", shape, "per-step loop", "chunked torch"),
                fwd(loop, inputs, kw), fwd(chunked, inputs, kw), device, repeats, 1e-3, 1e-3),
        compare(Result("selective_scan fwd+bwd", "op", shape, "per-step loop", "chunked torch"),
                fwd_bwd(loop, inputs, kw), fwd_bwd(chunked, inputs, kw), device, repeats, 1e-3, 1e-3),
    ]
    if not triton_ok(device):
        rows.append(Result("selective_scan fwd+bwd", "op", shape, "chunked torch", "triton fwd+bwd", status="n/a",
                           note="triton kernels need CUDA"))
        return rows
    from chanformer.kernels.selective_scan import selective_scan_triton

    triton_scan = fwd_bwd(_scan_call(selective_scan_triton), inputs, kw)
    rows.append(compare(Result("selective_scan fwd+bwd", "op", shape, "chunked torch", "triton fwd+bwd"),
                        fwd_bwd(chunked, inputs, kw), triton_scan, device, repeats, 1e-3, 1e-3))
    mamba_ssm = _mamba_ssm_scan()
    res = Result("selective_scan fwd+bwd", "op", shape, "mamba-ssm CUDA", "triton fwd+bwd",
                 note="target: triton >= 0.5x mamba-ssm")
    if mamba_ssm is None:
        res.status, res.note = "n/a", "mamba-ssm not installed"
        rows.append(res)
    else:
        rows.append(compare(res, fwd_bwd(_scan_call(mamba_ssm), inputs, kw), triton_scan, device, repeats, 1e-3, 1e-3))
    return rows


# -- ragged-channel attention ----------------------------------------------------------------------------
def bench_ragged_attention(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.kernels.ragged_attention import ragged_attention_reference

    g = torch.Generator().manual_seed(0)
    if quick:
        b, h, c, p, hd = 4, 4, 8, 32, 32
        counts = torch.linspace(2, c, b).long()
        label = ""
    else:  # ChannelViT-S/16 on 8-channel 224 px images (196 patches per channel), half the channels padded
        b, h, c, p, hd = 8, 6, 8, 196, 64
        counts = torch.tensor([2, 6, 3, 5, 4, 4, 1, 7])
        label = "ChannelViT-S/16 8ch 224px: "
    q, k, v = (torch.randn(b, h, c * p, hd, generator=g).to(device) for _ in range(3))
    present = torch.arange(c)[None, :] < counts[:, None]
    key_mask = present[:, :, None].expand(b, c, p).reshape(b, c * p).to(device)
    shape = f"{label}B={b} H={h} C={c} P={p} hd={hd} ({float(present.float().mean()):.0%} real)"
    ref = fwd_bwd(ragged_attention_reference, [q, k, v, key_mask], {})
    res = Result("ragged_attention fwd+bwd", "op", shape, "SDPA + bool mask", "triton fwd+bwd",
                 note="target on GPU at 50% padding: >= 1.6x")
    fast = None
    if triton_ok(device):
        from chanformer.kernels.ragged_attention import ragged_attention_triton

        fast = fwd_bwd(ragged_attention_triton, [q, k, v, key_mask], {})
    else:
        res.note = "triton kernels need CUDA"
    return [compare(res, ref, fast, device, repeats, 2e-4, 1e-3), _flex_row(q, k, v, key_mask, shape, ref, device, repeats)]


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
    wrap = fwd_bwd if on_gpu else fwd
    fast = wrap(lambda q, k, v: attend(q, k, v, block_mask=block_mask), [q, k, v], {})
    if not on_gpu:
        ref = fwd(ragged_attention_reference, [q, k, v, key_mask], {})
    with warnings.catch_warnings():  # eager FlexAttention warns that it is unfused on CPU
        warnings.simplefilter("ignore")
        res = compare(res, ref, fast, device, repeats, 2e-4, 1e-3)
    if not on_gpu:
        res.note = "CPU: forward only, eager (unfused) FlexAttention; its block skipping pays off compiled on GPU"
    return res


# -- MVPA --------------------------------------------------------------------------------------------------
def _mvpa_inputs(
    b: int, h: int, h_kv: int, t: int, c: int, hd: int, window: int, device: torch.device
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Positional ``q, k, v, time_keys, chan_keys, chan_index`` and keyword inputs of one MVPA call;
    the batch's samples hold from half to all of the ``c`` channels."""
    from chanformer.kernels.mvpa import relative_channel_index

    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, t, c, hd, generator=g)
    k, v = torch.randn(b, h_kv, t, c, hd, generator=g), torch.randn(b, h_kv, t, c, hd, generator=g)
    mask = torch.arange(c)[None, :] < torch.linspace(c // 2, c, b).long()[:, None]
    tables = [torch.randn(h_kv, t, hd, generator=g), torch.randn(h_kv, c, hd, generator=g)]
    biases = [torch.randn(h_kv, hd, generator=g) * 0.1 for _ in range(3)]
    pos = [x.to(device) for x in (q, k, v, *tables, relative_channel_index(mask))]
    content, time_bias, chan_bias = (x.to(device) for x in biases)
    kw = dict(content_bias=content, time_bias=time_bias, chan_bias=chan_bias, key_mask=mask.to(device), window=window)
    return pos, kw


def _first_call_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call, including any compilation it triggers."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def _mvpa_gpu_rows(
    shape: str, pos: list[torch.Tensor], kw: dict[str, Any], dims: tuple[int, ...], device: torch.device, repeats: int
) -> list[Result]:
    """CUDA only: our forward against the Flash-MVPA approach (:mod:`benchmarks.flash_mvpa`), and the
    cost of the first call after the channel count changes (compile-time constants recompile)."""
    from benchmarks.flash_mvpa import flash_mvpa_baseline
    from chanformer.kernels.mvpa import mvpa_triton

    rows = [compare(Result("mvpa fwd", "op", shape, "Flash-MVPA approach", "triton fwd"),
                    fwd(flash_mvpa_baseline, pos, kw), fwd(mvpa_triton, pos, kw), device, repeats, 2e-4, 1e-3)]
    b, h, h_kv, t, c, hd, window = dims
    new_pos, new_kw = _mvpa_inputs(b, h, h_kv, t, c - 1, hd, window, device)  # a channel count not seen yet
    res = Result("mvpa fwd, first call at a new channel count", "op", shape.replace(f"C={c}", f"C={c - 1}"),
                 "Flash-MVPA approach", "triton fwd", note="includes compilation: T and C are constexprs in the baseline")
    res.ref_ms = _first_call_ms(fwd(flash_mvpa_baseline, new_pos, new_kw), device)
    res.fast_ms = _first_call_ms(fwd(mvpa_triton, new_pos, new_kw), device)
    return [*rows, res]


def bench_mvpa(device: torch.device, quick: bool, repeats: int) -> list[Result]:
    from chanformer.kernels.mvpa import mvpa_reference

    if quick:
        configs = [(2, 4, 2, 8, 8, 32, 3)]
    else:  # MVPFormer-S width on 25 segments of 64 and of 128 channels (memory should double, not quadruple)
        configs = [(2, 12, 4, 25, 64, 64, 10), (2, 12, 4, 25, 128, 64, 10)]
    rows = []
    for dims in configs:
        b, h, h_kv, t, c, hd, window = dims
        pos, kw = _mvpa_inputs(*dims, device)
        shape = f"B={b} H={h}/{h_kv} T={t} C={c} hd={hd} W={window}"
        for mode, label in ((fwd, "fwd"), (fwd_bwd, "fwd+bwd")):
            res = Result(f"mvpa {label}", "op", shape, "reference (torch)", f"triton {label}")
            fast = None
            if triton_ok(device):
                from chanformer.kernels.mvpa import mvpa_triton

                fast = mode(mvpa_triton, pos, kw)
                if label == "fwd+bwd":
                    res.note = "target on GPU: >= 2x"
            else:
                res.note = "triton kernels need CUDA"
            rows.append(compare(res, mode(mvpa_reference, pos, kw), fast, device, repeats, 2e-4, 1e-3))
        if triton_ok(device):
            rows += _mvpa_gpu_rows(shape, pos, kw, dims, device, repeats)
        else:
            rows.append(Result("mvpa fwd", "op", shape, "Flash-MVPA approach", "triton fwd", status="n/a",
                               note="triton kernels need CUDA"))
    return rows


OPS: dict[str, Callable[[torch.device, bool, int], list[Result]]] = {
    "selective_scan": bench_selective_scan,
    "ragged_attention": bench_ragged_attention,
    "mvpa": bench_mvpa,
}
