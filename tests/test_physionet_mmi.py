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
