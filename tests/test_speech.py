"""Speech loaders, verification metrics, AAM-softmax, enhancement losses/metrics and recipes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from chanformer.batch import ChannelBatch  # noqa: E402
from chanformer.datasets.speech.audio import AudioReadError, read_audio  # noqa: E402
from chanformer.datasets.speech.augment import (  # noqa: E402
    coloured_noise,
    mix_at_snr,
    random_crop,
    rms_normalize,
    speed_perturb,
    volume_perturb,
)
from chanformer.datasets.speech.datasets import NoisyCleanDataset, SpeakerFolderDataset  # noqa: E402
from chanformer.datasets.speech.synth import espeak_available  # noqa: E402
from chanformer.datasets.speech.trials import VerificationTrials  # noqa: E402
from chanformer.eval.verification import compute_eer, compute_min_dcf, s_norm  # noqa: E402
from chanformer.tasks.enhancement import enhancement_metrics, generator_losses, phase_losses, si_sdr  # noqa: E402
from chanformer.tasks.speaker import AAMSoftmax  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (apt-get install -y espeak-ng)")


def _tone(f0: float, sr: int = 16000, sec: float = 0.5, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * sec)) / sr
    x = amp * np.sin(2 * np.pi * f0 * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], 1) if channels > 1 else x


def _write(path: Path, x: np.ndarray, sr: int = 16000, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


# -- reading ---------------------------------------------------------------------------------------
def test_read_keeps_channels_and_resamples(tmp_path):
    p = _write(tmp_path / "st.wav", _tone(440, 8000, channels=2), 8000)
    x, sr = read_audio(p)
    assert x.shape == (2, 4000) and sr == 8000 and x.dtype == np.float32
    y, sr = read_audio(p, 16000)
    assert y.shape == (2, 8000) and sr == 16000
    for fmt in ("flac", "ogg"):
        q = _write(tmp_path / f"a.{fmt}", _tone(300), subtype="PCM_16" if fmt == "flac" else "VORBIS")
        assert read_audio(q)[0].shape[0] == 1


@pytest.mark.parametrize("case, match", [
    ("empty", "empty"), ("silent", "silent"), ("rate", "sample rate 8000"), ("stereo", "stereo but mono"),
    ("mono", "mono but stereo"), ("missing", "not found"), ("garbage", "cannot read"),
])
def test_read_errors_name_the_file(tmp_path, case, match):
    p = tmp_path / f"{case}.wav"
    kw: dict = {}
    if case == "empty":
        _write(p, np.zeros(0))
    elif case == "silent":
        _write(p, np.zeros(1000))
    elif case == "rate":
        _write(p, _tone(200, 8000), 8000)
        kw = dict(sample_rate=16000, resample_to_rate=False)
    elif case == "stereo":
        _write(p, _tone(200, channels=2))
        kw = dict(channels=1)
    elif case == "mono":
        _write(p, _tone(200))
        kw = dict(channels=2)
    elif case == "garbage":
        p.write_bytes(b"not a wav file at all")
    with pytest.raises(AudioReadError, match=match) as err:
        read_audio(p, **kw)
    assert str(p) in str(err.value)


def test_clipping_warns_or_raises(tmp_path):
    p = _write(tmp_path / "clip.wav", np.clip(_tone(200, amp=3.0), -1, 1))
    with pytest.warns(UserWarning, match="clipped"):
        read_audio(p)
    with pytest.raises(AudioReadError, match="clipped"):
        read_audio(p, on_clip="error")
    read_audio(p, on_clip="ignore")


def test_non_finite_audio_raises(tmp_path):
    x = _tone(200)
    x[10] = np.nan
    p = _write(tmp_path / "nan.wav", x)
    with pytest.raises(AudioReadError, match="non-finite"):
        read_audio(p)


# -- signal helpers --------------------------------------------------------------------------------
def test_mix_at_snr_is_exact():
    rng = np.random.default_rng(0)
    clean, noise = rng.standard_normal(16000), coloured_noise(9000, 1.0, rng).astype(np.float64)
    for snr in (-5.0, 0.0, 7.5, 20.0):
        noisy, scaled = mix_at_snr(clean, noise, snr)
        assert 10 * np.log10(np.sum(clean**2) / np.sum(scaled**2)) == pytest.approx(snr, abs=1e-9)
        np.testing.assert_allclose(noisy - clean, scaled)


def test_helpers():
    x = np.arange(10, dtype=np.float32)[None]
    assert random_crop(x, 25).shape == (1, 25) and random_crop(x, 4).tolist() == [[3, 4, 5, 6]]
    assert np.sqrt(np.mean(rms_normalize(x + 1, -20.0) ** 2)) == pytest.approx(0.1, rel=1e-5)
    assert speed_perturb(np.zeros((1, 1100), np.float32), 1.1).shape == (1, 1000)
    assert volume_perturb(np.ones(3, np.float32), 20.0)[0] == pytest.approx(10.0)
    w, p = coloured_noise(4096, 0.0, np.random.default_rng(0)), coloured_noise(4096, 1.0, np.random.default_rng(0))
    lo = lambda s: np.abs(np.fft.rfft(s))[1:100].mean() / np.abs(np.fft.rfft(s))[1000:].mean()  # noqa: E731
    assert lo(p) > 3 * lo(w)


# -- datasets --------------------------------------------------------------------------------------
def test_speaker_folders_split_by_utterance(tmp_path):
    for s, f0 in (("alice", 200), ("bob", 300)):
        for i in range(5):
            _write(tmp_path / s / f"{i}.wav", _tone(f0 + 10 * i, sec=0.3))
    tr = SpeakerFolderDataset(tmp_path, "train", val_fraction=0.4, crop_seconds=0.5)
    va = SpeakerFolderDataset(tmp_path, "val", val_fraction=0.4, crop_seconds=0.5)
    assert len(tr) == 6 and len(va) == 4 and not {p for p, _ in tr.items} & {p for p, _ in va.items}
    s = tr[0]
    assert s.values.shape == (1, 8000) and int(s.target) in (0, 1)
    batch = ChannelBatch.collate([tr[i] for i in range(3)])
    assert batch.values.shape == (3, 1, 8000)


def test_trials_name_missing_files(tmp_path):
    _write(tmp_path / "a" / "1.wav", _tone(200))
    _write(tmp_path / "b" / "1.wav", _tone(300))
    ok = VerificationTrials.write(tmp_path / "t.txt", [(1, "a/1.wav", "a/1.wav"), (0, "a/1.wav", "b/1.wav")])
    t = VerificationTrials(ok)
    assert t.files == ["a/1.wav", "b/1.wav"] and t.pair_indices()[2].tolist() == [1, 0]
    bad = VerificationTrials.write(tmp_path / "bad.txt", [(0, "a/1.wav", "c/9.wav")])
    with pytest.raises(FileNotFoundError, match=r"bad.txt:1: .*c/9.wav"):
        VerificationTrials(bad)


def test_noisy_clean_pairs(tmp_path):
    _write(tmp_path / "noisy" / "x.wav", _tone(200, sec=1.0) + 0.01)
    _write(tmp_path / "clean" / "x.wav", _tone(200, sec=1.0))
    ds = NoisyCleanDataset(tmp_path / "noisy", tmp_path / "clean", segment_seconds=0.5)
    s = ds[0]
    assert s.values.shape == s.target.shape == (1, 8000)
    _write(tmp_path / "noisy" / "y.wav", _tone(200))
    with pytest.raises(FileNotFoundError, match="y.wav has no counterpart"):
        NoisyCleanDataset(tmp_path / "noisy", tmp_path / "clean")


# -- metrics ---------------------------------------------------------------------------------------
def test_eer_and_min_dcf_hand_computed():
    scores, labels = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0]
    # accept >= 0.7: misses {0.3} = 1/3, false alarms {0.7} = 1/3 -> EER 1/3
    assert compute_eer(scores, labels)[0] == pytest.approx(1 / 3)
    # best DCF at threshold 0.8: P_miss 1/3, P_fa 0 -> 0.01/3 / min(0.01, 0.99) = 1/3
    assert compute_min_dcf(scores, labels)[0] == pytest.approx(1 / 3)
    assert compute_eer([1, 2, 3, 4], [0, 0, 1, 1])[0] == 0.0 and compute_eer([1, 2, 3, 4], [1, 1, 0, 0])[0] == 1.0
    # interpolated crossing: ROC (0, 1), (0, .5), (1, .5), (1, 0) -> EER 0.5
    assert compute_eer([1.0, 0.0, 0.5], [1, 1, 0])[0] == pytest.approx(0.5)
    # p_target 0.5: DCF = (P_miss + P_fa) / 2 normalised by 0.5 -> min 1/3 at threshold 0.8
    assert compute_min_dcf(scores, labels, p_target=0.5)[0] == pytest.approx(1 / 3)


def test_s_norm_matches_formula():
    g = torch.Generator().manual_seed(0)
    e, t, c = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(20, 8, generator=g)
    n = torch.nn.functional.normalize
    raw = (n(e) * n(t)).sum(1)
    se, st = n(e) @ n(c).T, n(t) @ n(c).T
    want = 0.5 * ((raw - se.mean(1)) / se.std(1) + (raw - st.mean(1)) / st.std(1))
    torch.testing.assert_close(s_norm(e, t, c), want)


def test_si_sdr_known_values():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(16000, generator=g, dtype=torch.float64)
    noise = torch.randn(16000, generator=g, dtype=torch.float64)
    noise = noise - (noise @ (ref - ref.mean())) / ((ref - ref.mean()) @ (ref - ref.mean())) * (ref - ref.mean())
    noise = noise - noise.mean()
    r0 = ref - ref.mean()
    for db in (-5.0, 0.0, 10.0):
        est = 3.0 * (r0 + noise * torch.sqrt((r0 @ r0) / (noise @ noise) / 10 ** (db / 10)))
        assert float(si_sdr(est, ref)) == pytest.approx(db, abs=1e-6)  # scale invariant: factor 3 does not matter
    assert float(si_sdr(ref, ref)) > 100


def test_enhancement_metrics_pesq_estoi():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    dns = ROOT.parent / "shared" / "data" / "dns2020" / "clean" / "fileid_4.wav"
    if not dns.is_file():
        pytest.skip(f"real speech for PESQ not found: {dns}")
    rng = np.random.default_rng(0)
    clean = read_audio(dns, 16000)[0][0].astype(np.float64)[:48000]
    good = enhancement_metrics(clean + 0.001 * rng.standard_normal(clean.size), clean)
    bad = enhancement_metrics(clean + 0.1 * rng.standard_normal(clean.size), clean)
    assert good["si_sdr"] > bad["si_sdr"] + 20 and good["estoi"] > bad["estoi"]
    assert good["pesq"] > bad["pesq"]


# -- AAM-softmax and enhancement losses -------------------------------------------------------------
def test_aam_margin_lowers_target_logit_and_raises_loss():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 4, margin=0.2, scale=30.0)
    emb, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    cos = aam.cosine(emb)
    lg = aam.logits(emb, y)
    tgt = cos.gather(1, y[:, None])[:, 0]
    theta = torch.acos(tgt.clamp(-1, 1))
    want = torch.where(theta < math.pi - 0.2, 30 * torch.cos(theta + 0.2), 30 * (tgt - math.sin(math.pi - 0.2) * 0.2))
    torch.testing.assert_close(lg.gather(1, y[:, None])[:, 0], want, atol=1e-4, rtol=1e-4)
    other = torch.ones_like(lg, dtype=torch.bool).scatter(1, y[:, None], False)
    torch.testing.assert_close(lg[other], 30 * cos[other])
    no_margin = AAMSoftmax(8, 4, margin=0.0)
    no_margin.weight.data.copy_(aam.weight.data)
    assert aam(emb, y) > no_margin(emb, y)


def test_phase_loss_is_wrap_invariant():
    p = torch.rand(2, 5, 7) * 6 - 3
    ip, gd, iaf = phase_losses(p, p + 2 * math.pi)
    assert max(float(ip), float(gd), float(iaf)) < 1e-5


def test_enhancement_loss_decreases():
    from chanformer.encoders.mambattention import mambattention_test

    torch.manual_seed(0)
    model = mambattention_test(hid_feature=8, n_heads=4, n_fft=64, hop_size=32, win_size=64)
    t = torch.arange(1600) / 16000
    clean = 0.3 * torch.sin(2 * math.pi * 300 * t)[None].repeat(2, 1)
    noisy = clean + 0.1 * torch.randn(2, 1600)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        parts, _ = generator_losses(model, noisy, clean)
        loss = sum(parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


# -- recipes end to end (espeak-ng) ------------------------------------------------------------------
def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    exe = str(Path(sys.executable).with_name("chanformer"))
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@needs_espeak
@pytest.mark.slow
def test_speaker_recipe_runs(tmp_path):
    proc = _cli("fit", "--config", "speaker-ecapa", "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}",
                f"--model.init_args.export_dir={tmp_path / 'export'}", f"--data.init_args.cache_dir={tmp_path / 'data'}",
                "--data.init_args.n_train_speakers=4", "--data.init_args.n_val_speakers=2", "--data.init_args.n_test_speakers=2",
                "--data.init_args.n_utterances=3")
    assert "test/eer" in proc.stdout and (tmp_path / "export" / "model.safetensors").is_file()


@needs_espeak
@pytest.mark.slow
def test_enhance_recipe_runs(tmp_path):
    proc = _cli("fit", "--config", "enhance-mambattention", "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}",
                f"--model.init_args.export_dir={tmp_path / 'export'}", f"--data.init_args.cache_dir={tmp_path / 'data'}",
                "--data.init_args.n_train=8", "--data.init_args.n_val=2", "--data.init_args.n_test=2",
                "--data.init_args.n_train_speakers=2", "--data.init_args.n_test_speakers=2", "--data.init_args.n_utterances=2")
    assert "test/si_sdri" in proc.stdout and (tmp_path / "export" / "model.safetensors").is_file()


def test_si_sdr_matches_dns_readme():
    """The DNS README states the noisy inputs' SI-SDR: mean 6.99 dB (1, 12, 6, 8, 8 dB)."""
    dns = ROOT.parent / "shared" / "data" / "dns2020"
    noisy = sorted((dns / "noisy").glob("*.wav"))
    if not noisy:
        pytest.skip(f"DNS 2020 pairs not found under {dns}")
    vals = [float(si_sdr(torch.from_numpy(read_audio(p, 16000)[0][0]).double(),
                         torch.from_numpy(read_audio(dns / "clean" / p.name, 16000)[0][0]).double())) for p in noisy]
    assert np.mean(vals) == pytest.approx(6.99, abs=0.01)


