"""Encoder benchmarks: one training step (forward + backward) of each encoder, its PyTorch path
(``use_backend("torch")``) against the same step with Triton forced (``use_backend("triton")``: Triton
is opt-in), measured on CUDA only.

Full shapes are each model's realistic setting: SOFTS and GAT on ECL (321 channels x 96 steps),
ChannelViT-S/16 and ChAda-ViT on 8-channel 224 px images with half the channels padded,
MVPFormer-S on 25 five-second segments of 64 channels, MambAttention on 4 s of 16 kHz audio,
DBConformer on BCI IV 2a trials (22 channels x 1000 samples) and ECAPA-TDNN on 4 s of 80-bin fbanks.
Attention dropout is off (the kernels have none; with it the reference runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.measure import Result, peak_mem_mb, time_ms, triton_ok

__all__ = ["ENCODERS", "bench_encoder"]

# which encoders have a kernel on their hot path
_KERNEL = {"channelvit": "ragged attention", "chadavit": "ragged attention", "mvpformer": "MVPA",
           "mambattention": "selective scan"}  # fmt: skip


def _batch(channel_counts: list[int], shape: tuple[int, ...], g: torch.Generator) -> Any:
    """A padded ChannelBatch of samples with the given channel counts (channel ids ``0..n-1``)."""
    from chanformer import ChannelBatch, ChannelSample

    samples = [ChannelSample(torch.randn(n, *shape, generator=g), torch.arange(n)) for n in channel_counts]
    return ChannelBatch.collate(samples)


def _case_softs_gat(name: str, quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer import create_encoder

    length, bsz, chans = (96, 16, 7) if quick else (96, 32, 321)
    variant = {"softs": "softs_small" if quick else "softs", "gat": "gat_test" if quick else "gat"}[name]
    model = create_encoder(variant, seq_len=length)
    counts = [chans - i % 3 for i in range(bsz)]
    return model, (_batch(counts, (length,), g),), f"{variant} B={bsz} C<={chans} L={length}"


def _case_vit(name: str, quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer import create_encoder

    variant = {"channelvit": "channelvit_small_p16", "chadavit": "chadavit_small"}[name]
    if quick:
        size, depth, counts = 64, 2, [5, 4, 5, 4]
    else:  # 8 channel slots, 50% of them padded
        size, depth, counts = 224, 12, [2, 6, 3, 5, 4, 4, 1, 7]
    kw: dict[str, Any] = {"num_channels": 8} if name == "channelvit" else {}
    model = create_encoder(variant, img_size=size, depth=depth, **kw)
    return model, (_batch(counts, (size, size), g),), f"{variant} {size}px depth={depth} B={len(counts)} C<={max(counts)}"


def _case_mvpformer(quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer import create_encoder

    if quick:
        seg, samples, counts = 8, 64, [8, 7]
        model = create_encoder("mvpformer_test", embed_dim=64, num_heads=4, num_kv_heads=2, mlp_hidden=128,
                               n_positions=16, n_channels=16)
        label = "mvpformer d=64 depth=2"
    else:
        seg, samples, counts = 25, 2560, [64, 48]
        model = create_encoder("mvpformer_s", drop_rate=0.0, attn_drop_rate=0.0)
        label = "mvpformer_s"
    return model, (_batch(counts, (seg * samples,), g),), f"{label} B={len(counts)} T={seg} C<={max(counts)}"


def _case_mambattention(quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer.encoders.mambattention import mambattention, mambattention_test

    if quick:
        model, seconds, label = mambattention_test(), 0.5, "mambattention_test"
    else:
        model, seconds, label = mambattention(), 4.0, "mambattention"
    from chanformer.batch import ChannelBatch

    wav = torch.randn(2, 1, int(16000 * seconds), generator=g) * 0.1
    batch = ChannelBatch(wav, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool), sfreq=16000.0)
    frames = wav.shape[-1] // model.config["hop_size"] + 1
    return model, (batch,), f"{label} B=2 {seconds:g} s @ 16 kHz ({frames} frames, STFT included)"


def _case_dbconformer(quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer import create_encoder

    variant, chans, length, bsz = ("dbconformer_test", 4, 64, 8) if quick else ("dbconformer", 22, 1000, 32)
    model = create_encoder(variant)
    return model, (_batch([chans] * bsz, (length,), g),), f"{variant} B={bsz} C={chans} L={length}"


def _case_ecapa(quick: bool, g: torch.Generator) -> tuple[torch.nn.Module, tuple[Any, ...], str]:
    from chanformer import create_encoder

    variant, mels, frames, bsz = ("ecapa_tdnn_test", 20, 100, 4) if quick else ("ecapa_tdnn", 80, 400, 16)
    model = create_encoder(variant)
    return model, (_batch([mels] * bsz, (frames,), g),), f"{variant} B={bsz} {mels} mel x {frames} frames"


_CASES: dict[str, Callable[[bool, torch.Generator], tuple[torch.nn.Module, tuple[Any, ...], str]]] = {
    "softs": lambda quick, g: _case_softs_gat("softs", quick, g),
    "gat": lambda quick, g: _case_softs_gat("gat", quick, g),
    "channelvit": lambda quick, g: _case_vit("channelvit", quick, g),
    "chadavit": lambda quick, g: _case_vit("chadavit", quick, g),
    "mvpformer": _case_mvpformer,
    "mambattention": _case_mambattention,
    "dbconformer": _case_dbconformer,
    "ecapa": _case_ecapa,
}
ENCODERS = tuple(_CASES)


def bench_encoder(name: str, device: torch.device, quick: bool, repeats: int) -> list[Result]:
    """Time and peak memory of one training step of encoder ``name`` (a key of :data:`ENCODERS`)."""
    from chanformer.kernels import use_backend

    model, inputs, shape = _CASES[name](quick, torch.Generator().manual_seed(0))
    model = model.to(device).train()
    inputs = tuple(x.to(device) for x in inputs)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()

    def on_torch() -> None:
        with use_backend("torch"):
            step()

    def on_triton() -> None:
        with use_backend("triton"):
            step()

    kernel = _KERNEL.get(name)
    res = Result(f"{name} fwd+bwd", "encoder", shape, "torch path", "Triton forced",
                 note=f"kernel: {kernel}" if kernel else "no kernel on this path")
    if not triton_ok(device) or kernel is None:
        res.status = "n/a"
        if kernel is not None:
            res.note = f"kernel: {kernel}; CPU runs the PyTorch path (kernels need CUDA)"
        on_torch()  # warm-up
        res.ref_mem_mb, res.ref_ms = peak_mem_mb(on_torch, device), time_ms(on_torch, device, repeats)
        return [res]
    on_torch()
    on_triton()  # warm-up both paths (Triton compilation)
    res.ref_mem_mb, res.ref_ms = peak_mem_mb(on_torch, device), time_ms(on_torch, device, repeats)
    res.fast_mem_mb, res.fast_ms = peak_mem_mb(on_triton, device), time_ms(on_triton, device, repeats)
    return [res]
