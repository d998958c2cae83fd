"""The channel contract, asserted for every registered encoder family and MIL head.

A family is covered by being registered: every registered encoder's class must have a tiny
``*_test`` variant (checked below), and each tiny variant (plus variants that switch on a
vocabulary-indexed channel table) runs the whole contract: output shape, finite outputs,
gradients, padding invariance with NaN / inf / 1e30 in padded slots, order invariance where the
family claims it, a single channel, save -> load identity, vocabulary remapping by key, and the
named errors for empty samples and out-of-table ids.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from chanformer import load_pretrained, save_pretrained
from chanformer.batch import BagBatch, ChannelBatch, ChannelIdError, EmptySampleError
from chanformer.channels import Channel, ChannelVocab
from chanformer.encoders import Encoder, create_encoder, list_encoders
from chanformer.encoders._registry import encoder_class
from chanformer.mil import ABMIL, ACMIL, MeanPoolMIL
from chanformer.remap import ChannelRemapError

N_IDS = 6


def _vocab(n: int = N_IDS, name: str = "bands") -> ChannelVocab:
    return ChannelVocab(name, [Channel(f"band/B{i}", kind="band", wavelength_nm=400.0 + 100 * i) for i in range(n)])


# name, overrides: every tiny variant, and the variants whose channel table is vocabulary-indexed.
VARIANTS: list[tuple[str, dict]] = [
    ("softs_test", {}),
    ("softs_test", {"num_channels": N_IDS}),
    ("softs_test", {"embedding": "conv", "conv_width": 4, "conv_dilations": (1, 2), "num_channels": N_IDS}),
    ("softs_test", {"embedding": "segments", "segments": 4, "num_channels": N_IDS}),
    ("softs_test", {"channel_embedding": "affine", "num_channels": N_IDS}),
    ("gat_test", {}),
    ("gat_test", {"num_channels": N_IDS}),
    ("channelvit_test", {"num_channels": N_IDS}),
    ("chadavit_test", {}),
    ("chadavit_test", {"channel_embedding": "vocab", "num_channels": N_IDS}),
    ("dbconformer_test", {}),
    ("ecapa_tdnn_test", {}),
    ("mvpformer_test", {}),
]
IDS = [f"{n}{'+' + ','.join(o) if o else ''}" for n, o in VARIANTS]


def _build(name: str, overrides: dict) -> Encoder:
    torch.manual_seed(0)
    enc = create_encoder(name, **overrides)
    if enc.channel_table() is not None:
        enc.vocab = _vocab()
    return enc.eval()


def test_every_registered_family_has_a_tiny_variant_in_this_suite():
    covered = {encoder_class(n) for n, _ in VARIANTS}
    for name in list_encoders():
        assert encoder_class(name) in covered, f"{name}: its class has no *_test variant in the contract suite"


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_shape_finite_and_gradients(name, overrides):
    enc = _build(name, overrides).train()
    batch = enc.example_batch(3)
    out = enc(batch)
    assert out.shape == (3, enc.embed_dim) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


def _garbage_in_padding(batch: ChannelBatch, fill: float) -> ChannelBatch:
    pad = ~batch.mask.view(*batch.mask.shape, *([1] * (batch.values.ndim - 2)))
    if batch.lengths is not None:
        pad = pad | ~batch.time_mask().view(batch.batch_size, *([1] * (batch.values.ndim - 2)), -1)
    return replace(batch, values=torch.where(pad, torch.tensor(fill), batch.values))


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_padding_never_counts(name, overrides):
    enc = _build(name, overrides)
    batch = enc.example_batch(3)
    with torch.no_grad():
        full = enc(batch)
        for i, sample in enumerate(batch.unbatch()):
            # Time padding stays (the convolutions of ECAPA see zeros past the end, as SpeechBrain's do);
            # channel padding goes.
            alone = batch[i] if batch.lengths is not None else ChannelBatch.collate([sample])
            torch.testing.assert_close(enc(alone)[0], full[i], atol=1e-5, rtol=1e-4)
        for fill in (float("nan"), float("inf"), -float("inf"), 1e30):
            assert torch.equal(enc(_garbage_in_padding(batch, fill)), full), fill


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_channel_order(name, overrides):
    enc = _build(name, overrides)
    if not enc.channel_order_invariant():
        pytest.skip(f"{name} does not claim order invariance (its channel order carries meaning)")
    batch = enc.example_batch(2)
    perm = torch.randperm(batch.n_channels, generator=torch.Generator().manual_seed(1))
    shuffled = replace(batch, values=batch.values[:, perm], channel_ids=batch.channel_ids[:, perm], mask=batch.mask[:, perm])
    with torch.no_grad():
        torch.testing.assert_close(enc(shuffled), enc(batch), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_single_channel(name, overrides):
    enc = _build(name, overrides)
    if enc.required_channels() or name.startswith("dbconformer"):
        pytest.skip(f"{name} has a fixed montage: one channel is not a valid input")
    batch = enc.example_batch(2)
    one = replace(batch, mask=torch.zeros_like(batch.mask).index_fill_(1, torch.tensor([0]), True))
    with torch.no_grad():
        out = enc(one)
    assert out.shape == (2, enc.embed_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_named_errors(name, overrides):
    enc = _build(name, overrides)
    batch = enc.example_batch(2)
    empty = replace(batch, mask=batch.mask.clone().index_fill_(0, torch.tensor([1]), False))
    with pytest.raises(EmptySampleError, match=r"sample\(s\) \[1\]"):
        enc(empty)
    with pytest.raises(TypeError, match="takes a ChannelBatch"):
        enc(batch.values)
    table = enc.channel_table()
    if table is not None:
        ids = batch.channel_ids.clone()
        ids[0, 0] = table.num_embeddings + 3
        with pytest.raises(ChannelIdError, match=rf"\[{table.num_embeddings + 3}\].*{table.num_embeddings} rows"):
            enc(replace(batch, channel_ids=ids))


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_save_load_round_trip(name, overrides, tmp_path):
    enc = _build(name, overrides)
    batch = enc.example_batch(2)
    loaded = load_pretrained(save_pretrained(enc, tmp_path / "m"))
    with torch.no_grad():
        assert torch.equal(loaded(batch), enc(batch))
    assert loaded.vocab == enc.vocab


def _in_vocab(batch: ChannelBatch, src: ChannelVocab, dst: ChannelVocab) -> ChannelBatch:
    """The same batch with its ids re-expressed in ``dst``."""
    lut = torch.tensor([dst.id(k) if k in dst else -1 for k in src.keys])
    return replace(batch, channel_ids=torch.where(batch.mask, lut[batch.channel_ids], batch.channel_ids.clamp(max=0)))


TABLE_VARIANTS = [(n, o) for n, o in VARIANTS if any(k in o for k in ("num_channels", "num_channels"))]


@pytest.mark.parametrize(("name", "overrides"), TABLE_VARIANTS, ids=[f"{n}+{','.join(o)}" for n, o in TABLE_VARIANTS])
def test_remap_reordered_and_partly_new_vocabulary(name, overrides, tmp_path):
    enc = _build(name, overrides)
    src = enc.vocab
    batch = enc.example_batch(3)
    path = save_pretrained(enc, tmp_path / "m")
    with torch.no_grad():
        ref = enc(batch)
        # the same channels in another order: bit-identical embeddings
        reordered = ChannelVocab("reordered", list(reversed(src.channels)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            moved = load_pretrained(path, vocab=reordered)
        assert torch.equal(moved(_in_vocab(batch, src, reordered)), ref)
        assert moved.vocab == reordered
        # and it round-trips again with its new vocabulary
        again = load_pretrained(save_pretrained(moved, tmp_path / "again"))
        assert torch.equal(again(_in_vocab(batch, src, reordered)), ref)
        # the model never saw band/X: initialised from wavelength with a warning naming it; strict refuses
        new = ChannelVocab("partly-new", [*src.channels[:-1], Channel("band/X", kind="band", wavelength_nm=450.0)])
        with pytest.warns(UserWarning, match=r"band/X"):
            grown = load_pretrained(path, vocab=new)
        table = grown.channel_table().weight
        old = enc.channel_table().weight
        torch.testing.assert_close(table[new.id("band/X")], 0.5 * old[0] + 0.5 * old[1])  # 450 nm between B0, B1
        with pytest.raises(ChannelRemapError, match=r"band/X.*strict"):
            load_pretrained(path, vocab=new, strict=True)
        # batches that use only channels both vocabularies share give the original embeddings
        shared = replace(batch, mask=batch.mask & (batch.channel_ids != len(src) - 1))
        if bool(shared.mask.any(1).all()):
            assert torch.equal(grown(_in_vocab(shared, src, new)), enc(shared))


def test_remap_initialises_new_electrodes_from_positions(tmp_path):
    from chanformer.channels import eeg_1005_vocab

    full = eeg_1005_vocab()
    src = ChannelVocab("eeg-src", [full["eeg/C3"], full["eeg/Cz"], full["eeg/C4"], full["eeg/Pz"]])
    enc = create_encoder("softs_test", num_channels=4)
    enc.vocab = src
    path = save_pretrained(enc, tmp_path / "m")
    dst = ChannelVocab("eeg-dst", [full["eeg/C4"], full["eeg/Cz"], full["eeg/CPz"]])
    with pytest.warns(UserWarning, match=r"1 by position.*eeg/CPz"):
        moved = load_pretrained(path, vocab=dst)
    rows, old = moved.channel_table().weight, enc.channel_table().weight
    assert torch.equal(rows[0], old[2]) and torch.equal(rows[1], old[1])
    # CPz lies between Cz and Pz: its row is a convex mix of its 3 nearest known electrodes
    mixed = rows[2]
    assert not any(torch.equal(mixed, old[i]) for i in range(4))
    assert (mixed - old[[1, 3, 0, 2]].mean(0)).abs().max() < (old.abs().max() * 2)


@pytest.mark.parametrize("name", ["dbconformer_test", "ecapa_tdnn_test"])
def test_fixed_layouts_refuse_a_vocabulary_lacking_their_channels(name, tmp_path):
    if name == "dbconformer_test":
        from chanformer.channels import eeg_1005_vocab

        montage = ["eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"]
        enc = create_encoder(name, channels=montage)
        enc.vocab = eeg_1005_vocab()
        target = ChannelVocab("no-pz", [enc.vocab[k] for k in montage[:3]])
        lacking = "eeg/Pz"
    else:
        enc = create_encoder(name)
        target = ChannelVocab("short-mel", enc.vocab.channels[:-1])
        lacking = f"mel/{enc.input_size - 1}"
    path = save_pretrained(enc, tmp_path / "m")
    with pytest.raises(ChannelRemapError, match=lacking):
        load_pretrained(path, vocab=target)
    # a reordered vocabulary holding every montage key is fine and gives identical embeddings
    reordered = ChannelVocab("rev", list(reversed(target.channels)) + [enc.vocab[lacking]])
    moved = load_pretrained(path, vocab=reordered)
    batch = enc.eval().example_batch(2)
    with torch.no_grad():
        assert torch.equal(moved(_in_vocab(batch, enc.vocab, reordered)), enc(batch))


# -- MIL heads: bags are padded sets ---------------------------------------------------------------
MIL_HEADS = [
    lambda: ACMIL(10, 3, embed_dim=16, attn_dim=8, n_token=3),
    lambda: ABMIL(10, 3, embed_dim=16, attn_dim=8),
    lambda: MeanPoolMIL(10, 3, embed_dim=16),
]


def _bags(seed: int = 0) -> BagBatch:
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(3, 9, 10)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for i, n in enumerate((9, 4, 6)):
        feats[i, :n] = torch.randn(n, 10, generator=g)
        mask[i, :n] = True
    return BagBatch.from_tensors(feats, mask)


@pytest.mark.parametrize("make", MIL_HEADS, ids=["acmil", "abmil", "mean"])
def test_mil_heads_keep_the_contract(make, tmp_path):
    torch.manual_seed(0)
    head = make().eval()
    bags = _bags()
    with torch.no_grad():
        full = head(bags)[0]
        for i in range(3):
            n = int(bags.mask[i].sum())
            alone = head(BagBatch.from_tensors(bags.features[i, :n]))[0]
            torch.testing.assert_close(alone[0], full[i], atol=1e-6, rtol=1e-5)
        for fill in (float("nan"), float("inf"), 1e30):
            dirty = replace(bags, features=torch.where(bags.mask[..., None], bags.features, torch.tensor(fill)))
            assert torch.equal(head(dirty)[0], full)
        loaded = load_pretrained(save_pretrained(head, tmp_path / "h"))
        assert torch.equal(loaded(bags)[0], full)
    with pytest.raises(EmptySampleError, match="no present instance"):
        head(replace(bags, mask=bags.mask.clone().index_fill_(0, torch.tensor([2]), False)))
    head.train()
    sum(t[torch.isfinite(t)].pow(2).sum() for t in head(bags)).backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


# -- the task entry points: pretrained= and --ckpt_path ------------------------------------------
def _task(vocab: ChannelVocab, **kw):
    from chanformer.spec import DataSpec
    from chanformer.tasks import ClassificationTask

    spec = DataSpec(vocab=vocab, n_times=16, num_classes=2)
    return ClassificationTask(encoder="softs_test", encoder_kwargs={"num_channels": len(vocab)}, data_spec=spec, **kw).eval()


def test_task_pretrained_folder_is_remapped_onto_the_data_vocabulary(tmp_path):
    src = _vocab()
    torch.manual_seed(0)
    trained = _task(src)
    folder = save_pretrained(trained.encoder, tmp_path / "enc", vocab=src)
    batch = trained.encoder.example_batch(3)
    reordered = ChannelVocab("stains-reordered", [src.channels[i] for i in (3, 0, 5, 1, 4, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = _task(reordered, pretrained=str(folder))
    with torch.no_grad():
        assert torch.equal(task.encoder(_in_vocab(batch, src, reordered)), trained.encoder(batch))
    grown = ChannelVocab("grown", [*src.channels, Channel("band/new", kind="band")])
    with pytest.warns(UserWarning, match=r"1 by mean.*band/new"):
        _task(grown, pretrained=str(folder))
    with pytest.raises(ChannelRemapError, match="band/new"):
        _task(grown, pretrained=str(folder), strict_channels=True)


def test_checkpoint_is_remapped_for_test_and_refused_for_resume(tmp_path):
    src = _vocab()
    torch.manual_seed(0)
    trained = _task(src)
    ckpt = {"state_dict": trained.state_dict()}
    trained.on_save_checkpoint(ckpt)
    batch = trained.encoder.example_batch(3)
    reordered = ChannelVocab("reordered", list(reversed(src.channels)))
    fresh = _task(reordered)
    fresh.on_load_checkpoint(ckpt)  # no trainer: a test/predict load
    fresh.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        assert torch.equal(fresh(_in_vocab(batch, src, reordered)), trained(batch))

    class _Fit:
        class state:  # noqa: N801 - mimics trainer.state
            fn = "fit"

    resumed = _task(reordered)
    resumed._trainer = _Fit()  # type: ignore[assignment]
    ckpt2 = {"state_dict": trained.state_dict()}
    trained.on_save_checkpoint(ckpt2)
    with pytest.raises(ChannelRemapError, match="pretrained="):
        resumed.on_load_checkpoint(ckpt2)
