"""Simulated MI / iEEG data, montage interpolation, MVPFormer pre-training, seizure metrics, EEG recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelBatch
from chanformer.channels import eeg_1005_vocab
from chanformer.datasets.eeg.sim import (
    MI_CHANNELS,
    SimulatedIEEGDataModule,
    SimulatedMIDataModule,
    pink_noise,
    simulate_ieeg_seizures,
    simulate_motor_imagery,
)
from chanformer.encoders import create_encoder
from chanformer.encoders.montage import interpolate_montage
from chanformer.spec import DataSpec
from chanformer.tasks import NextSegmentPretrainTask, SeizureDetectionTask
from chanformer.tasks.pretrain_mvpformer import info_nce
from chanformer.tasks.seizure import FalseAlarmsPerHour
from tests.test_cli import _cli

MONTAGE = [f"eeg/{c}" for c in MI_CHANNELS]


# -- simulation -------------------------------------------------------------------------------
def test_motor_imagery_has_contralateral_erd():
    import mne

    raws = simulate_motor_imagery(n_subjects=2, n_trials=20, seed=3)
    assert [r.info["sfreq"] for r in raws] == [250.0, 256.0]
    assert len(raws[1].ch_names) < len(MI_CHANNELS) and {"C3", "C4", "Cz"} <= set(raws[1].ch_names)
    for raw in raws:
        raw = raw.copy().filter(8, 13, verbose="error")
        events, ids = mne.events_from_annotations(raw, verbose="error")
        assert set(ids) == {"left_hand", "right_hand"}
        ep = mne.Epochs(raw, events, ids, tmin=0.5, tmax=3.5, baseline=None, preload=True, verbose="error")
        power = {k: (ep[k].get_data(picks=["C3", "C4"]) ** 2).mean(axis=(0, 2)) for k in ids}
        # left-hand imagery desynchronises the right hemisphere (C4) and vice versa
        assert power["left_hand"][1] < 0.7 * power["left_hand"][0]
        assert power["right_hand"][0] < 0.7 * power["right_hand"][1]


def test_pink_noise_spectrum_falls_as_1_over_f():
    x = pink_noise(4, 2**14, np.random.default_rng(0))
    psd = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).mean(0)
    low, high = psd[10:20].mean(), psd[100:200].mean()
    assert 5 < low / high < 20  # 1/f: ~10x over a decade


def test_ieeg_seizures_are_annotated_high_amplitude_and_subject_scoped():
    raws = simulate_ieeg_seizures(n_subjects=2, duration_s=300.0, n_seizures=2, seed=1)
    for raw in raws:
        assert set(raw.get_channel_types()) == {"seeg"}
        sz = [a for a in raw.annotations if a["description"] == "seizure"]
        assert len(sz) == 2
        data, sf = raw.get_data(), raw.info["sfreq"]
        a = sz[0]
        inside = data[:, int((a["onset"] + a["duration"] / 2) * sf): int((a["onset"] + a["duration"]) * sf)]
        outside = data[:, : int(20 * sf)]
        assert inside.std(axis=1).max() > 3 * outside.std(axis=1).max()
    dm = SimulatedIEEGDataModule(n_subjects=2, duration_s=300.0, n_seizures=2, split="within_subject")
    dm.setup()
    keys = dm.vocab.keys
    assert keys and all(k.startswith("ieeg/sim0") for k in keys) and {k.split("/")[1] for k in keys} == {"sim01", "sim02"}
    labels = np.concatenate(dm.dataset.labels)
    assert 0.05 < labels.mean() < 0.4
    s = dm.train_dataset[0]
    assert s.values.shape[-1] == 8 * 64 and s.target is not None


# -- montage interpolation ----------------------------------------------------------------------
def _volume_conducted(keys, vocab, n_times=2000, seed=0):
    """Signals of 30 random current dipoles ~4 cm from the head centre, seen at the electrodes."""
    rng = np.random.default_rng(seed)
    xyz = np.array([vocab[k].position for k in keys])
    p = rng.normal(size=(30, 3))
    p = p / np.linalg.norm(p, axis=1, keepdims=True) * 0.04 + np.array([0, -0.01, 0.03])
    o = rng.normal(size=(30, 3))
    o /= np.linalg.norm(o, axis=1, keepdims=True)
    d = xyz[:, None] - p[None]
    lead = np.einsum("cnk,nk->cn", d, o) / np.linalg.norm(d, axis=-1) ** 3
    x = lead @ pink_noise(30, n_times, rng)
    x = x - x.mean(0)
    return (x / x.std()).astype(np.float32)


def test_interpolates_dropped_c3():
    vocab = eeg_1005_vocab()
    x = _volume_conducted(MONTAGE, vocab)
    full = ChannelBatch.from_numpy(x, MONTAGE, vocab)
    partial = full.select(vocab.ids([k for k in MONTAGE if k != "eeg/C3"]))
    out = interpolate_montage(partial, MONTAGE, vocab)
    i = MONTAGE.index("eeg/C3")
    assert out.mask.all() and out.channel_ids[0].tolist() == vocab.ids(MONTAGE)
    corr = np.corrcoef(out.values[0, i].numpy(), x[i])[0, 1]
    assert corr > 0.8, corr
    keep = [j for j in range(len(MONTAGE)) if j != i]
    torch.testing.assert_close(out.values[0, keep], torch.from_numpy(x[keep]))


def test_dbconformer_interpolate_missing_and_errors():
    vocab = eeg_1005_vocab()
    spec = DataSpec(vocab=vocab, n_times=64)
    enc = create_encoder("dbconformer_test", data_spec=spec, channels=MONTAGE[:8]).eval()
    x = torch.randn(2, 8, 64)
    batch = ChannelBatch.from_numpy(x, MONTAGE[:8], vocab)
    partial = batch.select(vocab.ids(MONTAGE[1:8]))
    with pytest.raises(ValueError, match="eeg/Fz"):
        enc(partial)
    enc.interpolate_missing = True
    assert enc(partial).shape == (2, enc.embed_dim)
    vocab.add("eeg/NOPOS", kind="eeg")  # no position: cannot be interpolated
    enc2 = create_encoder("dbconformer_test", data_spec=DataSpec(vocab=vocab, n_times=64),
                          channels=[*MONTAGE[:7], "eeg/NOPOS"], interpolate_missing=True)
    with pytest.raises(ValueError, match="NOPOS"):
        enc2(ChannelBatch.from_numpy(x[:, :7], MONTAGE[:7], vocab))


# -- tasks ------------------------------------------------------------------------------------------
def test_info_nce_loss_decreases():
    torch.manual_seed(0)
    dm = SimulatedIEEGDataModule(n_subjects=2, duration_s=300.0, n_seizures=2, split="within_subject", batch_size=8)
    task = NextSegmentPretrainTask(encoder="mvpformer_test", data_spec=dm.spec)
    dm.setup()
    batch = ChannelBatch.collate([dm.train_dataset[i] for i in range(8)])
    opt = torch.optim.AdamW(task.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # same negatives every step
        loss = task.compute(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > np.log(31) * 0.8  # ~ chance at start
    assert losses[-1] < 0.8 * losses[0], losses


def test_info_nce_logits_shape_and_self_exclusion():
    pred = torch.eye(4)
    loss, logits = info_nce(pred, pred, num_negatives=30, temperature=0.1)
    assert logits.shape == (4, 31)
    assert torch.all(logits[:, 0] == 10.0) and torch.all(logits[:, 1:] == 0.0)  # negatives are never the row itself


def test_seizure_metrics_on_hand_made_example():
    fa = FalseAlarmsPerHour(window_s=4.0)
    probs = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.1, 0.1, 0.7, 0.3])
    target = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    fa.update(probs, target)
    # 2 false positives in 5 negative windows of 4 s = 20 s -> 2 / (20 / 3600) = 360 per hour
    assert fa.compute().item() == pytest.approx(360.0)
    task = SeizureDetectionTask(encoder="mvpformer_test", window_s=4.0)
    metrics = task.configure_metrics()
    logits = torch.stack([torch.zeros(8), torch.logit(probs)], dim=1)
    task.update_metrics(metrics, logits, target, None)  # type: ignore[arg-type]
    out = {k: v.item() for k, v in metrics.compute().items()}
    assert out["sensitivity"] == pytest.approx(2 / 3)
    assert out["specificity"] == pytest.approx(3 / 5)
    assert out["fa_per_hour"] == pytest.approx(360.0)
    assert out["auroc"] == pytest.approx(12 / 15)  # 12 of 15 (seizure, background) pairs ranked right
    assert out["acc"] == pytest.approx(5 / 8)


@pytest.mark.slow  # passed at 0.7+ in 104 s on a loaded machine
def test_dbconformer_learns_simulated_motor_imagery():
    import lightning as L

    from chanformer.tasks import ClassificationTask

    L.seed_everything(0, verbose=False)
    dm = SimulatedMIDataModule(n_subjects=2, n_trials=60, split="within_subject", batch_size=16)
    task = ClassificationTask(
        encoder="dbconformer", data_spec=dm.spec,
        encoder_kwargs=dict(channels=MONTAGE, interpolate_missing=True, emb_size=16, num_heads=4, patch_size=32,
                            temporal_kernel=31, temporal_depth=1, spatial_depth=1, drop_rate=0.1),
    )  # fmt: skip
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=dm)
    acc = trainer.test(task, datamodule=dm, verbose=False)[0]["test/acc"]
    assert acc > 0.7, acc


# -- recipes through the CLI (tiny runs) -------------------------------------------------------------
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]


@pytest.mark.slow  # ~20 s idle, ~50 s on a loaded 2-core machine
def test_motor_imagery_recipe_runs(tmp_path):
    proc = _cli("fit", "--config", "eeg-motor-imagery-dbconformer", *FAST, f"--trainer.default_root_dir={tmp_path}",
                "--data.init_args.n_subjects=2", "--data.init_args.n_trials=20",
                f"--model.init_args.export_dir={tmp_path / 'export'}")
    assert "test/kappa" in proc.stdout and (tmp_path / "export" / "model.safetensors").is_file()


@pytest.mark.slow
def test_ieeg_pretrain_then_seizure_recipes_run(tmp_path):
    data = ["--data.init_args.n_subjects=3", "--data.init_args.duration_s=240", "--data.init_args.n_seizures=2"]
    _cli("fit", "--config", "ieeg-pretrain-mvpformer", *FAST, *data, f"--trainer.default_root_dir={tmp_path / 'pre'}",
         f"--model.init_args.export_dir={tmp_path / 'pre' / 'export'}")
    proc = _cli("fit", "--config", "ieeg-seizure-mvpformer", *FAST, *data, f"--trainer.default_root_dir={tmp_path / 'sz'}",
                f"--model.init_args.pretrained={tmp_path / 'pre' / 'export'}")
    assert "test/fa_per_hour" in proc.stdout and "test/auroc" in proc.stdout
