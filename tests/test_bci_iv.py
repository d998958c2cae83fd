"""BCI Competition IV 2a / 2b readers on generated miniatures of the published GDF + .mat layout."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
import torch

from chanformer.batch import ChannelSample
from chanformer.datasets.eeg.bci_iv import (
    CHANNELS_2A,
    EOG_2A,
    BCIIV2aDataset,
    BCIIV2bDataset,
    BCIIVDataModule,
    BCIIVMissingError,
    bci_iv_path,
)

_GEN = Path(__file__).parent / "data" / "bci_iv" / "generate.py"
_spec = importlib.util.spec_from_file_location("bci_iv_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def root_2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate_2a(tmp_path_factory.mktemp("bciciv") / "2a")


@pytest.fixture(scope="module")
def root_2b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate_2b(tmp_path_factory.mktemp("bciciv") / "2b")


def _cue_mark(sample: ChannelSample, channel: int, n: int) -> float:
    """The generator's cue marker (MARK_UV x (class + 1) uV for 1 s after the cue), in uV."""
    return float(sample.values[channel, :n].mean()) * 1e6


# -- the GDF writer ---------------------------------------------------------------------------------
def test_generated_gdf_reads_back_in_mne(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(-90, 90, size=(3, 2 * gen.SFREQ))
    events = [(0, 32766, 0), (10, 768, 400), (300, 769, 100), (450, 1023, 7)]
    path = tmp_path / "x.gdf"
    gen.write_gdf(path, data, ("EEG:C3", "EEG:Cz", "EOG:ch01"), events, patient="B01")
    assert path.read_bytes()[:8] == b"GDF 2.10"
    raw = mne.io.read_raw_gdf(path, preload=True, verbose="error")
    assert raw.ch_names == ["EEG:C3", "EEG:Cz", "EOG:ch01"] and raw.info["sfreq"] == 250.0
    assert raw.n_times == 500 and raw.info["highpass"] == 0.5 and raw.info["lowpass"] == 100.0
    step = (gen.PHYS_MAX - gen.PHYS_MIN) / (gen.DIG_MAX - gen.DIG_MIN)  # one int16 step, in uV
    np.testing.assert_allclose(raw.get_data() * 1e6, data, atol=step)
    ann = raw.annotations
    assert list(ann.description) == ["32766", "768", "769", "1023"]
    np.testing.assert_allclose(ann.onset, np.array([0, 10, 300, 450]) / 250)
    # mne reads a duration of 0 as one sample
    np.testing.assert_allclose(ann.duration, np.array([1, 400, 100, 7]) / 250)


def test_generator_writes_the_published_names(root_2a: Path, root_2b: Path) -> None:
    assert sorted(p.name for p in root_2a.iterdir()) == sorted(
        f"A0{s}{k}.{ext}" for s in (1, 2) for k in "TE" for ext in ("gdf", "mat")
    )
    assert (root_2b / "B0104E.gdf").is_file() and (root_2b / "B0104E.mat").is_file()
    assert {p.name for p in root_2b.glob("B02*.gdf")} == {f"B020{n}{'T' if n <= 3 else 'E'}.gdf" for n in range(1, 6)}
    assert bci_iv_path(root_2a, "2a", 3, "E") == root_2a / "A03E.gdf"
    assert bci_iv_path(root_2b, "2b", 9, 4).name == "B0904E.gdf"
    raw = mne.io.read_raw_gdf(root_2a / "A01E.gdf", verbose="error")
    assert raw.ch_names == [*CHANNELS_2A, *EOG_2A]
    assert "783" in set(raw.annotations.description) and "769" not in set(raw.annotations.description)


# -- 2a ---------------------------------------------------------------------------------------------
def test_2a_labels_from_events_and_true_label_files(root_2a: Path) -> None:
    ds = BCIIV2aDataset(root_2a, tmin=0.5, tmax=2.5)
    assert ds.classes == ["left_hand", "right_hand", "feet", "tongue"] and ds.num_classes == 4
    assert ds.sfreq == 250.0 and ds.n_times == 500
    for (s, sess), cues in gen.CUES_2A.items():
        idx = np.flatnonzero((ds.window_subjects == s) & (ds.window_sessions == sess))
        assert [ds.classes[int(ds[i].target)] for i in idx] == [ds.classes[c] for c in cues]
        assert set(ds.window_splits[idx]) == {"train" if sess == "T" else "eval"}
        assert ds.window_trials[idx].tolist() == list(range(len(cues)))
        # windows are cue-locked: the generator's cue marker sits in the first half second
        marks = [_cue_mark(ds[i], 0, 125) for i in idx]
        np.testing.assert_allclose(marks, [gen.MARK_UV * (c + 1) for c in cues], atol=1.5)
        assert ds.window_rejected[idx].tolist() == [j == gen.REJECTED_2A[(s, sess)] for j in range(len(cues))]
    info = ds.window_info(0)
    assert info["subject"] == 1 and info["session"] == "T" and info["file"].endswith("A01T.gdf")


def test_2a_channels_are_10_05_and_eog_is_left_out(root_2a: Path) -> None:
    ds = BCIIV2aDataset(root_2a, subjects=["A01"], sessions=["T"])
    keys = ds.channel_keys[0]
    assert keys == [f"eeg/{CHANNELS_2A[n]}" for n in CHANNELS_2A] and len(keys) == 22
    sample = ds[0]
    assert isinstance(sample, ChannelSample) and sample.values.shape == (22, 500)
    assert sample.values.dtype == torch.float32 and not torch.isnan(sample.coords).any()
    assert sample.channel_ids.tolist() == ds.vocab.ids(keys)
    assert 1e-6 < float(sample.values[1:].std()) < 5e-6  # 2 uV noise, in volts


def test_2a_reject_trials_and_session_selection(root_2a: Path) -> None:
    every = BCIIV2aDataset(root_2a, sessions=["E"])
    kept = BCIIV2aDataset(root_2a, sessions=["E"], reject_trials=True)
    assert set(every.window_sessions) == {"E"} and len(kept) == len(every) - 2
    assert not kept.window_rejected.any() and every.window_rejected.sum() == 2
    with pytest.raises(ValueError, match="2a sessions"):
        BCIIV2aDataset(root_2a, sessions=["X"])
    with pytest.raises(ValueError, match=r"1\.\.9"):
        BCIIV2aDataset(root_2a, subjects=[10])


def test_2a_files_in_sub_folders(root_2a: Path, tmp_path: Path) -> None:
    (tmp_path / "BCICIV_2a_gdf").mkdir()
    (tmp_path / "true_labels").mkdir()
    for p in root_2a.glob("A01*"):
        shutil.copy(p, tmp_path / ("BCICIV_2a_gdf" if p.suffix == ".gdf" else "true_labels") / p.name)
    ds = BCIIV2aDataset(tmp_path)
    assert ds.subject_list == [1] and len(ds) == len(gen.CUES_2A[(1, "T")]) + len(gen.CUES_2A[(1, "E")])


# -- 2b ---------------------------------------------------------------------------------------------
def test_2b_sessions_labels_and_channels(root_2b: Path) -> None:
    ds = BCIIV2bDataset(root_2b, subjects=[2], tmin=0.0, tmax=1.0)
    assert ds.classes == ["left_hand", "right_hand"] and ds.channel_keys[0] == ["eeg/C3", "eeg/Cz", "eeg/C4"]
    assert ds[0].values.shape == (3, 250)
    for n in range(1, 6):
        sess = f"0{n}{'T' if n <= 3 else 'E'}"
        idx = np.flatnonzero(ds.window_sessions == sess)
        cues = gen.CUES_2B[(2, n)]
        assert [int(ds[i].target) for i in idx] == list(cues)
        np.testing.assert_allclose([_cue_mark(ds[i], 1, 250) for i in idx], [gen.MARK_UV * (c + 1) for c in cues],
                                   atol=1.0)  # fmt: skip
        assert set(ds.window_splits[idx]) == {"train" if n <= 3 else "eval"}
    only = BCIIV2bDataset(root_2b, subjects=["B01"], sessions=["04E", 1])
    assert sorted(set(only.window_sessions)) == ["01T", "04E"] and only.window_rejected.sum() == 2


# -- errors -----------------------------------------------------------------------------------------
def test_missing_folder_files_and_labels_are_named_errors(root_2a: Path, root_2b: Path, tmp_path: Path) -> None:
    with pytest.raises(BCIIVMissingError, match=r"folder not found.*A01T\.gdf.*bbci\.de.*never downloads"):
        BCIIV2aDataset(tmp_path / "nowhere")
    with pytest.raises(BCIIVMissingError, match="no BCI Competition IV 2b GDF files"):
        BCIIV2bDataset(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(root_2a, partial)
    (partial / "A02E.mat").unlink()
    (partial / "A01E.gdf").unlink()
    with pytest.raises(BCIIVMissingError, match=r"2 BCI Competition IV 2a file\(s\) missing .*A01E\.gdf, A02E\.mat"):
        BCIIV2aDataset(partial)
    assert len(BCIIV2aDataset(partial, sessions=["T"])) > 0  # training sessions need no label file
    partial_b = tmp_path / "partial_b"
    shutil.copytree(root_2b, partial_b)
    (partial_b / "B0202T.gdf").unlink()
    with pytest.raises(BCIIVMissingError, match=r"1 BCI Competition IV 2b file\(s\) missing .*B0202T\.gdf"):
        BCIIV2bDataset(partial_b)
    assert issubclass(BCIIVMissingError, FileNotFoundError)


def test_label_files_that_do_not_fit_are_refused(root_2a: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(root_2a, bad)
    gen.write_classlabel(bad / "A01E.mat", [1, 2, 3])
    with pytest.raises(ValueError, match=r"A01E\.mat: 3 class labels for the 6 cues"):
        BCIIV2aDataset(bad, subjects=[1])
    gen.write_classlabel(bad / "A01E.mat", [c + 1 for c in gen.CUES_2A[(1, "E")]])
    gen.write_classlabel(bad / "A01T.mat", [1] * len(gen.CUES_2A[(1, "T")]))
    with pytest.raises(ValueError, match=r"A01T\.mat: \d+ class label\(s\) disagree with the cue events"):
        BCIIV2aDataset(bad, subjects=[1])


# -- datamodule + recipe ----------------------------------------------------------------------------
def test_datamodule_official_split(root_2a: Path) -> None:
    dm = BCIIVDataModule(str(root_2a), val_fraction=0.25)
    dm.setup()
    ds = dm.dataset
    assert ds is not None
    train, val, test = (np.asarray(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset))  # type: ignore[union-attr]
    assert set(ds.window_sessions[train]) == set(ds.window_sessions[val]) == {"T"}
    assert set(ds.window_sessions[test]) == {"E"} and len(test) == int((ds.window_sessions == "E").sum())
    assert not set(train) & set(val)
    assert dm.spec.n_times == 256 and dm.spec.num_classes == 4 and dm.spec.sfreq == 128.0
    sample = dm.train_dataset[0]  # type: ignore[index]
    assert sample.values.shape == (22, 256)
    assert 0.3 < float(sample.values.std()) < 3.0  # Euclidean-aligned: unit scale
    contract = dm.input_contract()
    assert len(contract.channels) == 22 and contract.alignment == "euclidean" and contract.sfreq == 128.0


def test_datamodule_cross_subject_2b(root_2b: Path) -> None:
    dm = BCIIVDataModule(str(root_2b), dataset="2b", split="cross_subject", euclidean_alignment=False)
    dm.setup()
    ds = dm.dataset
    assert ds is not None
    test = np.asarray(dm.test_dataset.indices)  # type: ignore[union-attr]
    assert set(ds.window_subjects[test]) == {2} and set(ds.window_subjects[dm.train_dataset.indices]) == {1}  # type: ignore[union-attr]
    assert dm.channels == ["eeg/C3", "eeg/Cz", "eeg/C4"] and dm.spec.num_classes == 2
    # volts x 1e5 (units of 10 uV): 2 uV noise band-passed 4-40 Hz is about 0.1
    assert 0.03 < float(dm.train_dataset[0].values.std()) < 0.5  # type: ignore[index]


@pytest.mark.parametrize("dataset", ["2a", "2b"])
def test_recipe_trains_an_epoch(dataset: str, root_2a: Path, root_2b: Path, tmp_path: Path) -> None:
    from chanformer.cli.lightning_cli import run_lightning_cli
    from chanformer.cli.main import list_recipes, resolve_config

    recipe, root = f"bci-iv-{dataset}-dbconformer", root_2a if dataset == "2a" else root_2b
    assert recipe in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config(recipe), f"--data.init_args.root={root}",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step >= 1
    assert np.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
    assert cli.model.num_classes == (4 if dataset == "2a" else 2)
    assert cli.model.encoder.channels == cli.datamodule.channels  # the recipe's montage is the data's