def test_speaker_task_embeds_every_microphone_through_the_batch():
    """Microphones are channels: a sample's embedding is the mean over its present microphones,
    typed lengths drive the frame masks, and nothing in padding changes any output."""
    from chanformer.batch import ChannelBatch, ChannelSample
    from chanformer.tasks.speaker import SpeakerVerificationTask

    torch.manual_seed(0)
    task = SpeakerVerificationTask(num_classes=3, encoder="ecapa_tdnn_test").eval()
    a = ChannelSample(torch.randn(2, 8000) * 0.1, torch.tensor([0, 1]), target=torch.tensor(0))
    b = ChannelSample(torch.randn(1, 6000) * 0.1, torch.tensor([0]), target=torch.tensor(2))
    batch = ChannelBatch.collate([a, b], sfreq=16000.0, pad_time=True)
    with torch.no_grad():
        emb = task(batch)
        mics = task.embed_waveforms(a.values)
        torch.testing.assert_close(emb[0], mics.mean(0), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(mics[0], mics[1])
        dirty = ChannelBatch(batch.values.clone(), batch.channel_ids, batch.mask, target=batch.target, lengths=batch.lengths)
        dirty.values[1, 1] = float("nan")
        dirty.values[1, 0, 6000:] = 1e30
        assert torch.equal(task(dirty), emb)
        # the typed length is read: the same utterance without it (zeros counted as speech) differs
        unmasked = ChannelBatch(batch.values, batch.channel_ids, batch.mask, target=batch.target)
        assert not torch.allclose(task(unmasked)[1], emb[1])
    task.train()
    loss, _, _ = task.compute(batch)
    loss.backward()
    assert torch.isfinite(loss) and task.encoder.blocks[0].conv.weight.grad.abs().sum() > 0


def test_speaker_task_warmup_cosine_schedule():
    """lr_schedule='warmup_cosine': linear warmup over warmup_epochs, then a cosine to lr_floor
    at the last optimiser step, stepped per step; wrong settings are refused by name."""
    from chanformer.tasks.speaker import SpeakerVerificationTask, warmup_cosine_factor

    assert [warmup_cosine_factor(s, 3, 10) for s in range(3)] == pytest.approx([0.25, 0.5, 0.75])
    assert warmup_cosine_factor(3, 3, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(10, 3, 10, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(99, 3, 10) == pytest.approx(0.0)
    assert warmup_cosine_factor(0, 0, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_factor(0, 5, 5)
    task = SpeakerVerificationTask(num_classes=3, encoder="ecapa_tdnn_test", lr_schedule="warmup_cosine",
                                   warmup_epochs=0.5, lr_floor=0.05,
                                   optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    opt = task.optimizer_factory(task.parameters())
    sched = task.warmup_cosine(opt, total_steps=20, steps_per_epoch=4.0)  # 2 warmup steps
    lrs = []
    for _ in range(21):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[20] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="lr_schedule"):
        SpeakerVerificationTask(num_classes=3, lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_scheduler"):
        SpeakerVerificationTask(num_classes=3, lr_schedule="warmup_cosine",
                                lr_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1))
