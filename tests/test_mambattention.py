from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from chanformer.encoders.mambattention import MambAttention, mambattention, mambattention_test
from chanformer.hub import load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.kernels.selective_scan import (
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
    selective_scan_stepwise,
)
from chanformer.nn.mamba import BidirectionalMamba, Mamba
from tests.conftest import reference_path

_CHECK = """
import json, sys
from chanformer.hub import check_reference_fixture
r = check_reference_fixture(sys.argv[1])
print(json.dumps({"passed": r.passed, "checks": [[c.name, c.passed, c.max_abs] for c in r.checks]}))
"""


def test_reference_fixture():
    """The fixture's STFT came from MKL's conditional-numerical-reproducibility code path: frame 0
    of a centred, reflect-padded STFT is exactly real, so the sign of its +-pi phases (a model
    input) is FFT rounding noise. ``MKL_CBWR=COMPATIBLE`` must be set before the first FFT of a
    process, hence the subprocess. The model itself is checked in-process below."""
    path = reference_path("mambattention")
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHECK, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["passed"], report


def _fixture():
    path = reference_path("mambattention")
    meta = json.loads((path / "fixture.json").read_text())
    conv = get_converter("mambattention")
    model = conv.load(load_file(str(path / "weights.safetensors")), meta["constructor_kwargs"])
    return meta, model, load_file(str(path / "io.safetensors"))


def test_model_on_fixture_spectrogram():
    meta, model, io = _fixture()
    with torch.no_grad():
        mag, pha, com = model.forward_spectrum(io["output.noisy_mag"], io["output.noisy_pha"])
    for name, ours in (("denoised_mag", mag), ("denoised_com", com)):
        ref = io[f"output.{name}"]
        assert ((ours - ref).abs() <= meta["atol"] + meta["rtol"] * ref.abs()).all(), (name, (ours - ref).abs().max())
    wav = io["input.noisy_wav"]
    norm = torch.sqrt(wav.shape[-1] / wav.pow(2).sum())
    torch.testing.assert_close(model.istft(mag, pha, wav.shape[-1]) / norm, io["output.denoised_wav"], atol=1e-4, rtol=1e-4)


