from __future__ import annotations

import json

import pytest

from chanformer.channels import Channel, ChannelVocab, UnknownChannelError, eeg_1005_vocab, sentinel2_vocab


def test_ids_are_stable_and_growable():
    v = ChannelVocab("t", [Channel("a"), Channel("b")])
    assert v.ids(["b", "a"]) == [1, 0]
    assert v.add("c") == 2 and v.add("a") == 0
    assert v.keys == ["a", "b", "c"]


def test_unknown_keys_are_all_named():
    v = ChannelVocab("t", [Channel("a")])
    with pytest.raises(UnknownChannelError, match="'x'.*'y'"):
        v.ids(["a", "x", "y"])


def test_json_round_trip(tmp_path):
    v = eeg_1005_vocab()
    path = tmp_path / "vocab.json"
    v.save(path)
    w = ChannelVocab.load(path)
    assert w == v and w.id("eeg/Cz") == v.id("eeg/Cz")
    assert json.loads(path.read_text())["name"] == "eeg_1005"
    assert not list(tmp_path.glob("*.tmp"))


def test_eeg_vocab_positions_and_loose_names():
    v = eeg_1005_vocab()
    assert len(v) > 300
    c3, c4 = v["eeg/C3"].position, v["eeg/C4"].position
    assert c3 is not None and c4 is not None and c3[0] < 0 < c4[0]  # left/right hemisphere in metres
    assert abs(c3[0]) < 0.2
    for raw in ("FP1", "Fp1", "EEG Fp1-Ref", "fp1"):
        assert v.resolve(raw, "eeg/") == "eeg/Fp1", raw
    assert v.resolve("NotAnElectrode", "eeg/") is None


def test_sentinel2_wavelengths():
    v = sentinel2_vocab()
    assert len(v) == 13
    assert v["s2/B08"].wavelength_nm == pytest.approx(832.8)
    assert v["s2/B02"].wavelength_nm < v["s2/B04"].wavelength_nm


def test_bad_channel_and_files(tmp_path):
    with pytest.raises(ValueError, match="position"):
        Channel("eeg/x", position=(1.0, 2.0))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ChannelVocab.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        ChannelVocab.load(tmp_path / "bad.json")
