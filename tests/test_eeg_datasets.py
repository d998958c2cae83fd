"""EEG/iEEG readers and window datasets on real files of every format in shared/data/eeg-formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelBatch
from chanformer.channels import ChannelVocab, UnknownChannelError
from chanformer.datasets.eeg.readers import (
    EEGWindowDataset,
    channel_keys,
    euclidean_alignment,
    read_recording,
)
from chanformer.datasets.eeg.windows import EEGDataModule

mne = pytest.importorskip("mne")

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eeg-formats"
if not ROOT.is_dir():
    pytest.skip(f"real EEG format files not present at {ROOT}", allow_module_level=True)

EDF = ROOT / "EDF" / "test_reduced.edf"
EDF_TYPES = ROOT / "EDF" / "chtypes_edf.edf"
BDF = ROOT / "BDF" / "test_bdf_stim_channel.bdf"
VHDR = ROOT / "Brainvision" / "test_NO.vhdr"
SET = ROOT / "EEGLAB" / "test_raw_chanloc.set"
NK = ROOT / "NihonKohden" / "MB0400FU.EEG"
LAY = ROOT / "Persyst" / "sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"


def batch_of(ds: EEGWindowDataset) -> ChannelBatch:
    return ChannelBatch.collate([ds[i] for i in range(len(ds))], sfreq=ds.sfreq)


def keys_of(ds: EEGWindowDataset, rec: int = 0) -> list[str]:
    return ds.channel_keys[rec]


# -- reading --------------------------------------------------------------------------------
def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.edf"):
        read_recording(tmp_path / "nope.edf")
    bad = tmp_path / "corrupt.edf"
    bad.write_bytes(b"0       garbage header" + b"\x00" * 300)
    with pytest.raises(ValueError, match="corrupt.edf"):
        read_recording(bad)
    with pytest.raises(ValueError, match="corrupt.edf"):
        EEGWindowDataset([bad])


# -- one test per format ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*dropping 118 EEG channel:UserWarning")
def test_edf_plus_windows_and_annotation_trials():
    with pytest.raises(UnknownChannelError, match="'A3'"):
        EEGWindowDataset([EDF], window_s=1.0)
    with pytest.warns(UserWarning, match="A3"):
        ds = EEGWindowDataset([EDF], window_s=1.0, on_unknown="drop")
    keys = keys_of(ds)
    assert {"eeg/A1", "eeg/C1", "eeg/F1"} <= set(keys)
    assert not any("Status" in k for k in keys)  # stim channel is not a data channel
    b = batch_of(ds)
    assert b.values.shape == (6, len(keys), 512) and b.sfreq == 512.0
    assert b.values.abs().max() < 1e-2  # volts
    assert torch.isfinite(b.coords).all()  # template 10-05 positions
    with pytest.warns(UserWarning, match="'start'"):
        ev = EEGWindowDataset([EDF], mode="events", label_map={"type A": 0, "type B": 1}, tmax=0.5, on_unknown="drop")
    assert ev.targets.tolist() == [0, 0, 1, 0]  # onsets 0.13, 0.39, 2.0 (B), 2.5 s
    assert batch_of(ev).values.shape[-1] == 256 and ev.num_classes == 2


def test_edf_decorated_names():
    with pytest.warns(UserWarning, match="POL E"):
        ds = EEGWindowDataset([EDF_TYPES], window_s=1.0, on_unknown="drop")
    keys = keys_of(ds)
    assert keys[:3] == ["eeg/Fp1", "eeg/Fp2", "eeg/F3"]  # from "EEG Fp1-Ref" ...
    assert batch_of(ds).values.shape == (5, len(keys), 200)


def test_bdf_stim_channel_events():
    with pytest.warns(UserWarning, match=r"test_bdf_stim_channel.bdf: 1 of 9 event\(s\).*'1' at 9.58 s"):
        ds = EEGWindowDataset([BDF], mode="events", label_map={"1": 0, "2": 1, "4": 2}, tmax=0.5)
    assert ds.out_of_range_counts == {str(BDF): 1}
    assert keys_of(ds) == ["eeg/C3", "eeg/C4", "eeg/Cz"]
    assert ds.event_counts[0] == {"1": 7, "2": 1, "4": 1}
    assert ds.targets.tolist() == [2, 1, 0, 0, 0, 0, 0, 0]  # the 9th (9.58 s) runs past the end
    b = batch_of(ds)
    assert b.values.shape == (8, 3, 250) and b.target.tolist() == ds.targets.tolist()


def test_brainvision_numeric_names_as_seeg():
    with pytest.raises(UnknownChannelError, match="'1'"):
        EEGWindowDataset([VHDR], window_s=0.2)
    raw = read_recording(VHDR)
    numeric = {n: "seeg" for n in raw.ch_names if n.isdigit()}
    types = numeric | {"EMGright": "emg", "EMGleft": "emg"}
    ds = EEGWindowDataset([VHDR], window_s=0.2, ch_types=types)
    keys = keys_of(ds)
    assert len(keys) == 63 and keys[0] == "ieeg/test_NO/1"
    assert ds.vocab["ieeg/test_NO/1"].kind == "seeg"
    b = batch_of(ds)
    assert b.values.shape == (2, 63, 1000) and b.sfreq == 5000.0
    assert torch.isnan(b.coords).all()  # no positions in the file, none required
    raw.set_channel_types(types, on_unit_change="ignore", verbose="error")
    raw.info["chs"][0]["loc"][:3] = [0.01, 0.02, 0.03]
    vocab = ChannelVocab("v")
    assert channel_keys(raw, vocab, subject="s1")[:2] == ["ieeg/s1/1", "ieeg/s1/2"]
    assert vocab["ieeg/s1/1"].position == pytest.approx((0.01, 0.02, 0.03)) and vocab["ieeg/s1/2"].position is None
    with pytest.raises(ValueError, match="no position for channel"):
        EEGWindowDataset([VHDR], window_s=0.2, ch_types=types, require_positions=True)


@pytest.mark.filterwarnings("ignore:.*dropping bad channel:UserWarning")
def test_eeglab_flat_channel_positions_and_events():
    with pytest.raises(ValueError, match=r"test_raw_chanloc.set.*Fp1 \(flat\)"):
        EEGWindowDataset([SET], window_s=1.0)
    with pytest.warns(UserWarning, match="Fp1"):
        ds = EEGWindowDataset([SET], window_s=1.0, bad_channels="drop", require_positions=True)
    keys = keys_of(ds)
    assert len(keys) == 60 and "eeg/Fp1" not in keys and keys[0] == "eeg/Fp2"
    raw = read_recording(SET)
    file_pos = np.array([c["loc"][:3] for c in raw.info["chs"]])[1:]
    b = batch_of(ds)
    assert b.values.shape == (3, 60, 128)
    np.testing.assert_allclose(b.coords[0].numpy(), file_pos, rtol=1e-6)  # chanlocs, not the template
    with pytest.warns(UserWarning, match="boundary"):
        ev = EEGWindowDataset([SET], mode="events", label_map={"S 12": 3}, tmax=0.5, bad_channels="drop")
    assert ev.targets.tolist() == [3] and ev.num_classes == 4


@pytest.mark.filterwarnings("ignore:.*dropping 1 EEG channel:UserWarning")
def test_nihon_kohden():
    with pytest.warns(UserWarning, match="'A1\\+A2 OFF'|REC START"):
        ds = EEGWindowDataset([NK], mode="events", label_map={"A1+A2 OFF": 0}, tmin=0.0, tmax=1.0, on_unknown="drop")
    keys = keys_of(ds)
    assert len(keys) == 21 and keys[:2] == ["eeg/Fp2", "eeg/Fp1"]  # 'E', bio and misc left out
    assert set(ds.event_counts[0]) == {"REC START ALLE EEG", "A1+A2 OFF"}
    assert batch_of(ds).values.shape == (1, 21, 200)


def test_persyst_ecog_seizure_annotations():
    ecog = {f"POL X{i}": "ecog" for i in range(1, 32)}
    with pytest.warns(UserWarning, match="'Clip1' in .*clip2.lay") as rec:
        ds = EEGWindowDataset([LAY], mode="events", label_map={"seizure": 1}, tmax=0.5, ch_types=ecog, picks=["ecog"])
    assert len([w for w in rec if "not in label_map" in str(w.message)]) == 1  # reported once
    keys = keys_of(ds)
    assert len(keys) == 31 and keys[0] == "ieeg/pt1/POL X1"  # BIDS subject from the file name
    assert ds.vocab[keys[0]].kind == "ecog"
    assert ds.event_counts[0]["seizure"] == 2 and ds.targets.tolist() == [1, 1]
    with pytest.raises(ValueError, match="'spike'"):
        EEGWindowDataset([LAY], mode="events", label_map={"seizure": 1, "spike": 2}, ch_types=ecog, picks=["ecog"])
    raw = read_recording(LAY)
    with pytest.warns(UserWarning, match="POL E"):
        scalp = channel_keys(raw, ds.vocab, on_unknown="drop")
    assert scalp[:3] == ["eeg/Fp1", "eeg/Fp2", "eeg/F3"] and len(scalp) == 23  # FP1 -> eeg/Fp1


# -- windows, BAD spans, bad input ------------------------------------------------------------
def test_fixed_windows_drop_bad_annotations():
    raw = read_recording(BDF)
    assert len(EEGWindowDataset([raw], window_s=1.0)) == 10
    raw.annotations.append(onset=2.5, duration=1.0, description="BAD_artifact")
    ds = EEGWindowDataset([raw], window_s=1.0)
    assert len(ds) == 8  # [2, 3) and [3, 4) overlap the BAD span
    assert len(EEGWindowDataset([raw], window_s=1.0, stride_s=0.5)) == 19 - 3  # starts 2.0, 2.5, 3.0 s overlap it


def test_mixed_rates_need_resample_and_pad_channels():
    with pytest.raises(ValueError, match=r"test_raw_chanloc.set \(128 Hz\).*test_bdf_stim_channel.bdf \(500 Hz\)"):
        EEGWindowDataset([SET, BDF], window_s=1.0, bad_channels="drop")
    with pytest.warns(UserWarning, match="Fp1"):
        ds = EEGWindowDataset([SET, BDF], window_s=1.0, bad_channels="drop", resample=100)
    assert ds.sfreq == 100 and ds.n_times == 100 and len(ds) == 3 + 10
    b = ChannelBatch.collate([ds[0], ds[len(ds) - 1]], sfreq=ds.sfreq)
    assert b.values.shape == (2, 60, 100) and b.mask.sum(1).tolist() == [60, 3]
    assert (b.values[1, 3:] == 0).all()


def test_non_integer_window_samples():
    with pytest.raises(ValueError, match=r"window_s=0\.3.*128 Hz"):
        EEGWindowDataset([SET], window_s=0.3, bad_channels="drop")
    with pytest.raises(ValueError, match=r"window_s=1\.005.*100 Hz"):
        EEGWindowDataset([BDF], window_s=1.005, resample=100)


def test_nan_channel_rejected_or_dropped():
    raw = read_recording(BDF)
    data = raw.get_data()
    data[1, 100:200] = np.nan  # C4
    nan_raw = mne.io.RawArray(data, raw.info, verbose="error")
    with pytest.raises(ValueError, match=r"C4 \(NaN/Inf\)"):
        EEGWindowDataset([nan_raw], window_s=1.0)
    with pytest.warns(UserWarning, match="C4"):
        ds = EEGWindowDataset([nan_raw], window_s=1.0, bad_channels="drop")
    assert keys_of(ds) == ["eeg/C3", "eeg/Cz"] and torch.isfinite(batch_of(ds).values).all()


def test_filter_resample_and_euclidean_alignment():
    ds = EEGWindowDataset([BDF], window_s=1.0, resample=100, l_freq=1.0, h_freq=30.0, euclidean_alignment=True)
    x = batch_of(ds).values.double()
    r = torch.einsum("nct,ndt->cd", x, x) / (x.shape[0] * x.shape[-1])
    torch.testing.assert_close(r, torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4, 50)) * np.array([1, 10, 100, 1000])[:, None]
    aligned = euclidean_alignment(w)
    np.testing.assert_allclose(np.einsum("nct,ndt->cd", aligned, aligned) / 250, np.eye(4), atol=1e-4)


# -- datamodule --------------------------------------------------------------------------------
def test_datamodule_spec_and_recording_split():
    dm = EEGDataModule(
        paths=[str(SET), str(BDF), str(EDF_TYPES)], window_s=1.0, resample=100, on_unknown="drop",
        bad_channels="drop", val_fraction=1 / 3, test_fraction=1 / 3, batch_size=4,
    )  # fmt: skip
    with pytest.warns(UserWarning):
        spec = dm.spec
    assert spec.sfreq == 100 and spec.n_times == 100 and spec.num_classes is None
    assert "eeg/Cz" in spec.vocab
    dm.setup("fit")
    recs = [set(dm.dataset.recording_of[s.indices].tolist()) for s in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert all(len(r) == 1 for r in recs) and set().union(*recs) == {0, 1, 2}
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, ChannelBatch) and batch.values.shape[-1] == 100


def test_datamodule_events_window_split():
    dm = EEGDataModule(
        paths=[str(BDF)], mode="events", label_map={"1": 0, "2": 1, "4": 2}, tmax=0.5, split_by="window",
        val_fraction=0.2, test_fraction=0.2, seed=1,
    )  # fmt: skip
    assert dm.spec.num_classes == 3 and dm.spec.n_times == 250
    dm.setup()
    sizes = [len(s) for s in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert sizes == [4, 2, 2]