# -- selective scan ----------------------------------------------------------------------------------
def _scan_inputs(b=3, d=5, length=37, n=7, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    a = -torch.exp(r(d, n)) * scale
    return [r(b, d, length), r(b, d, length) * 0.5, a, r(b, n, length), r(b, n, length), r(d), r(b, d, length), r(d)]


@pytest.mark.parametrize("chunk", [1, 4, 7, 16, 64])
def test_chunked_scan_matches_reference(chunk):
    u, dt, a, bb, cc, d, z, bias = _scan_inputs()
    y_ref, h_ref = selective_scan_reference(u, dt, a, bb, cc, d, z, bias, True, return_last_state=True)
    y, h = selective_scan_chunked(u, dt, a, bb, cc, d, z, bias, True, return_last_state=True, chunk_size=chunk)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    plain = selective_scan_chunked(u, F.softplus(dt), a, bb, cc, chunk_size=chunk)
    torch.testing.assert_close(plain, selective_scan_reference(u, F.softplus(dt), a, bb, cc), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tile", [None, 1, 70])  # one tile; a tile per batch element; two elements per tile
def test_stepwise_scan_matches_reference(dtype, tile):
    u, dt, a, bb, cc, d, z, bias = _scan_inputs(dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    y_ref, h_ref = selective_scan_reference(u, dt, a, bb, cc, d, z, bias, True, return_last_state=True)
    y, h = selective_scan_stepwise(u, dt, a, bb, cc, d, z, bias, True, return_last_state=True, tile_elements=tile)
    assert y.dtype == dtype and y.is_contiguous()
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(h, h_ref, atol=tol, rtol=tol)
    # strided inputs (transposed views, as Mamba passes them), no extras, no softplus
    ut, dtt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (u, F.softplus(dt)))
    plain = selective_scan_stepwise(ut, dtt, a, bb, cc, tile_elements=tile)
    torch.testing.assert_close(plain, selective_scan_reference(u, F.softplus(dt), a, bb, cc), atol=tol, rtol=tol)
    empty = selective_scan_stepwise(u[..., :0], dt[..., :0], a, bb[..., :0], cc[..., :0], d, z[..., :0], bias, True)
    assert empty.shape == (3, 5, 0)


def test_stepwise_scan_is_inference_only_and_auto_picks_it(monkeypatch):
    from chanformer.kernels import selective_scan as mod

    inputs = _scan_inputs(b=4, d=64, length=20, n=16)  # B * D * N = 4096 state values
    leaf = inputs[0].clone().requires_grad_()
    with pytest.raises(RuntimeError, match="inference-only"):
        selective_scan_stepwise(leaf, *inputs[1:])
    picked = []
    real = mod.selective_scan_stepwise
    monkeypatch.setattr(mod, "selective_scan_stepwise", lambda *a: picked.append(1) or real(*a))
    with torch.no_grad():
        y = selective_scan(*inputs, delta_softplus=True)  # inference, large state: stepwise
    assert picked == [1]
    y_grad = selective_scan(leaf, *inputs[1:], delta_softplus=True)  # gradients needed: chunked
    small = selective_scan(*_scan_inputs(), delta_softplus=True)  # small state: chunked
    assert picked == [1] and y_grad.requires_grad and small.shape == (3, 5, 37)
    torch.testing.assert_close(y, y_grad.detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="inference-only"):
        selective_scan(leaf, *inputs[1:], implementation="stepwise")


def test_model_inference_same_with_stepwise_and_chunked_scan():
    torch.manual_seed(0)
    model = mambattention_test(hid_feature=32).eval()  # freq axis: B*T x 64 x 4 = stepwise when inferring
    wav = torch.randn(1, 4000) * 0.1
    with torch.inference_mode():
        fast = model.enhance(wav)
        for m in model.modules():
            if isinstance(m, Mamba):
                m.scan = "chunked"
        chunked = model.enhance(wav)
    torch.testing.assert_close(fast, chunked, atol=1e-5, rtol=1e-4)


def test_chunked_scan_strong_decays():
    # chunks whose total log-decay overflows exp() in float32 -> halving, then the float64 path
    for scale in (20.0, 400.0):
        u, dt, a, bb, cc, d, z, bias = _scan_inputs(length=50, scale=scale)
        y_ref = selective_scan_reference(u, dt + 2, a, bb, cc, d, z, bias, True)
        y = selective_scan_chunked(u, dt + 2, a, bb, cc, d, z, bias, True)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_scan_gradients(dtype):
    inputs = [t.requires_grad_() for t in _scan_inputs(2, 3, 29, 5, dtype)]
    weights = torch.randn(2, 3, 29, dtype=dtype)
    grads = []
    for fn, kw in ((selective_scan_reference, {}), (selective_scan_chunked, {"chunk_size": 8})):
        y = fn(*inputs[:5], inputs[5], inputs[6], inputs[7], True, **kw)
        grads.append(torch.autograd.grad((y * weights).sum(), inputs))
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for g_ref, g in zip(*grads):
        torch.testing.assert_close(g, g_ref, atol=tol, rtol=tol)


def test_scan_bad_shapes():
    u, dt, a, bb, cc, *_ = _scan_inputs()
    with pytest.raises(ValueError, match="A"):
        selective_scan_chunked(u, dt, a[:2], bb, cc)
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_chunked(u, dt, a, bb, cc, chunk_size=0)


def test_chunked_scan_is_faster_than_loop():
    u, dt, a, bb, cc, d, z, bias = _scan_inputs(2, 16, 2048, 8)
    a = -torch.arange(1.0, 9.0).repeat(16, 1)  # mamba-ssm's initial A and step sizes ~ 0.001-0.1
    bias = torch.linspace(-7.0, -2.0, 16)

    def best(fn):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn(u, dt, a, bb, cc, d, z, bias, True)
            times.append(time.perf_counter() - t)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as the project's tests run: no thread-pool contention
    try:
        assert best(selective_scan_chunked) * 2 < best(selective_scan_reference)
    finally:
        torch.set_num_threads(threads)


# -- Mamba block -------------------------------------------------------------------------------------
def _mamba_statement(sd, x, d_state, d_conv):
    """mamba-ssm's Mamba mixer (slow path), stated from its parameter layout."""
    length = x.shape[1]
    xz = F.linear(x, sd["in_proj.weight"]).transpose(1, 2)
    xi, z = xz.chunk(2, 1)
    xi = F.silu(F.conv1d(xi, sd["conv1d.weight"], sd["conv1d.bias"], padding=d_conv - 1, groups=xi.shape[1])[..., :length])
    dbl = F.linear(xi.transpose(1, 2), sd["x_proj.weight"])
    rank = dbl.shape[-1] - 2 * d_state
    dt = (dbl[..., :rank] @ sd["dt_proj.weight"].T).transpose(1, 2)
    b, c = dbl[..., rank : rank + d_state].transpose(1, 2), dbl[..., rank + d_state :].transpose(1, 2)
    y = selective_scan_reference(xi, dt, -torch.exp(sd["A_log"]), b, c, sd["D"], z, sd["dt_proj.bias"], True)
    return F.linear(y.transpose(1, 2), sd["out_proj.weight"])


def test_mamba_block_matches_statement_and_is_causal():
    m = Mamba(12, d_state=6, d_conv=3, expand=1.5)
    names = {n.split(".")[0] for n, _ in m.named_parameters()}
    assert names == {"in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj"}
    x = torch.randn(2, 23, 12)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(y, _mamba_statement(m.state_dict(), x, 6, 3), atol=1e-5, rtol=1e-5)
        m.scan = "reference"
        torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-5)
        x2 = x.clone()
        x2[:, 15:] = 3.0
        torch.testing.assert_close(m(x2)[:, :15], y[:, :15], atol=1e-5, rtol=1e-5)
    bi = BidirectionalMamba(12, d_state=4)
    out = bi(x)
    assert out.shape == (2, 23, 24)
    torch.testing.assert_close(out[..., 12:], bi.backward_blocks[0](x.flip(1)).flip(1))


# -- converter, model behaviour ----------------------------------------------------------------------
OTHER = {
    "cfg": {
        "model_cfg": {
            "hid_feature": 8,
            "compress_factor": 0.5,
            "num_tfmamba": 1,
            "d_state": 4,
            "d_conv": 3,
            "expand": 1.5,
            "norm_epsilon": 1e-6,
            "beta": 1.5,
            "input_channel": 2,
            "output_channel": 1,
        },
        "stft_cfg": {"sampling_rate": 8000, "n_fft": 64, "hop_size": 16, "win_size": 48},
    }
}


_ORIGINAL_ATTN = {  # ours -> nn.MultiheadAttention's names in the original
    ".attn.qkv.weight": ".attn.in_proj_weight",
    ".attn.qkv.bias": ".attn.in_proj_bias",
    ".attn.proj.": ".attn.out_proj.",
}


def _to_original(model: MambAttention) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("blocks.", "TFMambAttention.", 1) if k.startswith("blocks.") else k
        for ours, theirs in _ORIGINAL_ATTN.items():
            k = k.replace(ours, theirs)
        out[k] = v
    return out


def test_converter_other_configuration():
    conv = get_converter("mambattention")
    src = conv.build(OTHER)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = _to_original(src)
    assert state["mask_decoder.lsigmoid.slope"].shape == (33, 1)
    assert state["TFMambAttention.0.time_mamba.forward_blocks.0.mixer.in_proj.weight"].shape == (24, 8)
    model = conv.load(state, OTHER)
    wav = torch.randn(2, 700)
    out = conv.run(model, {"noisy_wav": wav}, {})
    assert out["denoised_wav"].shape == (2, 700) and out["denoised_com"].shape == (2, 33, 44, 2)
    with torch.no_grad():
        torch.testing.assert_close(out["denoised_wav"], src.eval().enhance(wav))
        assert (out["denoised_mag"] <= 1.5 * out["noisy_mag"] + 1e-6).all()  # mask in (0, beta)
    with pytest.raises(ValueError, match="not part of"):
        conv.convert_state_dict({**state, "TFMambAttention.0.extra.weight": torch.zeros(1)}, OTHER)
    bad = {"cfg": {**OTHER["cfg"], "model_cfg": {**OTHER["cfg"]["model_cfg"], "output_channel": 2}}}
    with pytest.raises(ValueError, match="output_channel"):
        conv.build(bad)


def test_enhance_batch_gradients_and_round_trip(tmp_path):
    model = mambattention_test()
    wav = torch.randn(2, 1000)
    loss = model.enhance(wav).square().mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    model.eval()
    with torch.no_grad():
        both = model.enhance(wav)
        torch.testing.assert_close(model.enhance(wav[1]), both[1:], atol=1e-5, rtol=1e-5)
    save_pretrained(model, tmp_path / "ma")
    loaded = load_pretrained(tmp_path / "ma")
    assert isinstance(loaded, MambAttention)
    with torch.no_grad():
        torch.testing.assert_close(loaded.enhance(wav), both, atol=0, rtol=0)


def test_variants_and_bad_arguments():
    assert sum(p.numel() for p in mambattention().parameters()) == pytest.approx(2.33e6, rel=0.01)
    with pytest.raises(ValueError, match="n_fft"):
        MambAttention(n_fft=402)
    with pytest.raises(ValueError, match="n_heads"):
        MambAttention(hid_feature=12, n_heads=8)
    with pytest.raises(ValueError, match="noisy_mag"):
        mambattention_test().forward_spectrum(torch.randn(1, 20, 5), torch.randn(1, 20, 5))
    assert math.isclose(mambattention_test().config["compress_factor"], 0.3)


def test_waveform_batch_is_the_entry_point():
    """Microphones are channels; ragged channel sets and durations never change a sample's output."""
    from chanformer.batch import ChannelBatch, ChannelSample, EmptySampleError

    torch.manual_seed(0)
    model = mambattention_test().eval()
    a = ChannelSample(torch.randn(2, 900) * 0.1, torch.tensor([0, 1]))  # two microphones
    b = ChannelSample(torch.randn(1, 700) * 0.1, torch.tensor([0]))  # one microphone, shorter
    batch = ChannelBatch.collate([a, b], sfreq=16000.0, pad_time=True)
    dirty = ChannelBatch(batch.values.clone(), batch.channel_ids, batch.mask, sfreq=16000.0, lengths=batch.lengths)
    dirty.values[1, 1] = float("nan")
    dirty.values[1, 0, 700:] = 1e30
    with torch.no_grad():
        out = model(batch)
        assert out.shape == (2, 2, 900)
        torch.testing.assert_close(out[0], model.enhance(a.values))
        torch.testing.assert_close(out[1, :1, :700], model.enhance(b.values))
        assert not out[1, 1].any() and not out[1, 0, 700:].any()
        assert torch.equal(model(dirty), out)
    with pytest.raises(ValueError, match="8000.0 Hz"):
        model(ChannelBatch.collate([a], sfreq=8000.0))
    with pytest.raises(EmptySampleError, match=r"sample\(s\) \[0, 1\]"):
        model(ChannelBatch(batch.values, batch.channel_ids, torch.zeros_like(batch.mask)))
    with pytest.raises(TypeError, match="ChannelBatch"):
        model(a.values)
