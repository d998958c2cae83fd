"""PhysioNet EEGMMIDB reader on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelSample
from chanformer.datasets.eeg.physionet_mmi import (
    RUN_TYPES,
    TASKS,
    PhysionetMMIDataset,
    PhysionetMMIMissingError,
    physionet_mmi_path,
)

_GEN = Path(__file__).parent / "data" / "physionet_mmi" / "generate.py"
_spec = importlib.util.spec_from_file_location("physionet_mmi_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def mmi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 subjects x runs 1 (baseline), 4 (imagery L/R), 5 (real fists/feet)."""
    return gen.generate(tmp_path_factory.mktemp("eegmmidb"))


def test_generator_writes_the_published_names(mmi_root: Path) -> None:
    names = sorted(p.relative_to(mmi_root).as_posix() for p in mmi_root.rglob("*.edf"))
    assert names == [f"S00{s}/S00{s}R0{r}.edf" for s in (1, 2) for r in (1, 4, 5)]
    assert len(gen.CHANNELS) == len(set(gen.CHANNELS)) == 64
    assert physionet_mmi_path(mmi_root, "S002", 5) == mmi_root / "S002" / "S002R05.edf"


def test_imagery_lr_labels_subjects_runs_and_shape(mmi_root: Path) -> None:
    ds = PhysionetMMIDataset(mmi_root, subjects=[1, 2], runs=[4], tmin=0.0, tmax=4.0)
    assert ds.classes == ["left_fist", "right_fist"] and ds.num_classes == 2
    # per subject, the cues in order (T1 -> left_fist, T2 -> right_fist), rest left out
    expect = {1: ["left_fist", "right_fist", "right_fist", "left_fist"], 2: ["right_fist", "left_fist", "left_fist"]}
    for s in (1, 2):
        idx = np.flatnonzero(ds.window_subjects == s)
        assert [ds.window_info(i)["label"] for i in idx] == expect[s]
        assert [ds.classes[int(ds[i].target)] for i in idx] == expect[s]
    assert set(ds.window_runs) == {4} and set(ds.window_run_types) == {"imagery_lr"}
    assert len(ds) == 7
    sample = ds[0]
    assert isinstance(sample, ChannelSample)
    assert sample.values.shape == (64, 640) and sample.values.dtype == torch.float32
    assert ds.sfreq == 160.0 and ds.n_times == 640
    std = float(sample.values.std())
    assert 5e-6 < std < 5e-5  # 20 uV noise, read in volts


def test_channel_keys_are_10_05(mmi_root: Path) -> None:
    ds = PhysionetMMIDataset(mmi_root, subjects=["S001"], runs=[4])
    keys = ds.channel_keys[0]
    assert len(keys) == 64 and len(set(keys)) == 64
    assert keys[:3] == ["eeg/FC5", "eeg/FC3", "eeg/FC1"]
    assert {"eeg/Cz", "eeg/C3", "eeg/T10", "eeg/Iz", "eeg/Fp1"} <= set(keys)
    assert ds[0].channel_ids.tolist() == ds.vocab.ids(keys)
    assert not torch.isnan(ds[0].coords).any()  # positions from the 10-05 vocabulary


def test_fists_feet_and_baseline_with_rest(mmi_root: Path) -> None:
    ds = PhysionetMMIDataset(mmi_root, subjects=[1], runs=[1, 5], include_rest=True)
    assert ds.classes == ["rest", "both_fists", "both_feet", "eyes_open"]
    by_run = {r: [ds.window_info(i)["label"] for i in np.flatnonzero(ds.window_runs == r)] for r in (1, 5)}
    assert by_run[1] == ["eyes_open"]
    cues = {"T1": "both_fists", "T2": "both_feet"}
    assert by_run[5] == [x for c in gen.CUES[1] for x in ("rest", cues[c])] + ["rest"]
    assert set(ds.window_run_types[ds.window_runs == 5]) == {"real_fists_feet"}
    assert set(ds.window_subjects) == {1}


