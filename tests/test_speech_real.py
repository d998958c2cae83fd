"""Real speech: the LibriSpeech speaker-verification reader and recipe, and the enhancement recipe
scored on the real DNS 2020 + VoiceBank pairs (docs/speech.md, "Real speech")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from chanformer.datasets.speech.datamodules import SpeakerVerificationDataModule  # noqa: E402
from chanformer.datasets.speech.datasets import SpeakerFolderDataset, flat_speaker_files  # noqa: E402
from chanformer.datasets.speech.trials import all_pairs_trials  # noqa: E402
from chanformer.tasks.speaker import utterance_statistics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LIBRI = DATA / "librispeech-subset"
needs_libri = pytest.mark.skipif(not (LIBRI / "librispeech_test-other").is_dir(), reason=f"no LibriSpeech subset at {LIBRI}")


def _voice(path: Path, f0: float, sec: float = 1.0, sr: int = 16000) -> Path:
    t = np.arange(int(sec * sr)) / sr
    noise = 0.001 * np.random.default_rng(int(f0)).standard_normal(t.size)
    x = sum(0.1 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) + noise
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, subtype="PCM_16")
    return path


def test_flat_speaker_files_and_repeated_crops(tmp_path):
    for name, f0 in [("19-198-0001", 110), ("19-198-0002", 115), ("200-12-0000", 210)]:
        _voice(tmp_path / "train" / f"{name}.wav", f0)
    groups = flat_speaker_files(tmp_path / "train")
    assert {k: len(v) for k, v in groups.items()} == {"19": 2, "200": 1}
    ds = SpeakerFolderDataset(tmp_path / "train", "all", crop_seconds=0.5, layout="flat", repeats=3)
    assert ds.speakers == ["19", "200"] and len(ds) == 9
    ds.train = True
    assert [int(ds[i].target) for i in range(9)] == [0, 0, 1] * 3
    assert ds[4].values.shape == (1, 8000)
    _voice(tmp_path / "bad" / "nodash.wav", 100)
    with pytest.raises(ValueError, match="nodash.wav.*<speaker>-<utterance>"):
        flat_speaker_files(tmp_path / "bad")
    with pytest.raises(ValueError, match="repeats"):
        SpeakerFolderDataset(tmp_path / "train", layout="flat", repeats=0)


def test_all_pairs_trials(tmp_path):
    for spk, f0 in [("a", 100), ("b", 150), ("c", 220)]:
        for i in range(3):
            _voice(tmp_path / "eval" / spk / f"{i}.flac", f0 + i)
    from chanformer.datasets.speech.trials import VerificationTrials

    trials = VerificationTrials(all_pairs_trials(tmp_path / "eval", tmp_path / "t.txt"), tmp_path / "eval")
    assert len(trials) == 36 and sum(trials.labels) == 9 and len(trials.files) == 9
    assert all((a.split("/")[0] == b.split("/")[0]) == bool(y) for (a, b), y in zip(trials.pairs, trials.labels))


def test_utterance_statistics_separates_voices():
    sr = 16000
    t = np.arange(2 * sr) / sr
    low = torch.from_numpy(np.sin(2 * np.pi * 120 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).float()
    high = torch.from_numpy(np.sin(2 * np.pi * 900 * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))).float()
    a, b = utterance_statistics(low), utterance_statistics(high)
    assert a.shape == (160,) and torch.isfinite(a).all()
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, utterance_statistics(0.3 * low), dim=0) > 0.999  # level-invariant
    assert cos(a, b, dim=0) < cos(a, utterance_statistics(low[: sr]), dim=0)


@needs_libri
def test_librispeech_reader_builds_every_test_trial(tmp_path):
    dm = SpeakerVerificationDataModule(source="librispeech", root=str(LIBRI), cache_dir=str(tmp_path), n_val_speakers=20,
                                       val_segments=3, crops_per_utterance=4, eval_seconds=None)
    dm.setup()
    test = dm.test_trials
    assert test is not None and len(test) == 4950 and sum(test.labels) == 450 and len(test.files) == 100
    test_speakers = {f.split("/")[0] for f in test.files}
    assert len(test_speakers) == 10
    # 251 training speakers: 20 held out for validation, never in training; none is a test speaker
    assert len(dm.speakers) == 231 and len(dm.train_dataset) == 231 * 4
    val = dm.val_trials
    assert val is not None and len(val.files) == 60 and sum(val.labels) == 60 and len(val) == 1770
    val_speakers = {f.split("/")[0] for f in val.files}
    assert len(val_speakers) == 20 and not val_speakers & set(dm.speakers)
    assert not test_speakers & (set(dm.speakers) | val_speakers)
    # whole utterances (2-23 s) in one padded batch with typed lengths
    batch = next(iter(dm.test_dataloader()))
    assert batch.lengths is not None and int(batch.lengths.max()) == batch.values.shape[-1]
    assert dm.spec.num_classes == 231


def test_librispeech_reader_names_a_wrong_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="librispeech_train-clean-100"):
        SpeakerVerificationDataModule(source="librispeech", root=str(tmp_path))
    with pytest.raises(ValueError, match="root="):
        SpeakerVerificationDataModule(source="librispeech")


def test_librispeech_recipe_reads_real_speakers():
    import yaml

    from chanformer.cli.main import list_recipes, resolve_config

    assert "speaker-ecapa-librispeech" in list_recipes()
    cfg = yaml.safe_load(Path(resolve_config("speaker-ecapa-librispeech")).read_text())
    data, model = cfg["data"]["init_args"], cfg["model"]["init_args"]
    assert data["source"] == "librispeech" and data["root"] == "../shared/data/librispeech-subset"
    assert data["eval_seconds"] is None and data["n_val_speakers"] > 0
    assert model["stats_baseline"] is True and model["encoder_kwargs"]["input_size"] == 80
    assert model["lr_schedule"] == "warmup_cosine" and data["val_segments"] >= 6  # fine-grained validation
    # checkpoints are chosen on held-out TRAINING speakers, never on the test speakers
    assert cfg["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/eer"


# -- measured results (slow: each trains a shipped recipe on 2 CPU cores) -------------------------------
def _fit(*args: str, timeout: int = 3600) -> dict[str, float]:
    import os
    import re
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    exe = str(Path(sys.executable).with_name("chanformer"))
    proc = subprocess.run([exe, "fit", *args, "--trainer.enable_progress_bar=false"], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {m[1]: float(m[2]) for m in re.finditer(r"(test/[a-z_]+)\W+?(-?[0-9]+\.[0-9]+)", proc.stdout)}


#: measured with the recipe as shipped (seed 0; docs/speech.md "Speaker verification on real speakers")
LIBRI_EER, LIBRI_MIN_DCF, STATS_EER, STATS_MIN_DCF = 0.0289, 0.1156, 0.1022, 0.8613


@needs_libri
@pytest.mark.slow  # one training of the recipe: ~5.3 CPU-minutes (one torch thread), ~8 min wall on a shared 2-core machine
def test_speaker_ecapa_librispeech_measured(tmp_path):
    m = _fit("--config", "speaker-ecapa-librispeech", f"--data.init_args.root={LIBRI}",
             f"--data.init_args.cache_dir={tmp_path / 'data'}", f"--trainer.default_root_dir={tmp_path}",
             f"--model.init_args.export_dir={tmp_path / 'export'}")
    print(json.dumps(m))
    # the training-free baseline is deterministic: the same numbers as in the docs, on the same 4,950 trials
    assert m["test/eer_stats"] == pytest.approx(STATS_EER, abs=1e-3)
    assert m["test/min_dcf_stats"] == pytest.approx(STATS_MIN_DCF, abs=1e-3)
    # the trained ECAPA (checkpoint chosen on validation speakers) reproduces the measured numbers and
    # beats the same-run baseline clearly: EER at least 0.05 and minDCF at least 0.5 below it
    assert m["test/eer"] <= LIBRI_EER + 0.015 and m["test/min_dcf"] <= LIBRI_MIN_DCF + 0.1
    assert m["test/eer"] <= m["test/eer_stats"] - 0.05 and m["test/min_dcf"] <= m["test/min_dcf_stats"] - 0.5


def test_enhancement_mixtures_from_real_speech_folder(tmp_path):
    from chanformer.datasets.speech.datamodules import EnhancementDataModule

    for name, f0 in [("1-2-0", 110), ("1-2-1", 120), ("7-3-0", 180), ("9-4-0", 230), ("9-4-1", 240)]:
        _voice(tmp_path / "speech" / f"{name}.flac", f0)
    dm = EnhancementDataModule(speech_dir=str(tmp_path / "speech"), cache_dir=str(tmp_path / "cache"), n_test_speakers=1,
                               n_train=6, n_val=2, n_test=2, segment_seconds=0.25, eval_seconds=0.5)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (6, 2, 2)
    item = dm.train_dataset[0]
    assert item.values.shape == item.target.shape == (1, 4000)
    assert not torch.equal(item.values, item.target)  # noise was added
    with pytest.raises(FileNotFoundError, match="speech_dir"):
        EnhancementDataModule(speech_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="n_test_speakers"):
        EnhancementDataModule(speech_dir=str(tmp_path / "speech"), cache_dir=str(tmp_path / "c2"), n_test_speakers=3).setup()


#: enhance-mambattention as shipped (12 epochs), all 11 real pairs: (noisy, enhanced) means
ENH_REAL = {"si_sdr": (7.652, 6.885), "pesq": (1.436, 1.559), "estoi": (0.682, 0.675)}


@pytest.mark.slow  # trains the shipped enhancement recipe (12 epochs on espeak speech) and scores 11 real pairs
def test_enhance_mambattention_on_real_pairs_measured(tmp_path):
    from chanformer.datasets.speech.synth import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    if not (DATA / "dns2020" / "noisy").is_dir() or not (DATA / "voicebank-pairs" / "noisy").is_dir():
        pytest.skip(f"real pairs not found under {DATA}")
    from benchmarks.enhance_real import run

    _fit("--config", "enhance-mambattention", f"--data.init_args.cache_dir={tmp_path / 'data'}",
         f"--trainer.default_root_dir={tmp_path}", f"--model.init_args.export_dir={tmp_path / 'export'}")
    res = run(str(tmp_path / "export"), DATA)
    print(json.dumps(res["all"]))
    assert res["n_pairs"] == 11
    tol = {"si_sdr": 1.5, "pesq": 0.15, "estoi": 0.03}  # the recipe is not bit-deterministic (ConvTranspose2d)
    for k, (noisy, enhanced) in ENH_REAL.items():
        assert res["all"][f"{k}_noisy"] == pytest.approx(noisy, abs=1e-3)  # the inputs: exact
        assert res["all"][k] == pytest.approx(enhanced, abs=tol[k])
