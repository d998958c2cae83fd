"""CHB-MIT Scalp EEG reader on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.channels import eeg_1005_vocab
from chanformer.datasets.eeg.chbmit import (
    CHBMITDataModule,
    CHBMITDataset,
    CHBMITMissingError,
    parse_chbmit_summary,
)
from chanformer.datasets.eeg.readers import scalp_bipolar_key

_GEN = Path(__file__).parent / "data" / "chbmit" / "generate.py"
_spec = importlib.util.spec_from_file_location("chbmit_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def chb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("chbmit"))


def test_generator_writes_the_published_names(chb_root: Path) -> None:
    names = sorted(p.relative_to(chb_root).as_posix() for p in chb_root.rglob("*") if p.is_file())
    assert "chb01/chb01-summary.txt" in names and "chb12/chb12_06.edf.seizures" in names
    assert (chb_root / "RECORDS").read_text().split() == [
        "chb01/chb01_01.edf", "chb01/chb01_03.edf", "chb12/chb12_06.edf", "chb12/chb12_08.edf", "chb12/chb12_09.edf",
    ]  # fmt: skip
    assert (chb_root / "RECORDS-WITH-SEIZURES").read_text().split() == [
        "chb01/chb01_03.edf", "chb12/chb12_06.edf", "chb12/chb12_09.edf",
    ]  # fmt: skip


def test_summary_parser_reads_both_spellings_and_channel_changes(chb_root: Path) -> None:
    s1 = parse_chbmit_summary(chb_root / "chb01" / "chb01-summary.txt")
    assert list(s1) == ["chb01_01.edf", "chb01_03.edf"]
    assert s1["chb01_01.edf"].seizures == [] and s1["chb01_03.edf"].seizures == [(60.0, 84.0)]
    assert s1["chb01_03.edf"].start_time == "11:45:04" and s1["chb01_01.edf"].channels == list(gen.MONTAGE_23)
    s12 = parse_chbmit_summary(chb_root / "chb12" / "chb12-summary.txt")
    assert s12["chb12_06.edf"].seizures == [(20.0, 44.0), (80.0, 96.0)]  # "Seizure 1 Start Time:"
    assert s12["chb12_09.edf"].seizures == [(30.0, 50.0)]  # "Seizure Start Time:"
    assert s12["chb12_06.edf"].channels.count("-") == 5
    assert s12["chb12_08.edf"].channels == list(gen.MONTAGE_CHANGED)  # after "Channels changed:"


def test_summary_parser_refuses_inconsistent_entries(tmp_path: Path) -> None:
    bad = tmp_path / "chb99-summary.txt"
    bad.write_text("File Name: chb99_01.edf\nNumber of Seizures in File: 2\nSeizure Start Time: 5 seconds\n"
                   "Seizure End Time: 9 seconds\n")  # fmt: skip
    with pytest.raises(ValueError, match=r"chb99_01\.edf declares 2 seizure\(s\) but lists 1"):
        parse_chbmit_summary(bad)
    bad.write_text("File Name: chb99_01.edf\nNumber of Seizures in File: 1\nSeizure 1 Start Time: 9 seconds\n"
                   "Seizure 1 End Time: 5 seconds\n")  # fmt: skip
    with pytest.raises(ValueError, match=r"chb99-summary\.txt:4: seizure in chb99_01\.edf ends"):
        parse_chbmit_summary(bad)


def test_bipolar_keys_at_the_electrode_midpoint() -> None:
    vocab = eeg_1005_vocab()
    n = len(vocab)
    assert scalp_bipolar_key("FP1-F7", vocab) == "eeg/Fp1-F7" and len(vocab) == n + 1
    assert scalp_bipolar_key("EEG FP1-F7", vocab) == "eeg/Fp1-F7" and len(vocab) == n + 1
    assert vocab.resolve("fp1-f7", "eeg/") == "eeg/Fp1-F7"
    mid = (np.asarray(vocab["eeg/Fp1"].position) + np.asarray(vocab["eeg/F7"].position)) / 2
    np.testing.assert_allclose(vocab["eeg/Fp1-F7"].position, mid)
    assert vocab["eeg/Fp1-F7"].kind == "eeg"
    assert scalp_bipolar_key("P7-T7", vocab) != scalp_bipolar_key("T7-P7", vocab)  # polarity differs
    for name in ("FP1-REF", "T8-P8-0", "-", "--0", "ECG", "LOC-ROC", "Fp1-Fp1"):
        assert scalp_bipolar_key(name, vocab) is None, name


def test_windows_labels_and_channels(chb_root: Path) -> None:
    ds = CHBMITDataset(chb_root, window_s=4.0)
    assert ds.sfreq == 256.0 and ds.n_times == 1024 and ds.classes == ["background", "seizure"]
    assert sorted(set(ds.window_subjects)) == ["chb01", "chb12"]
    for rec, src in enumerate(ds.sources):
        case, number = Path(src).stem.split("_")
        entry = next(r for r in gen.RECORDINGS[case] if r[0] == int(number))
        starts = np.arange(len(ds.labels[rec])) * 4.0
        expect = np.zeros(len(starts), int)
        for a, b in entry[3]:
            expect |= (np.clip(np.minimum(starts + 4, b) - np.maximum(starts, a), 0, None) >= 2.0).astype(int)
        assert ds.labels[rec].tolist() == expect.tolist(), src
        keys = ds.channel_keys[rec]
        # 22 distinct bipolar channels: the repeated T8-P8, the placeholders and ECG/VNS/LOC-ROC left out
        assert len(keys) == len(set(keys)) == 22 and keys[0] == "eeg/Fp1-F7" and "eeg/Fz-Cz" in keys
        assert "eeg/T8-P8" in keys and "eeg/P7-T7" in keys and "eeg/T7-P7" in keys
    assert ds.left_out_channels[str(chb_root / "chb12" / "chb12_06.edf")] == ["-"] * 5 + ["T8-P8"]
    assert ds.left_out_channels[str(chb_root / "chb12" / "chb12_08.edf")] == ["ECG", "VNS", "LOC-ROC"]
    sample = ds[0]
    assert sample.values.shape == (22, 1024) and sample.values.dtype == torch.float32
    assert not torch.isnan(sample.coords).any()  # midpoints of 10-05 electrodes
    assert 1e-5 < float(sample.values.std()) < 4e-5  # 20 uV noise, in volts
    seizure = int(np.flatnonzero(ds.targets == 1)[0])
    info = ds.window_info(seizure)
    assert info["label"] == "seizure" and info["file"] == "chb01_03.edf" and 56 <= info["onset"] <= 82
    assert float(ds[seizure].values.std()) > 3 * float(sample.values.std())


def test_subject_and_file_selection(chb_root: Path) -> None:
    ds = CHBMITDataset(chb_root, subjects=["chb12"], files=["chb12_09.edf"], window_s=2.0, stride_s=1.0)
    assert set(ds.window_files) == {"chb12_09.edf"} and len(ds) == 119
    assert int(ds.targets.sum()) == 21  # 2 s windows every 1 s with >= 1 s inside 30-50 s
    with pytest.raises(ValueError, match=r"chb01_99\.edf"):
        CHBMITDataset(chb_root, subjects=[1], files=["chb01_99.edf"])


def test_same_patient_cases_share_a_patient(chb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "db"
    shutil.copytree(chb_root / "chb01", root / "chb21")
    for p in sorted((root / "chb21").iterdir()):
        p.rename(p.with_name(p.name.replace("chb01", "chb21")))
    summary = root / "chb21" / "chb21-summary.txt"
    summary.write_text(summary.read_text().replace("chb01", "chb21"))
    shutil.copytree(chb_root / "chb01", root / "chb01")
    ds = CHBMITDataset(root, window_s=4.0)
    assert set(ds.window_subjects) == {"chb01", "chb21"} and set(ds.window_patients) == {"chb01"}


def test_missing_layout_is_a_named_error(chb_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CHBMITMissingError, match=r"chb01-summary\.txt.*physionet\.org.*never downloads"):
        CHBMITDataset(tmp_path / "nowhere")
    with pytest.raises(CHBMITMissingError, match="no case folders"):
        CHBMITDataset(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(chb_root, partial)
    (partial / "chb12" / "chb12_08.edf").unlink()
    (partial / "chb01" / "chb01-summary.txt").unlink()
    with pytest.raises(CHBMITMissingError, match=r"2 CHB-MIT file\(s\) missing .*chb01-summary\.txt.*chb12_08\.edf"):
        CHBMITDataset(partial)
    with pytest.raises(CHBMITMissingError, match=r"chb05/"):
        CHBMITDataset(chb_root, subjects=[5])
    nested = tmp_path / "physionet.org" / "files" / "chbmit" / "1.0.0"
    shutil.copytree(chb_root / "chb01", nested / "chb01")
    assert set(CHBMITDataset(tmp_path / "physionet.org").window_subjects) == {"chb01"}


def test_datamodule_split_by_patient(chb_root: Path) -> None:
    dm = CHBMITDataModule(str(chb_root), test_subjects=1)
    dm.setup()
    ds = dm.dataset
    assert ds is not None and dm.spec.n_times == 512 and dm.spec.sfreq == 128.0
    test = np.asarray(dm.test_dataset.indices)  # type: ignore[union-attr]
    train = np.asarray(dm.train_dataset.indices)  # type: ignore[union-attr]
    assert set(ds.window_patients[test]) == {"chb12"} and set(ds.window_patients[train]) == {"chb01"}
    assert dm.train_dataset[0].values.shape == (22, 512)  # type: ignore[index]
    assert 5 < float(dm.train_dataset[0].values.std()) < 40  # type: ignore[index]  # microvolts
    contract = dm.input_contract()
    assert contract.reference == "bipolar" and "eeg/Fp1-F7" in contract.channels


def test_recipe_trains_an_epoch(chb_root: Path, tmp_path: Path) -> None:
    from chanformer.cli.lightning_cli import run_lightning_cli
    from chanformer.cli.main import list_recipes, resolve_config

    assert "chbmit-seizure-mvpformer" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("chbmit-seizure-mvpformer"), f"--data.init_args.root={chb_root}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2
    assert np.isfinite(float(cli.trainer.callback_metrics["test/loss"]))
    assert cli.model.encoder.segment_samples * 8 == cli.datamodule.n_times
