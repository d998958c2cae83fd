"""VoiceBank-DEMAND, DNS Challenge and VoxCeleb read from generated miniatures of their published
layouts (and from the real pairs in ../shared/data), plus one epoch of each shipped recipe."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.speech.corpora import (
    DNSChallengeDataModule,
    DNSMixingDataset,
    SpeechCorpusMissingError,
    VoiceBankDEMANDDataModule,
    VoxCelebDataModule,
    VoxCelebDataset,
    dns_pairs,
    read_iden_split,
    voicebank_demand_pairs,
    voxceleb_files,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_generate", Path(__file__).parent / "data" / name / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vb_gen, dns_gen, vox_gen = _load("voicebank_demand"), _load("dns_challenge"), _load("voxceleb")


@pytest.fixture(scope="module")
def vb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vb_gen.generate(tmp_path_factory.mktemp("voicebank"))


@pytest.fixture(scope="module")
def dns_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dns_gen.generate(tmp_path_factory.mktemp("dns"))


@pytest.fixture(scope="module")
def vox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vox_gen.generate(tmp_path_factory.mktemp("voxceleb"))


def _snr(noisy: Any, clean: Any) -> float:
    """SNR (dB) of ``noisy`` against ``clean`` (arrays or tensors)."""
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    return float(10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2)))


# -- VoiceBank-DEMAND -----------------------------------------------------------------------------------------------
def test_voicebank_splits_speakers_logs_and_resampling(vb_root: Path) -> None:
    dm = VoiceBankDEMANDDataModule(root=str(vb_root), sample_rate=16000, segment_seconds=0.25, eval_seconds=None)
    assert dm.info["train"]["file_ids"] == ["p227_001", "p227_002"]  # p226, p287 held out
    assert dm.info["val"]["file_ids"] == ["p226_001", "p226_002", "p287_001", "p287_002"]
    assert dm.info["test"]["file_ids"] == ["p232_001", "p232_002", "p257_001", "p257_002"]
    expect = {fid: (noise, snr) for fid, noise, snr in vb_gen.entries("test")}
    got = dict(zip(dm.info["test"]["file_ids"], zip(dm.info["test"]["noise_types"], dm.info["test"]["snrs"], strict=True),
                   strict=True))  # fmt: skip
    assert got == expect and {s for _, s in got.values()} <= {2.5, 7.5, 12.5, 17.5}
    dm.setup("fit")
    test = dm.test_dataset
    s = test[0]  # type: ignore[index]
    assert s.values.shape == s.target.shape == (1, 8000)  # type: ignore[union-attr]  # 0.5 s at 48 kHz read at 16 kHz
    # at the files' own rate the logged SNR is exact (resampling drops the white noise above 8 kHz)
    native = VoiceBankDEMANDDataModule(root=str(vb_root), sample_rate=48000, eval_seconds=None)
    native.setup("test")
    for i, fid in enumerate(native.info["test"]["file_ids"]):
        x = native.test_dataset[i]  # type: ignore[index]
        assert _snr(x.values, x.target) == pytest.approx(expect[fid][1], abs=0.05)
    assert dm.train_dataset[0].values.shape == (1, 4000)  # type: ignore[index]
    assert sf.info(str(vb_root / "noisy_testset_wav" / "p232_001.wav")).samplerate == 48000


def test_voicebank_missing_folder_names_the_layout(tmp_path: Path, vb_root: Path) -> None:
    with pytest.raises(SpeechCorpusMissingError, match=r"root folder not found.*datashare\.ed\.ac\.uk"):
        voicebank_demand_pairs(tmp_path / "absent")
    part = tmp_path / "part"
    shutil.copytree(vb_root / "clean_testset_wav", part / "clean_testset_wav")
    with pytest.raises(SpeechCorpusMissingError, match="noisy_testset_wav not found"):
        voicebank_demand_pairs(part, "test")


def test_real_voicebank_pairs_through_the_published_layout(tmp_path: Path) -> None:
    """The 6 real training-split pairs of ../shared/data, placed in the published folders."""
    real = SHARED / "voicebank-pairs"
    if not (real / "clean").is_dir():
        pytest.skip("../shared/data/voicebank-pairs is not present")
    for kind in ("clean", "noisy"):
        (tmp_path / f"{kind}_trainset_28spk_wav").symlink_to(real / kind, target_is_directory=True)
    for kind in ("clean", "noisy"):  # a test folder is required too: reuse the same real files
        (tmp_path / f"{kind}_testset_wav").symlink_to(real / kind, target_is_directory=True)
    dm = VoiceBankDEMANDDataModule(root=str(tmp_path), val_speakers=[], eval_seconds=None)
    ids = dm.info["train"]["file_ids"]
    assert len(ids) == 6 and all(i.startswith("p287_") for i in ids)
    dm.setup("test")
    snrs = [_snr(dm.test_dataset[i].values, dm.test_dataset[i].target) for i in range(6)]  # type: ignore[index]
    assert -1.0 < min(snrs) and max(snrs) < 15.0  # the README: input SNR -0.7 .. 14.6 dB


# -- DNS Challenge --------------------------------------------------------------------------------------------------
def test_dns_test_set_pairs_by_fileid_and_training_pairs(dns_root: Path) -> None:
    pairs = dns_pairs(dns_root / "datasets" / "test_set" / "synthetic" / "no_reverb")
    assert [f for f, _, _ in pairs] == [3, 7, 12]
    assert pairs[1][1].name.endswith("_snr5_tl-21_fileid_7.wav") and pairs[1][2].name == "clean_fileid_7.wav"
    dm = DNSChallengeDataModule(root=str(dns_root), val_fraction=0.34, eval_seconds=None, segment_seconds=0.5)
    assert dm.file_ids["test"] == [3, 7, 12] and len(dm.file_ids["val"]) == 2 and len(dm.file_ids["train"]) == 4
    assert sorted(dm.file_ids["train"] + dm.file_ids["val"]) == list(dns_gen.TRAIN_IDS)
    dm.setup("fit")
    s = dm.test_dataset[0]  # type: ignore[index]
    assert s.values.shape == (1, 16000) and _snr(s.values, s.target) == pytest.approx(0.0, abs=0.2)
    rev = DNSChallengeDataModule(root=str(dns_root), reverb="with_reverb")
    assert rev.file_ids["test"] == [1, 5]


def test_dns_raw_clean_and_noise_are_mixed_on_the_fly(tmp_path: Path) -> None:
    root = dns_gen.generate(tmp_path, training_set=False)
    dm = DNSChallengeDataModule(root=str(root), segment_seconds=0.5, snr_range=(5.0, 5.0))
    assert dm.mixing is not None and dm.file_ids["train"] == []
    dm.setup("fit")
    assert isinstance(dm.train_dataset, DNSMixingDataset) and len(dm.train_dataset) == 6
    s = dm.train_dataset[2]
    assert s.values.shape == (1, 8000) and _snr(s.values, s.target) == pytest.approx(5.0, abs=0.05)
    with pytest.raises(SpeechCorpusMissingError, match="test_set/synthetic/no_reverb"):
        DNSChallengeDataModule(root=str(tmp_path / "datasets" / "clean"))


def test_real_dns_pairs_from_shared_data() -> None:
    real = SHARED / "dns2020"
    if not (real / "clean").is_dir():
        pytest.skip("../shared/data/dns2020 is not present")
    pairs = dns_pairs(real)
    assert [f for f, _, _ in pairs] == [4, 26, 43, 52, 104]
    from chanformer.datasets.speech.corpora import PairListDataset

    ds = PairListDataset([(n, c) for _, n, c in pairs], segment_seconds=None)
    snr = {f: _snr(ds[i].values, ds[i].target) for i, (f, _, _) in enumerate(pairs)}
    assert snr[26] == pytest.approx(12.0, abs=0.5) and snr[104] == pytest.approx(1.0, abs=0.5)  # the README's values


# -- VoxCeleb -------------------------------------------------------------------------------------------------------
def test_voxceleb_files_trials_and_identification_split(vox_root: Path) -> None:
    files = voxceleb_files(vox_root)
    assert sorted(files) == sorted(vox_gen.DEV + vox_gen.TEST)
    assert files["id10001"] == sorted(vox_gen.utterances("id10001"))
    split = read_iden_split(vox_root / "iden_split.txt")
    assert len(split["train"]) == 12 and len(split["val"]) == 6 and len(split["test"]) == 6
    ds = VoxCelebDataset(vox_root, iden_split="test", crop_seconds=0.2)
    assert ds.speakers == sorted(vox_gen.DEV + vox_gen.TEST) and len(ds) == 6
    assert ds[1].values.shape == (1, 3200) and int(ds[1].target) == 1  # type: ignore[arg-type]
    assert ds.videos[0] == split["test"][0].split("/")[1]


def test_voxceleb_datamodule_trains_on_dev_and_tests_on_the_official_trials(vox_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_val_speakers=1"):
        VoxCelebDataModule(root=str(vox_root), cache_dir=str(tmp_path), n_val_speakers=1)
    dm = VoxCelebDataModule(root=str(vox_root), cache_dir=str(tmp_path), n_val_speakers=2, eval_seconds=0.3)
    assert not set(dm.speakers) & set(vox_gen.TEST) and len(dm.speakers) == 2 and len(dm.held_speakers) == 2
    dm.setup("fit")
    assert dm.test_trials is not None and len(dm.test_trials) == len(vox_gen.trials()) == 28
    assert dm.test_trials.labels == [lab for lab, _, _ in vox_gen.trials()]
    assert dm.val_trials is not None and len(dm.val_trials) == 28  # every pair of 2 x 4 held-out utterances
    assert sum(dm.val_trials.labels) == 12
    assert len(dm.train_dataset) == 8 and dm.spec.num_classes == 2  # type: ignore[arg-type]


def test_voxceleb_missing_and_voxceleb2_aac(tmp_path: Path) -> None:
    with pytest.raises(SpeechCorpusMissingError, match="root folder not found.*robots.ox.ac.uk"):
        voxceleb_files(tmp_path / "absent")
    (tmp_path / "vox2" / "aac" / "id00012" / "21Uxsk56VDQ").mkdir(parents=True)
    with pytest.raises(SpeechCorpusMissingError, match="aac/.*ffmpeg"):
        voxceleb_files(tmp_path / "vox2")


# -- recipes ------------------------------------------------------------------------------------------------------------
def _tiny(tmp_path: Path, recipe: str, root: Path, *extra: str, eval_batches: str = "1"):  # type: ignore[no-untyped-def]
    assert recipe in list_recipes()
    return run_lightning_cli([
        "fit", "--config", resolve_config(recipe), f"--data.init_args.root={root}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", f"--trainer.limit_val_batches={eval_batches}",
        f"--trainer.limit_test_batches={eval_batches}", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.check_val_every_n_epoch=1", f"--model.init_args.export_dir={tmp_path / 'export'}", *extra,
    ])  # fmt: skip


#: MambAttention on CPU is slow per STFT frame: a coarser STFT keeps the one-epoch run short
_STFT = '{"hid_feature": 4, "n_heads": 2, "n_fft": 128, "hop_size": 64, "win_size": 128}'
_SMALL_STFT = (f"--model.init_args.model_kwargs={_STFT}",)


def test_voicebank_recipe_one_epoch(vb_root: Path, tmp_path: Path) -> None:
    cli = _tiny(tmp_path, "enhance-voicebank-mambattention", vb_root, "--data.init_args.segment_seconds=0.25",
                "--data.init_args.eval_seconds=0.25", "--data.init_args.batch_size=1",
                "--model.init_args.val_pesq=false", "--model.init_args.val_estoi=false", *_SMALL_STFT)  # fmt: skip
    assert cli.trainer.global_step == 1 and math.isfinite(float(cli.trainer.callback_metrics["test/si_sdr"]))


def test_dns_recipe_one_epoch(dns_root: Path, tmp_path: Path) -> None:
    cli = _tiny(tmp_path, "enhance-dns-mambattention", dns_root, "--data.init_args.segment_seconds=0.25",
                "--data.init_args.val_fraction=0.34",
                "--data.init_args.eval_seconds=0.25", "--data.init_args.batch_size=1",
                "--model.init_args.val_pesq=false", "--model.init_args.val_estoi=false", *_SMALL_STFT)  # fmt: skip
    assert cli.trainer.global_step == 1 and math.isfinite(float(cli.trainer.callback_metrics["test/si_sdr"]))


def test_voxceleb_recipe_one_epoch(vox_root: Path, tmp_path: Path) -> None:
    cli = _tiny(tmp_path, "speaker-ecapa-voxceleb", vox_root, f"--data.init_args.cache_dir={tmp_path / 'cache'}",
                "--data.init_args.n_val_speakers=2", "--data.init_args.batch_size=2", "--data.init_args.crop_seconds=0.3",
                "--data.init_args.eval_seconds=0.3", eval_batches="1.0")  # every trial file: EER needs them all  # fmt: skip
    assert cli.trainer.global_step == 1 and math.isfinite(float(cli.trainer.callback_metrics["test/eer"]))