def test_label_meaning_for_every_run_type(tmp_path: Path) -> None:
    root = gen.generate(tmp_path, subjects=(1,), runs=(2, 3, 6))
    ds = PhysionetMMIDataset(root, runs=[2, 3, 6])
    assert ds.classes == ["left_fist", "right_fist", "both_fists", "both_feet", "eyes_closed"]
    labels = {r: {ds.window_info(i)["label"] for i in np.flatnonzero(ds.window_runs == r)} for r in (2, 3, 6)}
    assert labels == {2: {"eyes_closed"}, 3: {"left_fist", "right_fist"}, 6: {"both_fists", "both_feet"}}
    assert {RUN_TYPES[r] for r in TASKS["imagery"]} == {"imagery_lr", "imagery_fists_feet"}


def test_missing_root_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(PhysionetMMIMissingError, match=r"S001R01\.edf .*physionet\.org.*never downloads"):
        PhysionetMMIDataset(tmp_path / "nowhere")
    with pytest.raises(PhysionetMMIMissingError, match="no subject folders"):
        PhysionetMMIDataset(tmp_path)
    assert issubclass(PhysionetMMIMissingError, FileNotFoundError)


def test_missing_run_is_a_named_error(mmi_root: Path, tmp_path: Path) -> None:
    pattern = r"4 EEGMMIDB run file\(s\) missing \(partial download\?\): .*S001R08\.edf.*S002R12\.edf"
    with pytest.raises(PhysionetMMIMissingError, match=pattern):
        PhysionetMMIDataset(mmi_root, task="imagery_lr")  # runs 4, 8, 12: only 4 was written
    partial = tmp_path / "partial"
    shutil.copytree(mmi_root, partial)
    (partial / "S002" / "S002R04.edf").unlink()
    with pytest.raises(PhysionetMMIMissingError, match=r"1 EEGMMIDB run file\(s\) missing .*S002R04\.edf"):
        PhysionetMMIDataset(partial, runs=[4])


def test_wget_layout_and_argument_errors(mmi_root: Path, tmp_path: Path) -> None:
    nested = tmp_path / "physionet.org" / "files" / "eegmmidb" / "1.0.0"
    shutil.copytree(mmi_root / "S001", nested / "S001")
    ds = PhysionetMMIDataset(tmp_path / "physionet.org", runs=[4])
    assert ds.subject_list == [1] and len(ds) == 4
    with pytest.raises(ValueError, match="either runs"):
        PhysionetMMIDataset(mmi_root, runs=[4], task="imagery_lr")
    with pytest.raises(ValueError, match="unknown task"):
        PhysionetMMIDataset(mmi_root, task="typing")
    with pytest.raises(ValueError, match=r"1\.\.109"):
        PhysionetMMIDataset(mmi_root, subjects=[110], runs=[4])


# -- datamodule + recipe ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mmi_four(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 subjects x the imagery left/right runs 4, 8, 12."""
    return gen.generate(tmp_path_factory.mktemp("eegmmidb4"), subjects=(1, 2, 3, 4), runs=(4, 8, 12))


def test_datamodule_cross_subject_split(mmi_four: Path) -> None:
    from chanformer.datasets.eeg.physionet_mmi import CHANNELS, PhysionetMMIDataModule

    dm = PhysionetMMIDataModule(str(mmi_four), val_fraction=0.25, test_fraction=0.25, seed=3)
    spec = dm.spec  # known before any file is read
    assert spec.class_names == ["left_fist", "right_fist"] and spec.num_classes == 2
    assert spec.n_times == 512 and spec.sfreq == 128.0
    assert spec.channels is not None and len(spec.channels) == len(CHANNELS) == 64
    assert spec.channels[:4] == ["eeg/FC5", "eeg/FC3", "eeg/FC1", "eeg/FCz"] and spec.channels[-1] == "eeg/Iz"
    dm.setup()
    ds = dm.dataset
    assert ds is not None
    assert all(keys == spec.channels for keys in ds.channel_keys)  # every file: the same montage, in file order
    assert set(ds.window_runs) == {4, 8, 12} and len(ds) == 3 * sum(len(gen.CUES[s]) for s in (1, 2, 3, 4))
    parts = [np.asarray(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]  # type: ignore[union-attr]
    groups = [set(ds.window_subjects[p].tolist()) for p in parts]
    assert [len(g) for g in groups] == [2, 1, 1] and set().union(*groups) == {1, 2, 3, 4}
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(p) for p in parts) == len(ds)  # every trial of a subject goes with it
    # labels: T1 -> left_fist, T2 -> right_fist in cue order
    cue = {"T1": 0, "T2": 1}
    for s in (1, 2, 3, 4):
        idx = np.flatnonzero((ds.window_subjects == s) & (ds.window_runs == 8))
        assert ds.targets[idx].tolist() == [cue[c] for c in gen.CUES[s]]
    sample = dm.train_dataset[0]  # type: ignore[index]
    assert sample.values.shape == (64, 512)
    assert 0.3 < float(sample.values.std()) < 3.0  # Euclidean-aligned: unit scale
    # the same seed draws the same held-out subjects; another seed may not
    again = PhysionetMMIDataModule(str(mmi_four), val_fraction=0.25, test_fraction=0.25, seed=3)
    again.setup()
    assert again.test_dataset.indices == dm.test_dataset.indices  # type: ignore[union-attr]
    contract = dm.input_contract()
    assert sorted(contract.channels) == sorted(spec.channels) and contract.alignment == "euclidean"
    assert contract.sfreq == 128.0 and contract.window_s == 4.0 and contract.extra["runs"] == [4, 8, 12]


