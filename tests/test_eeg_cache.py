"""Zarr window cache and iEEG re-referencing, on real files from shared/data/eeg-formats."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelSample
from chanformer.datasets.eeg.cache import CachedWindowDataset, cache_windows
from chanformer.datasets.eeg.readers import EEGWindowDataset, bipolar_pairs, read_recording
from chanformer.datasets.eeg.windows import EEGDataModule

mne = pytest.importorskip("mne")
pytest.importorskip("zarr")

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eeg-formats"
if not ROOT.is_dir():
    pytest.skip(f"real EEG format files not present at {ROOT}", allow_module_level=True)

BDF = ROOT / "BDF" / "test_bdf_stim_channel.bdf"
SET = ROOT / "EEGLAB" / "test_raw_chanloc.set"
LAY = ROOT / "Persyst" / "sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"
ECOG = {f"POL X{i}": "ecog" for i in range(1, 32)}

pytestmark = pytest.mark.filterwarnings("ignore:.*dropping bad channel:UserWarning")


def assert_same_sample(a: ChannelSample, b: ChannelSample) -> None:
    assert torch.equal(a.values, b.values) and a.values.dtype == b.values.dtype
    assert torch.equal(a.channel_ids, b.channel_ids)
    torch.testing.assert_close(a.coords, b.coords, rtol=0, atol=0, equal_nan=True)
    assert (a.target is None) == (b.target is None)
    if a.target is not None:
        assert a.target.dtype == b.target.dtype and torch.equal(a.target, b.target)


# -- Zarr cache -------------------------------------------------------------------------------
def test_cache_round_trip_mixed_recordings(tmp_path):
    src = EEGWindowDataset([SET, BDF], window_s=1.0, bad_channels="drop", resample=100)
    n_vocab = len(src.vocab)
    path = cache_windows(src, tmp_path / "win.zarr")
    assert path == tmp_path / "win.zarr" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ds = CachedWindowDataset(path)
    assert len(ds) == len(src) == 13 and ds.sfreq == 100 and ds.n_times == 100
    assert ds.vocab == src.vocab and len(ds.vocab) == n_vocab
    assert ds.sources == src.sources and ds.recording_of.tolist() == src.recording_of.tolist()
    assert ds.num_classes is None and ds.mode == "windows"
    for i in range(len(src)):  # 60-channel SET windows and 3-channel BDF windows (padded to 60 on disk)
        assert_same_sample(ds[i], src[i])
    assert_same_sample(ds[-1], src[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(FileExistsError, match="win.zarr"):
        cache_windows(src, path)


def test_cache_events_targets_and_lazy_reads(tmp_path, monkeypatch):
    src = EEGWindowDataset([BDF], mode="events", label_map={"1": 0, "2": 1, "4": 2}, tmax=0.5)
    ds = CachedWindowDataset(cache_windows(src, tmp_path / "ev.zarr"))
    assert ds.num_classes == 3 and ds.targets.tolist() == src.targets.tolist()
    for i in range(len(src)):
        assert_same_sample(ds[i], src[i])
    # lazy: the store handle is opened once per process, and one window's chunk is read per item
    import zarr

    opened = []
    real_open = zarr.open_group
    monkeypatch.setattr(zarr, "open_group", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    clone = pickle.loads(pickle.dumps(ds))  # as a DataLoader worker gets it
    assert clone._root is None
    for i in range(len(clone)):
        clone[i]
    assert len(opened) == 1 and set(clone._arrays) == {"mask", "values", "channel_ids", "coords"}
    values = clone._arrays["values"]
    assert values.chunks[0] == 1 and values.shape[0] == len(src)


def test_interrupted_write_leaves_nothing_and_incomplete_store_refused(tmp_path, monkeypatch):
    src = EEGWindowDataset([BDF], window_s=1.0)
    path = tmp_path / "c.zarr"

    class Boom(RuntimeError):
        pass

    calls = {"n": 0}
    real = EEGWindowDataset.__getitem__

    def flaky(self, i):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Boom("disk full")
        return real(self, i)

    monkeypatch.setattr(EEGWindowDataset, "__getitem__", flaky)
    with pytest.raises(Boom):
        cache_windows(src, path)
    assert list(tmp_path.iterdir()) == []  # neither the store nor the temporary sibling
    monkeypatch.undo()

    cache_windows(src, path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["complete"]
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"c\.zarr.*incomplete"):
        CachedWindowDataset(path)
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        CachedWindowDataset(tmp_path / "missing.zarr")


def test_datamodule_cache_dir_builds_once_and_rebuilds_on_change(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    dm = EEGDataModule([str(BDF)], window_s=1.0, cache_dir=str(cache), val_fraction=0.2, split_by="window")
    dm.setup("fit")
    assert isinstance(dm.dataset, CachedWindowDataset) and dm.cache_path.is_dir()
    assert len(dm.train_dataset) == 7 and len(dm.val_dataset) == 2 and len(dm.test_dataset) == 1
    assert dm.spec.n_times == 500 and dm.spec.sfreq == 500.0
    plain = EEGWindowDataset([BDF], window_s=1.0)
    assert_same_sample(dm.dataset[3], plain[3])

    built = []
    real = EEGWindowDataset.__init__

    def counting(self, *a, **k):
        built.append(a)
        real(self, *a, **k)

    monkeypatch.setattr(EEGWindowDataset, "__init__", counting)
    again = EEGDataModule([str(BDF)], window_s=1.0, cache_dir=str(cache), val_fraction=0.2, split_by="window")
    again.setup("fit")
    assert built == [] and again.cache_path == dm.cache_path  # reused, recordings not re-read
    assert_same_sample(again.dataset[0], plain[0])

    other = EEGDataModule([str(BDF)], window_s=0.5, cache_dir=str(cache), val_fraction=0.2, split_by="window")
    assert other.cache_path != dm.cache_path
    other.setup("fit")
    assert len(built) == 1 and len(other.dataset) == 20
    assert len(list(cache.glob("eeg-*.zarr"))) == 2

    # a touched file (new mtime) changes the key too
    copy = tmp_path / BDF.name
    copy.write_bytes(BDF.read_bytes())
    k1 = EEGDataModule([str(copy)], window_s=1.0, cache_dir=str(cache)).cache_path
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert EEGDataModule([str(copy)], window_s=1.0, cache_dir=str(cache)).cache_path != k1


# -- re-referencing ---------------------------------------------------------------------------
def test_bipolar_pairs_from_names():
    names = ["LA1", "LA2", "LA3", "RH01", "RH02", "RH04", "RH05", "Fz", "X", "12", "LA10", "G 7", "G 8"]
    assert bipolar_pairs(names) == [
        ("LA1", "LA2"), ("LA2", "LA3"), ("RH01", "RH02"), ("RH04", "RH05"), ("G 7", "G 8"),
    ]  # fmt: skip
    assert bipolar_pairs(["LA2", "LA1", "LB1"]) == [("LA1", "LA2")]
    assert bipolar_pairs([]) == []


def test_bipolar_reference_on_persyst_ecog():
    with pytest.raises(ValueError, match="reference"):
        EEGWindowDataset([LAY], window_s=1.0, ch_types=ECOG, picks=["ecog"], reference="laplacian")
    ds = EEGWindowDataset([LAY], window_s=1.0, ch_types=ECOG, picks=["ecog"], reference="bipolar")
    keys = ds.channel_keys[0]
    assert len(keys) == 30 and keys[0] == "ieeg/pt1/POL X1-POL X2" and keys[-1] == "ieeg/pt1/POL X30-POL X31"
    assert all(ds.vocab[k].kind == "ecog" for k in keys)
    assert "ieeg/pt1/POL X1" not in ds.vocab  # monopolar contacts are not added
    raw = read_recording(LAY)
    data = raw.get_data(picks=[f"POL X{i}" for i in range(1, 32)])
    sample = ds[1]  # second 1 s window: samples 200..399
    expected = data[:-1, 200:400] - data[1:, 200:400]  # POL Xn - POL Xn+1
    np.testing.assert_allclose(sample.values.numpy(), expected, rtol=1e-5, atol=1e-12)
    assert torch.isnan(sample.coords).all()  # the clip has no contact positions

    # scalp EEG and other prefixes are kept as recorded; pairs form per prefix
    both = dict(ECOG, **{f"POL DC{i:02d}": "seeg" for i in range(1, 17)})
    with pytest.warns(UserWarning, match="dropping"):
        mixed = EEGWindowDataset([LAY], window_s=1.0, ch_types=both, reference="bipolar", on_unknown="drop")
    mk = mixed.channel_keys[0]
    assert "eeg/Fp1" in mk
    assert sum(k.startswith("ieeg/pt1/POL DC") for k in mk) == 15 and "ieeg/pt1/POL DC09-POL DC10" in mk
    assert not any("POL X" in k and "POL DC" in k for k in mk)


def test_bipolar_midpoint_and_unpaired_contacts():
    info = mne.create_info(["LA1", "LA2", "LA3", "RB1"], 100.0, "seeg")
    pos = np.array([[0.01, 0, 0], [0.03, 0, 0], [0.05, 0.02, 0], [0, 0.04, 0]])
    for ch, p in zip(info["chs"], pos):
        ch["loc"][:3] = p
    rng = np.random.default_rng(0)
    raw = mne.io.RawArray(rng.normal(size=(4, 200)) * 1e-5, info, verbose="error")
    with pytest.warns(UserWarning, match="no bipolar pair: RB1"):
        ds = EEGWindowDataset([raw], window_s=1.0, reference="bipolar")
    assert ds.channel_keys[0] == ["ieeg/sub/LA1-LA2", "ieeg/sub/LA2-LA3"]
    np.testing.assert_allclose(ds[0].coords.numpy(), [[0.02, 0, 0], [0.04, 0.01, 0]], atol=1e-7)
    assert ds.vocab["ieeg/sub/LA1-LA2"].position == pytest.approx((0.02, 0, 0))
    d = raw.get_data()
    np.testing.assert_allclose(ds[1].values.numpy(), (d[:2] - d[1:3])[:, 100:], rtol=1e-5, atol=1e-12)


def test_average_reference_per_type():
    ecog = EEGWindowDataset([LAY], window_s=1.0, ch_types=ECOG, picks=["ecog"])
    avg = EEGWindowDataset([LAY], window_s=1.0, ch_types=ECOG, picks=["ecog"], reference="average")
    assert avg.channel_keys == ecog.channel_keys
    x = ecog[0].values.double()
    np.testing.assert_allclose(avg[0].values.numpy(), (x - x.mean(0)).numpy(), atol=1e-10)
    assert avg[0].values.double().mean(0).abs().max() < 1e-10
