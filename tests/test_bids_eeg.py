"""BIDS-EEG reader (via mne-bids) on a miniature BIDS tree written by mne_bids.write_raw_bids."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mne_bids")

from chanformer.datasets.eeg.bids import BIDSEEGDataset, BIDSMissingError  # noqa: E402

_GEN = Path(__file__).parent / "data" / "bids_eeg" / "generate.py"
_spec = importlib.util.spec_from_file_location("bids_eeg_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("bids"))


def test_generator_writes_a_bids_tree(bids_root: Path) -> None:
    assert (bids_root / "dataset_description.json").is_file() and (bids_root / "participants.tsv").is_file()
    eeg = bids_root / "sub-02" / "ses-01" / "eeg"
    assert (eeg / "sub-02_ses-01_task-motor_run-1_eeg.edf").is_file()
    channels = (eeg / "sub-02_ses-01_task-motor_run-1_channels.tsv").read_text().splitlines()
    status = {line.split("\t")[0]: line.split("\t")[7] for line in channels[1:]}
    assert status["C4"] == "bad" and status["C3"] == "good"
    events = (eeg / "sub-02_ses-01_task-motor_run-1_events.tsv").read_text().splitlines()
    assert events[0].split("\t")[:3] == ["onset", "duration", "trial_type"]
    assert [e.split("\t")[2] for e in events[1:]] == [gen.CLASSES[c] for c in gen.RECORDINGS[3][4]]


def test_trials_labelled_by_trial_type(bids_root: Path) -> None:
    ds = BIDSEEGDataset(bids_root, tmin=0.0, tmax=2.0)
    assert ds.classes == ["left", "right"] and ds.num_classes == 2 and ds.sfreq == 200.0
    for sub, ses, task, run, cues, _ in gen.RECORDINGS:
        if cues is None:
            continue
        idx = np.flatnonzero((ds.window_subjects == sub) & (ds.window_runs == str(run)))
        assert [ds.window_info(i)["label"] for i in idx] == [gen.CLASSES[c] for c in cues]
        assert set(ds.window_tasks[idx]) == {task} and set(ds.window_sessions[idx]) == {ses}
        # the trial marker on C3 (channel 1 of the kept channels): MARK_UV x (class + 1)
        marks = [float(ds[i].values[1].mean()) * 1e6 for i in idx]
        np.testing.assert_allclose(marks, [gen.MARK_UV * (c + 1) for c in cues], atol=2.0)
    assert len(ds) == sum(len(r[4] or ()) for r in gen.RECORDINGS)


def test_channel_types_and_bad_channels(bids_root: Path) -> None:
    ds = BIDSEEGDataset(bids_root, subjects=["sub-02"], tmin=0.0, tmax=1.0)
    assert ds.channel_keys == [["eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/Pz"]]  # C4 bad, EOG not EEG
    assert list(ds.marked_bad_channels.values()) == [["C4"]]
    kept = BIDSEEGDataset(bids_root, subjects=["02"], drop_bads=False, tmin=0.0, tmax=1.0)
    assert kept.channel_keys == [["eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"]]


def test_entity_selection_windows_and_trial_types(bids_root: Path) -> None:
    rest = BIDSEEGDataset(bids_root, tasks=["rest"], mode="windows", window_s=2.0)
    assert set(rest.window_tasks) == {"rest"} and len(rest) == 10 and rest.num_classes is None
    assert rest.window_info(0)["run"] == ""
    run2 = BIDSEEGDataset(bids_root, runs=[2], tmin=0.0, tmax=1.0)
    assert set(run2.window_runs) == {"2"} and len(run2) == 3
    right = BIDSEEGDataset(bids_root, trial_types=["right"], tmin=0.0, tmax=1.0)
    assert right.classes == ["right"] and set(right.targets) == {0}
    assert len(right) == sum((r[4] or ()).count(1) for r in gen.RECORDINGS)


def test_named_errors(bids_root: Path, tmp_path: Path) -> None:
    with pytest.raises(BIDSMissingError, match="BIDS root not found"):
        BIDSEEGDataset(tmp_path / "nowhere")
    with pytest.raises(BIDSMissingError, match="no dataset_description.json"):
        BIDSEEGDataset(tmp_path)
    with pytest.raises(BIDSMissingError, match=r"no eeg recordings .*subjects=\['09'\].*subjects: \['01', '02'\]"):
        BIDSEEGDataset(bids_root, subjects=["09"])
    with pytest.raises(BIDSMissingError, match="no ieeg recordings"):
        BIDSEEGDataset(bids_root, datatype="ieeg")
    with pytest.raises(ValueError, match=r"trial_type\(s\) \['up'\] occur in no events\.tsv"):
        BIDSEEGDataset(bids_root, trial_types=["up"])
    with pytest.raises(ValueError, match="mode='windows'"):
        BIDSEEGDataset(bids_root, tasks=["rest"])
