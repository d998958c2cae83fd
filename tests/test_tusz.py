"""TUH EEG Seizure Corpus (TUSZ v2) reader on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
import torch

from chanformer.datasets.eeg.tusz import TUSZDataModule, TUSZDataset, TUSZMissingError, read_csv_bi

_GEN = Path(__file__).parent / "data" / "tusz" / "generate.py"
_spec = importlib.util.spec_from_file_location("tusz_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def tusz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("tusz"))


def _stem(rec: tuple) -> str:
    split, subject, session, montage, token = rec[:5]
    return f"edf/{split}/{subject}/{session}/{montage}/{subject}_{session.split('_')[0]}_{token}"


def test_generator_writes_the_published_names(tusz_root: Path) -> None:
    for rec in gen.RECORDINGS:
        for ext in (".edf", ".csv_bi", ".csv"):
            assert (tusz_root / (_stem(rec) + ext)).is_file()
    raw = mne.io.read_raw_edf(tusz_root / (_stem(gen.RECORDINGS[0]) + ".edf"), verbose="error")
    assert raw.ch_names[0] == "EEG FP1-LE" and "PHOTIC-REF" in raw.ch_names and raw.info["sfreq"] == 250.0


def test_csv_bi_reader(tusz_root: Path, tmp_path: Path) -> None:
    rows, duration = read_csv_bi(tusz_root / (_stem(gen.RECORDINGS[2]) + ".csv_bi"))
    assert duration == 90.0
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("TERM", 0.0, 10.0, "bckg"), ("TERM", 10.0, 30.5, "seiz"), ("TERM", 30.5, 60.0, "bckg"),
        ("TERM", 60.0, 75.0, "seiz"), ("TERM", 75.0, 90.0, "bckg"),
    ]  # fmt: skip
    per_channel, _ = read_csv_bi(tusz_root / (_stem(gen.RECORDINGS[2]) + ".csv"))
    assert ("FP1-F7", 10.0, 30.5, "gnsz", 1.0) in per_channel
    bad = tmp_path / "x.csv_bi"
    bad.write_text("# version = csv_v1.0.0\nchannel,start_time,stop_time,label,confidence\nTERM,0,5,fnsz,1\n")
    with pytest.raises(ValueError, match=r"x\.csv_bi:3: label 'fnsz' is not one of"):
        read_csv_bi(bad)
    bad.write_text("TERM,0,5,seiz,1\n")
    with pytest.raises(ValueError, match="expected the header"):
        read_csv_bi(bad)


def test_tcp_windows_labels_and_splits(tusz_root: Path) -> None:
    ds = TUSZDataset(tusz_root, resample=256.0, window_s=4.0)
    assert ds.sfreq == 256.0 and ds.n_times == 1024
    assert [len(k) for k in ds.channel_keys] == [22, 22, 22, 22, 22, 20, 20]  # 03_tcp_ar_a lacks A1/A2
    assert ds.channel_keys[0][:3] == ["eeg/Fp1-F7", "eeg/F7-T3", "eeg/T3-T5"] and "eeg/A1-T3" in ds.channel_keys[0]
    assert "eeg/A1-T3" not in ds.channel_keys[-1]
    assert not torch.isnan(ds[0].coords).any()
    for rec, rec_gen in enumerate(gen.RECORDINGS):
        starts = np.arange(len(ds.labels[rec])) * 4.0
        expect = np.zeros(len(starts), int)
        for a, b, _ in rec_gen[7]:
            expect |= (np.clip(np.minimum(starts + 4, b) - np.maximum(starts, a), 0, None) >= 2.0).astype(int)
        assert ds.labels[rec].tolist() == expect.tolist(), ds.sources[rec]
        idx = np.flatnonzero(ds.recording_of == rec)
        assert set(ds.window_splits[idx]) == {rec_gen[0]} and set(ds.window_montages[idx]) == {rec_gen[3]}
        assert set(ds.window_subjects[idx]) == {rec_gen[1]}
    info = ds.window_info(int(np.flatnonzero(ds.targets == 1)[0]))
    assert info["label"] == "seizure" and info["split"] == "train" and info["session"] == "s001_2002"


def test_tcp_channel_is_the_difference_of_its_electrodes(tusz_root: Path) -> None:
    path = tusz_root / (_stem(gen.RECORDINGS[3]) + ".edf")
    ds = TUSZDataset(tusz_root, splits=["dev"], subjects=["aaaaaaaq"], window_s=1.0)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    expected = raw.get_data(picks=["EEG FP1-REF"])[0, :256] - raw.get_data(picks=["EEG F7-REF"])[0, :256]
    np.testing.assert_allclose(ds[0].values[0].numpy(), expected, rtol=1e-5, atol=1e-9)


def test_referential_montage_and_filters(tusz_root: Path) -> None:
    ds = TUSZDataset(tusz_root, montage="referential", splits=["train"], montages=["tcp_le"], window_s=2.0)
    assert set(ds.window_montages) == {"02_tcp_le"} and ds.sfreq == 250.0
    keys = ds.channel_keys[0]
    assert len(keys) == 21 and keys[:3] == ["eeg/Fp1", "eeg/Fp2", "eeg/F3"] and "eeg/T3" in keys  # EEG T3-LE
    assert not any(k in keys for k in ("eeg/T1", "eeg/EKG1"))  # non-EEG channels left out
    with pytest.raises(ValueError, match="different sampling rates"):
        TUSZDataset(tusz_root, splits=["train"])  # 250 and 256 Hz files, no resample=


def test_missing_layout_is_a_named_error(tusz_root: Path, tmp_path: Path) -> None:
    with pytest.raises(TUSZMissingError, match=r"root folder not found.*edf/\{train,dev,eval\}.*never downloads"):
        TUSZDataset(tmp_path / "nowhere")
    with pytest.raises(TUSZMissingError, match="no edf/train"):
        TUSZDataset(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(tusz_root, partial)
    shutil.rmtree(partial / "edf" / "eval")
    with pytest.raises(TUSZMissingError, match=r"split folder\(s\) missing.*edf/eval/"):
        TUSZDataset(partial, resample=256.0)
    (partial / (_stem(gen.RECORDINGS[1]) + ".csv_bi")).unlink()
    with pytest.raises(TUSZMissingError, match=r"1 TUSZ annotation file\(s\) missing: .*aaaaaaac_s001_t001\.csv_bi"):
        TUSZDataset(partial, splits=["train", "dev"], resample=256.0)
    # <root> may be the edf folder itself
    assert len(TUSZDataset(tusz_root / "edf", splits=["eval"])) > 0


def test_datamodule_official_splits(tusz_root: Path) -> None:
    dm = TUSZDataModule(str(tusz_root))
    dm.setup()
    ds = dm.dataset
    assert ds is not None
    for subset, split in ((dm.train_dataset, "train"), (dm.val_dataset, "dev"), (dm.test_dataset, "eval")):
        assert set(ds.window_splits[np.asarray(subset.indices)]) == {split}  # type: ignore[union-attr]
    assert dm.train_dataset[0].values.shape == (22, 512)  # type: ignore[index]
    assert dm.input_contract().reference == "bipolar"


def test_recipe_trains_an_epoch(tusz_root: Path, tmp_path: Path) -> None:
    from chanformer.cli.lightning_cli import run_lightning_cli
    from chanformer.cli.main import list_recipes, resolve_config

    assert "tusz-seizure-mvpformer" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("tusz-seizure-mvpformer"), f"--data.init_args.root={tusz_root}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2
    assert np.isfinite(float(cli.trainer.callback_metrics["test/loss"]))
