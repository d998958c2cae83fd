from __future__ import annotations

import mne
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import ChannelVocab, UnknownChannelError, eeg_1005_vocab, series_vocab

VOCAB_SIZE = 12


@st.composite
def samples(draw):
    n = draw(st.integers(1, 5))
    t = draw(st.integers(1, 6))
    out = []
    for _ in range(n):
        c = draw(st.integers(1, VOCAB_SIZE))
        ids = draw(st.permutations(range(VOCAB_SIZE)))[:c]
        seed = draw(st.integers(0, 2**16))
        vals = torch.randn(c, t, generator=torch.Generator().manual_seed(seed))
        out.append(ChannelSample(vals, torch.tensor(ids), target=torch.tensor(seed % 3)))
    return out


@settings(max_examples=60, deadline=None)
@given(samples())
def test_collate_unbatch_round_trip(items):
    batch = ChannelBatch.collate(items)
    assert batch.values.shape[:2] == (len(items), max(s.values.shape[0] for s in items))
    assert (batch.values[~batch.mask] == 0).all()
    for orig, back in zip(items, batch.unbatch()):
        assert torch.equal(orig.values, back.values)
        assert torch.equal(orig.channel_ids, back.channel_ids)
        assert torch.equal(orig.target, back.target)


@settings(max_examples=60, deadline=None)
@given(samples(), st.permutations(range(VOCAB_SIZE)), st.integers(1, VOCAB_SIZE))
def test_select_picks_by_identity(items, order, k):
    batch = ChannelBatch.collate(items)
    want = list(order)[:k]
    sel = batch.select(want)
    assert sel.values.shape[1] == k
    for b, s in enumerate(items):
        lookup = {int(i): s.values[j] for j, i in enumerate(s.channel_ids)}
        for j, cid in enumerate(want):
            if cid in lookup:
                assert sel.mask[b, j] and sel.channel_ids[b, j] == cid
                assert torch.equal(sel.values[b, j], lookup[cid])
            else:
                assert not sel.mask[b, j] and (sel.values[b, j] == 0).all()
    # selecting a sample's own channels back in its order reproduces it exactly
    first = items[0]
    again = ChannelBatch.collate([first]).select(first.channel_ids)
    assert torch.equal(again.values[0], first.values) and again.mask.all()


@settings(max_examples=40, deadline=None)
@given(samples(), st.floats(0.0, 0.95), st.integers(0, 1000))
def test_drop_channels_keeps_one_and_zeroes_dropped(items, p, seed):
    batch = ChannelBatch.collate(items)
    out = batch.drop_channels(p, torch.Generator().manual_seed(seed))
    assert out.mask.any(1).all()
    assert not (out.mask & ~batch.mask).any()  # never revives padding
    assert (out.values[~out.mask] == 0).all()
    assert torch.equal(out.values[out.mask], batch.values[out.mask])


def test_collate_errors_name_the_problem():
    a = ChannelSample(torch.zeros(2, 5), torch.tensor([0, 1]))
    b = ChannelSample(torch.zeros(2, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample 1 has trailing shape"):
        ChannelBatch.collate([a, b])
    with pytest.raises(ValueError, match="empty"):
        ChannelBatch.collate([])
    with pytest.raises(ValueError, match="duplicates"):
        ChannelSample(torch.zeros(2, 5), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="channel_ids must have shape"):
        ChannelSample(torch.zeros(3, 5), torch.tensor([0, 1]))


def test_batch_shape_and_dtype_checks():
    with pytest.raises(ValueError, match="mask must be"):
        ChannelBatch(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.long"):
        ChannelBatch(torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))


def test_check_finite_names_channel():
    vocab = series_vocab(["a", "b", "c"])
    vals = np.zeros((2, 3, 4), dtype=np.float32)
    vals[1, 2, 0] = np.nan
    batch = ChannelBatch.from_numpy(vals, ["series/a", "series/b", "series/c"], vocab)
    with pytest.raises(ValueError, match="sample 1, channel series/c"):
        batch.check_finite(vocab)


def test_from_numpy_single_and_batched():
    vocab = series_vocab(["x", "y"])
    one = ChannelBatch.from_numpy(np.ones((2, 7)), ["series/x", "series/y"], vocab)
    assert one.values.shape == (1, 2, 7) and one.values.dtype == torch.float32
    many = ChannelBatch.from_numpy(np.ones((4, 2, 7)), ["series/y", "series/x"], vocab)
    assert many.channel_ids[0].tolist() == [1, 0]
    with pytest.raises(UnknownChannelError, match="series/z"):
        ChannelBatch.from_numpy(np.ones((2, 7)), ["series/x", "series/z"], vocab)
    with pytest.raises(ValueError, match="channels"):
        ChannelBatch.from_numpy(np.ones((4, 3, 7)), ["series/x", "series/y"], vocab)


def test_from_xarray():
    vocab = series_vocab(["a", "b"])
    da = xr.DataArray(np.arange(12, dtype=np.float32).reshape(2, 6), dims=("channel", "time"),
                      coords={"channel": ["series/b", "series/a"]}, attrs={"sfreq": 10.0})
    batch = ChannelBatch.from_xarray(da, vocab)
    assert batch.values.shape == (1, 2, 6) and batch.sfreq == 10.0
    assert batch.channel_ids[0].tolist() == [1, 0]
    with pytest.raises(ValueError, match="'channel' dimension"):
        ChannelBatch.from_xarray(da.rename(channel="ch"), vocab)


def test_from_mne_resolves_names_and_positions():
    vocab = eeg_1005_vocab()
    info = mne.create_info(["EEG Fp1-Ref", "C3", "cz"], 100.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).normal(size=(3, 50)) * 1e-5, info, verbose=False)
    batch = ChannelBatch.from_mne(raw, vocab)
    assert batch.vocab_keys(vocab) == ["eeg/Fp1", "eeg/C3", "eeg/Cz"]
    assert batch.sfreq == 100.0 and batch.coords is not None and batch.coords.shape == (1, 3, 3)
    bad = mne.io.RawArray(np.zeros((2, 10)), mne.create_info(["C3", "Foo9"], 100.0, "eeg"), verbose=False)
    with pytest.raises(UnknownChannelError, match="Foo9"):
        ChannelBatch.from_mne(bad, vocab)


def test_to_moves_and_casts_floats_only():
    b = ChannelBatch.collate([ChannelSample(torch.ones(2, 3), torch.tensor([0, 1]), target=torch.tensor(1))])
    h = b.to(torch.float64)
    assert h.values.dtype == torch.float64 and h.channel_ids.dtype == torch.long and h.mask.dtype == torch.bool


def test_lightning_moves_channel_batch():
    from lightning.fabric.utilities.apply_func import move_data_to_device

    b = ChannelBatch.collate([ChannelSample(torch.ones(2, 3), torch.tensor([0, 1]))])
    moved = move_data_to_device(b, torch.device("cpu"))
    assert isinstance(moved, ChannelBatch) and torch.equal(moved.values, b.values)


def test_vocab_is_unused_by_collate_but_keys_resolve():
    v = ChannelVocab("x")
    v.extend(["a", "b"])
    assert v.ids(["a", "b"]) == [0, 1]