def test_datamodule_within_subject_and_named_test_subjects(mmi_four: Path) -> None:
    from chanformer.datasets.eeg.physionet_mmi import PhysionetMMIDataModule

    dm = PhysionetMMIDataModule(
        str(mmi_four), runs=[4, 8], split="within_subject", val_fraction=0.2, test_fraction=0.2,
        euclidean_alignment=False, resample=None, l_freq=None, h_freq=None,
    )  # fmt: skip
    dm.setup()
    ds = dm.dataset
    assert ds is not None and set(ds.window_runs) == {4, 8}
    parts = [np.asarray(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]  # type: ignore[union-attr]
    assert not set(parts[0]) & set(parts[1]) and not set(parts[0]) & set(parts[2]) and not set(parts[1]) & set(parts[2])
    for p in parts:  # every subject in every split
        assert set(ds.window_subjects[p].tolist()) == {1, 2, 3, 4}
    for s in (1, 2, 3, 4):  # each class of each subject keeps a training trial
        assert set(ds.targets[parts[0][ds.window_subjects[parts[0]] == s]].tolist()) == {0, 1}
    assert dm.spec.n_times == 640 and dm.train_dataset[0].values.shape == (64, 640)  # type: ignore[index]
    # volts x 1e5 (units of 10 uV): 20 uV noise is about 2
    assert 1.0 < float(dm.train_dataset[0].values.std()) < 4.0  # type: ignore[index]

    named = PhysionetMMIDataModule(str(mmi_four), runs=[4], test_subjects=[2], val_fraction=0.3, exclude_subjects=[4])
    named.setup()
    nds = named.dataset
    assert nds is not None and set(nds.window_subjects.tolist()) == {1, 2, 3}
    assert set(nds.window_subjects[named.test_dataset.indices].tolist()) == {2}  # type: ignore[union-attr]
    assert len(set(nds.window_subjects[named.val_dataset.indices].tolist())) == 1  # type: ignore[union-attr]
    four = PhysionetMMIDataModule(str(mmi_four), task="imagery", runs=[4], include_rest=True)
    assert four.classes == ["rest", "left_fist", "right_fist"]  # runs= wins over task=
    with pytest.raises(ValueError, match="unknown task"):
        PhysionetMMIDataModule(str(mmi_four), task="typing")
    with pytest.raises(ValueError, match="leaves none to train on"):
        PhysionetMMIDataModule(str(mmi_four), runs=[4], subjects=[1, 2]).setup()


def test_recipe_trains_an_epoch(mmi_four: Path, tmp_path: Path) -> None:
    from chanformer.cli.lightning_cli import run_lightning_cli
    from chanformer.cli.main import list_recipes, resolve_config

    assert "physionet-mmi-dbconformer" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("physionet-mmi-dbconformer"), f"--data.init_args.root={mmi_four}",
        "--data.init_args.test_fraction=0.25", "--data.init_args.runs=[4]", "--data.init_args.resample=64",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        "--trainer.logger=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step >= 1
    assert np.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
    assert cli.model.num_classes == 2
    assert list(cli.model.encoder.channels) == cli.datamodule.channels  # the montage comes from the data
