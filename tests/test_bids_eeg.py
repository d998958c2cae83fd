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


# -- datamodule + recipe ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bids_three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The miniature plus a third subject (Fz marked bad): three channel sets, three subjects."""
    return gen.generate(tmp_path_factory.mktemp("bids3"), gen.RECORDINGS + gen.EXTRA_SUBJECT)


def test_datamodule_cross_subject_split_labels_and_channels(bids_three: Path) -> None:
    from chanformer.datasets.eeg.bids import BIDSEEGDataModule

    dm = BIDSEEGDataModule(str(bids_three), tmin=0.0, tmax=2.0, l_freq=None, h_freq=None, val_fraction=0.3,
                           test_fraction=0.3, seed=1)  # fmt: skip
    dm.setup()
    ds = dm.dataset
    spec = dm.spec
    assert spec.class_names == ["left", "right"] and spec.num_classes == 2
    assert spec.sfreq == 128.0 and spec.n_times == 256
    # the channel sets differ (sub-02: C4 bad, sub-03: Fz bad): no fixed montage
    assert {tuple(k) for k in ds.channel_keys} == {
        ("eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"), ("eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/Pz"),
        ("eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"),
    }  # fmt: skip
    assert spec.channels is None and dm.channels is None
    parts = [np.asarray(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]  # type: ignore[union-attr]
    groups = [set(ds.window_subjects[p].tolist()) for p in parts]
    assert sorted(len(g) for g in groups) == [1, 1, 1] and set().union(*groups) == {"01", "02", "03"}
    assert sum(len(p) for p in parts) == len(ds) == sum(len(r[4] or ()) for r in gen.RECORDINGS + gen.EXTRA_SUBJECT)
    # labels per trial, and the trial marker on C3 (MARK_UV x (class + 1) uV, here in units of 10 uV)
    c3 = ds.vocab.ids(["eeg/C3"])[0]
    for sub, _, _, run, cues, _ in gen.RECORDINGS + gen.EXTRA_SUBJECT:
        if cues is None:
            continue
        idx = np.flatnonzero((ds.window_subjects == sub) & (ds.window_runs == str(run)))
        assert ds.targets[idx].tolist() == list(cues)
        marks = [float(ds[i].values[ds[i].channel_ids.tolist().index(c3), : 2 * 128].mean()) * 10 for i in idx]
        np.testing.assert_allclose(marks, [gen.MARK_UV * (c + 1) for c in cues], atol=3.0)
    assert dm.train_dataset[0].values.shape[-1] == 256  # type: ignore[index]
    contract = dm.input_contract()
    assert contract.channels == [k for k in ds.vocab.keys if k in {"eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"}]
    assert contract.sfreq == 128.0 and contract.scale == 1e5 and contract.extra["classes"] == ["left", "right"]

    named = BIDSEEGDataModule(str(bids_three), test_subjects=["sub-03"], val_fraction=0.3, seed=1)
    named.setup()
    nds = named.dataset
    assert set(nds.window_subjects[named.test_dataset.indices].tolist()) == {"03"}  # type: ignore[union-attr]
    one = BIDSEEGDataModule(str(bids_three), subjects=["02"], split="cross_subject")
    assert one.spec.channels == ["eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/Pz"]  # one recording: a fixed montage
    with pytest.raises(ValueError, match="leaves none to train on"):
        one.setup()


def test_datamodule_within_subject(bids_three: Path) -> None:
    from chanformer.datasets.eeg.bids import BIDSEEGDataModule

    dm = BIDSEEGDataModule(str(bids_three), tasks=["motor"], trial_types=["right", "left"], split="within_subject",
                           val_fraction=0.2, test_fraction=0.2, euclidean_alignment=True)  # fmt: skip
    dm.setup()
    ds = dm.dataset
    assert dm.classes == ["right", "left"]  # trial_types order
    parts = [np.asarray(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]  # type: ignore[union-attr]
    assert not set(parts[0]) & set(parts[1]) and not set(parts[0]) & set(parts[2]) and not set(parts[1]) & set(parts[2])
    assert set(ds.window_subjects[parts[0]].tolist()) == set(ds.window_subjects[parts[2]].tolist()) == {"01", "02", "03"}
    for s in ("01", "02", "03"):  # each class of each subject keeps a training trial
        assert set(ds.targets[parts[0][ds.window_subjects[parts[0]] == s]].tolist()) == {0, 1}
    assert 0.3 < float(dm.train_dataset[0].values.std()) < 3.0  # type: ignore[index]  # aligned: unit scale
    assert dm.input_contract().alignment == "euclidean" and dm.input_contract().scale is None


def test_recipe_trains_an_epoch(bids_three: Path, tmp_path: Path) -> None:
    from chanformer.cli.lightning_cli import run_lightning_cli
    from chanformer.cli.main import list_recipes, resolve_config

    assert "bids-eeg-softs" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("bids-eeg-softs"), f"--data.init_args.root={bids_three}",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step >= 1
    assert np.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
    assert cli.model.num_classes == 2
    assert cli.model.encoder.channel_embed.num_embeddings == len(cli.datamodule.vocab)  # a row per vocabulary key
    groups = [set(cli.datamodule.dataset.window_subjects[d.indices].tolist())
              for d in (cli.datamodule.train_dataset, cli.datamodule.val_dataset, cli.datamodule.test_dataset)]  # fmt: skip
    assert sorted(len(g) for g in groups) == [1, 1, 1]  # 3 subjects: one each for train, val, test
