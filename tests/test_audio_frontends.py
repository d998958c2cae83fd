from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from chanformer.transforms.audio import (
    CompressedSTFT,
    Fbank,
    mag_phase_istft,
    mag_phase_stft,
    mel_filterbank,
    sentence_mean_norm,
)
from tests.conftest import reference_path


def _within(ours: torch.Tensor, ref: torch.Tensor, meta: dict) -> bool:
    return bool(((ours - ref).abs() <= meta["atol"] + meta["rtol"] * ref.abs()).all())


def test_fbank_matches_speechbrain_fixture():
    path = reference_path("ecapa_tdnn")
    meta = json.loads((path / "fixture.json").read_text())
    io = load_file(str(path / "io.safetensors"))
    fbank = Fbank(n_mels=80)(io["input.wav"])
    ref = io["output.fbank"]
    assert fbank.shape == ref.shape == (2, 101, 80)
    assert _within(fbank, ref, meta), (fbank - ref).abs().max()
    assert (fbank - ref).abs().mean() < 1e-5


def test_compressed_stft_matches_mambattention_fixture():
    path = reference_path("mambattention")
    meta = json.loads((path / "fixture.json").read_text())
    io = load_file(str(path / "io.safetensors"))
    wav = io["input.noisy_wav"]
    norm = torch.sqrt(wav.shape[-1] / wav.pow(2).sum(-1, keepdim=True))
    mag, pha, com = CompressedSTFT()(wav * norm)
    assert mag.shape == io["output.noisy_mag"].shape == (1, 201, 41)
    assert _within(mag, io["output.noisy_mag"], meta)
    # phase agrees except on the branch cut (+pi vs -pi), where rounding decides the sign
    dpha = torch.remainder(pha - io["output.noisy_pha"] + torch.pi, 2 * torch.pi) - torch.pi
    assert dpha.abs().max() < 1e-3
    torch.testing.assert_close(com, torch.stack([mag * pha.cos(), mag * pha.sin()], -1))


def test_fbank_layout_batching_and_db_floor():
    fb = Fbank(n_mels=40)
    wav = torch.randn(3, 1234)
    out = fb(wav)
    assert out.shape == (3, 1 + 1234 // 160, 40)
    torch.testing.assert_close(fb(wav[1]), out[1:2], atol=1e-4, rtol=1e-5)
    quiet = fb(torch.cat([wav[:1], 1e-3 * wav[:1]]))
    # dB: scaling the signal by 1e-3 shifts every (unfloored) value by -60 dB
    torch.testing.assert_close(quiet[1], quiet[0] - 60.0, atol=1e-2, rtol=0)
    floor = out.amax(dim=(1, 2)) - 80.0
    assert (out >= floor[:, None, None] - 1e-5).all()
    linear = Fbank(n_mels=40, log_mel=False)(wav)
    assert (linear >= 0).all()
    with pytest.raises(ValueError, match="wav"):
        fb(torch.randn(2, 2, 100))


def test_mel_filterbank_shape():
    fbm = mel_filterbank(80, 400, 16000)
    assert fbm.shape == (201, 80)
    assert (fbm >= 0).all() and (fbm <= 1).all()
    # triangle m: peak at the (m+1)-th of 82 mel-spaced points, half-width = gap to its left neighbour
    mel = torch.linspace(0, 2595 * torch.log10(torch.tensor(1 + 8000 / 700, dtype=torch.float64)), 82)
    hz = 700 * (10 ** (mel / 2595) - 1)
    freqs = torch.linspace(0, 8000, 201, dtype=torch.float64)[:, None]
    expected = (1 - (freqs - hz[1:-1]).abs() / (hz[1:-1] - hz[:-2])).clamp_min(0)
    torch.testing.assert_close(fbm.double(), expected, atol=1e-4, rtol=0)
    assert (fbm.sum(0) > 0).all() and (fbm.argmax(0).diff() >= 0).all()
    with pytest.raises(ValueError, match="f_min"):
        mel_filterbank(10, 400, 16000, f_min=9000.0)


def test_sentence_mean_norm():
    feats = torch.randn(2, 10, 4) + 3.0
    out = sentence_mean_norm(feats, torch.tensor([1.0, 0.6]))
    torch.testing.assert_close(out[0].mean(0), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1, :6].mean(0), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1, 6:] - feats[1, 6:], (out[1, :1] - feats[1, :1]).expand(4, -1))
    with pytest.raises(ValueError, match="lengths"):
        sentence_mean_norm(feats, torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("length", [4000, 3999, 1237])
def test_stft_round_trip(length):
    wav = torch.randn(2, length)
    mag, pha, _ = mag_phase_stft(wav, 400, 100, 400, 0.3)
    assert mag.shape == (2, 201, 1 + length // 100)
    back = mag_phase_istft(mag, pha, 400, 100, 400, 0.3, length=length)
    torch.testing.assert_close(back, wav, atol=2e-5, rtol=1e-5)
    mag2, pha2, _ = mag_phase_stft(wav, 64, 16, 48, 0.5, add_eps=True)
    torch.testing.assert_close(mag_phase_istft(mag2, pha2, 64, 16, 48, 0.5, length=length), wav, atol=5e-5, rtol=1e-5)


def test_stft_bad_arguments():
    with pytest.raises(ValueError, match="hop_length"):
        CompressedSTFT(hop_length=500)
    with pytest.raises(ValueError, match="wav"):
        mag_phase_stft(torch.randn(1, 2, 500))
