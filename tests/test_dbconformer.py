from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.encoders import create_encoder
from chanformer.encoders.dbconformer import DBConformer
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.hub.converters.dbconformer import _dense_pointwise
from chanformer.spec import DataSpec
from tests.conftest import reference_path

KEYS = ["eeg/C3", "eeg/C4", "eeg/Cz", "eeg/Pz", "eeg/Fz", "eeg/Oz"]
MONTAGE = ["eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz"]


def _vocab() -> ChannelVocab:
    return ChannelVocab("test", list(KEYS))


def _model(**kw) -> DBConformer:
    model = create_encoder("dbconformer_test", channels=MONTAGE, **kw)
    model.vocab = _vocab()
    with torch.no_grad():  # non-trivial norms and batch statistics so that wrong wiring shows
        for name, p in model.named_parameters():
            if "norm" in name or "bn" in name:
                p.add_(0.2 * torch.randn_like(p))
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model.eval()


def _sample(keys: list[str], values: dict[str, torch.Tensor]) -> ChannelSample:
    ids = torch.tensor(_vocab().ids(keys))
    return ChannelSample(torch.stack([values[k] for k in keys]), ids)


def _signals(n_times: int = 64) -> dict[str, torch.Tensor]:
    return {k: torch.randn(n_times) for k in KEYS}


def test_reference_fixture():
    report = check_reference_fixture(reference_path("dbconformer"))
    assert report.passed, [(c.name, c.max_abs, c.note) for c in report.checks]


# -- converter on another configuration, against a functional statement of the original -----------
def _bn(x, sd, pre):
    return F.batch_norm(
        x,
        sd[pre + "running_mean"],
        sd[pre + "running_var"],
        sd[pre + "weight"],
        sd[pre + "bias"],
        False,
        0.0,
        1e-5,
    )


def _blocks(x, sd, pre, heads):
    b, n, e = x.shape
    i = 0
    while f"{pre}.{i}.0.fn.0.weight" in sd:
        g = lambda k: sd[f"{pre}.{i}.{k}"]  # noqa: E731, B023
        y = F.layer_norm(x, (e,), g("0.fn.0.weight"), g("0.fn.0.bias"))
        q, k, v = (
            F.linear(y, g(f"0.fn.1.{m}.weight"), g(f"0.fn.1.{m}.bias")).view(b, n, heads, -1).transpose(1, 2)
            for m in ("queries", "keys", "values")
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / e**0.5, -1)  # full-width scaling
        x = x + F.linear(
            (att @ v).transpose(1, 2).reshape(b, n, e),
            g("0.fn.1.projection.weight"),
            g("0.fn.1.projection.bias"),
        )
        y = F.layer_norm(x, (e,), g("1.fn.0.weight"), g("1.fn.0.bias"))
        x = x + F.linear(
            F.gelu(F.linear(y, g("1.fn.1.0.weight"), g("1.fn.1.0.bias"))),
            g("1.fn.1.3.weight"),
            g("1.fn.1.3.bias"),
        )
        i += 1
    return x


def _original_forward(sd, x, heads, patch, drop_last):
    x = x.squeeze(1)
    e = sd["pos_embedding_temporal"].shape[-1]
    h = _bn(F.conv1d(x, sd["embedding.stem.sconv.conv.weight"]), sd, "embedding.stem.sconv.bn.")
    dw = sd["embedding.stem.tconv.0.conv.weight"]
    h = _bn(F.conv1d(h, dw, padding=dw.shape[-1] // 2, groups=e), sd, "embedding.stem.tconv.0.bn.")
    h = h[..., :-1] if drop_last else h
    t = F.avg_pool1d(F.gelu(h), patch).transpose(1, 2) + sd["pos_embedding_temporal"]
    t = _blocks(t, sd, "temporal_transformer", heads)
    b, c, n = x.shape
    s = F.elu(
        F.conv1d(
            x.reshape(b * c, 1, n),
            sd["channel_embedding.encoder.0.weight"],
            sd["channel_embedding.encoder.0.bias"],
            stride=5,
            padding=12,
        )
    ).mean(-1)
    s = F.linear(s, sd["channel_embedding.encoder.4.weight"], sd["channel_embedding.encoder.4.bias"]).view(
        b, c, e
    )
    s = _blocks(s + sd["pos_embedding_spatial"], sd, "spatial_transformer", heads)
    score = F.linear(
        torch.tanh(F.linear(s, sd["spatial_attn_pool.0.weight"], sd["spatial_attn_pool.0.bias"])),
        sd["spatial_attn_pool.2.weight"],
        sd["spatial_attn_pool.2.bias"],
    )
    feat = torch.cat([t.mean(1), (torch.softmax(score, 1) * s).sum(1)], -1)
    y = F.elu(F.linear(feat, sd["classifier.fc.0.weight"], sd["classifier.fc.0.bias"]))
    y = F.elu(F.linear(y, sd["classifier.fc.3.weight"], sd["classifier.fc.3.bias"]))
    return feat, F.linear(y, sd["classifier.fc.6.weight"], sd["classifier.fc.6.bias"])


def _to_original(model: DBConformer) -> dict[str, torch.Tensor]:
    """Our state dict in the original's key layout (inverse of the converter's map)."""
    out = {}
    for key, val in model.state_dict().items():
        parts = key.split(".")
        if key.startswith("temporal_stem."):
            mod = {
                "pointwise": "sconv.conv",
                "bn1": "sconv.bn",
                "depthwise": "tconv.0.conv",
                "bn2": "tconv.0.bn",
            }
            out[f"embedding.stem.{mod[parts[1]]}.{parts[2]}"] = val
        elif key in ("temporal_pos", "spatial_pos"):
            out[f"pos_embedding_{key.split('_')[0]}"] = val
        elif key.startswith("spatial_embed."):
            out[f"channel_embedding.encoder.{0 if parts[1] == 'conv' else 4}.{parts[2]}"] = val
        elif key.startswith("channel_pool."):
            out[f"spatial_attn_pool.{0 if parts[1] == 'fc1' else 2}.{parts[2]}"] = val
        elif key.startswith("classifier."):
            out[f"classifier.fc.{parts[1]}.{parts[2]}"] = val
        else:  # {temporal,spatial}_blocks.i.<module>.<param>
            pre = f"{parts[0].replace('blocks', 'transformer')}.{parts[1]}."
            mod, param = ".".join(parts[2:-1]), parts[-1]
            if mod == "attn.qkv":
                for name, chunk in zip(("queries", "keys", "values"), val.chunk(3)):
                    out[pre + f"0.fn.1.{name}.{param}"] = chunk
            else:
                where = {
                    "norm1": "0.fn.0",
                    "attn.proj": "0.fn.1.projection",
                    "norm2": "1.fn.0",
                    "mlp.fc1": "1.fn.1.0",
                    "mlp.fc2": "1.fn.1.3",
                }[mod]
                out[pre + f"{where}.{param}"] = val
    return out


def test_converter_other_configuration():
    kwargs = {
        "emb_size": 20,
        "tem_depth": 1,
        "chn_depth": 2,
        "chn": 5,
        "n_classes": 3,
        "args": {
            "data_name": "other",
            "chn": 5,
            "patch_size": 32,
            "time_sample_num": 130,
            "class_num": 3,
            "spa_dim": 6,
            "gate_flag": False,
            "posemb_flag": True,
            "branch": "all",
            "chn_atten_flag": True,
        },
    }
    conv = get_converter("dbconformer")
    src = conv.build(kwargs)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(0, 0.3)
        for name, buf in src.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    state = _to_original(src)
    model = conv.load(state, kwargs)
    x = torch.randn(3, 1, 5, 130)
    with torch.no_grad():
        out = conv.run(model, {"x": x}, {})
        feat, logits = _original_forward(state, x, heads=10, patch=32, drop_last=True)
    assert out["features"].shape == (3, 40) and out["logits"].shape == (3, 3)
    torch.testing.assert_close(out["features"], feat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["logits"], logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="bogus"):
        conv.convert_state_dict(state | {"bogus.weight": x}, kwargs)
    with pytest.raises(ValueError, match="gate_flag"):
        conv.build(kwargs | {"args": kwargs["args"] | {"gate_flag": True}})


def test_grouped_stem_weight_becomes_block_diagonal():
    w = torch.randn(8, 3, 1)  # 6 channels, 2 groups
    x = torch.randn(2, 6, 11)
    torch.testing.assert_close(F.conv1d(x, _dense_pointwise(w, 6)), F.conv1d(x, w, groups=2))


# -- montage handling -----------------------------------------------------------------------------------
def test_batch_is_mapped_onto_the_montage():
    model = _model()
    sig = _signals()
    shuffled = _sample(["eeg/Fz", "eeg/C4", "eeg/Pz", "eeg/C3", "eeg/Oz", "eeg/Cz"], sig)  # extras, any order
    exact = _sample(MONTAGE, sig)
    batch = ChannelBatch.collate([shuffled, _sample(MONTAGE[::-1], sig)])
    with torch.no_grad():
        out = model(batch)
        ref = model(ChannelBatch.collate([exact]))
        torch.testing.assert_close(out[0], ref[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out[1], ref[0], atol=1e-6, rtol=1e-6)
        weights = model.channel_weights(batch)
    assert out.shape == (2, 16) and model.embed_dim == 16
    assert weights.shape == (2, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))


def test_missing_montage_channel_is_named():
    model = _model()
    sig = _signals()
    batch = ChannelBatch.collate([_sample(MONTAGE, sig), _sample(["eeg/C3", "eeg/Cz", "eeg/Fz"], sig)])
    with pytest.raises(ValueError, match=r"eeg/C4.*eeg/Pz.*sample\(s\) \[1\]"):
        model(batch)
    no_vocab = create_encoder("dbconformer_test", channels=MONTAGE)
    with pytest.raises(ValueError, match="vocab"):
        no_vocab(batch)
    odd = create_encoder("dbconformer_test", channels=["eeg/C3", "eeg/T7", "eeg/C4", "eeg/Pz"])
    odd.vocab = _vocab()
    with pytest.raises(ValueError, match="eeg/T7"):
        odd(batch)
    positional = create_encoder("dbconformer_test")  # no keys: exactly n_chans present channels, in order
    with pytest.raises(ValueError, match="4 montage channels"):
        positional(ChannelBatch.collate([_sample(["eeg/C3", "eeg/Cz"], sig)]))
    with pytest.raises(ValueError, match="n_times=64"):
        model(ChannelBatch.collate([_sample(MONTAGE, _signals(50))]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        DBConformer(n_times=100)
    with pytest.raises(ValueError, match="num_heads"):
        create_encoder("dbconformer_test", num_heads=3)
    with pytest.raises(ValueError, match="branch"):
        create_encoder("dbconformer_test", branch="both")
    with pytest.raises(ValueError, match="n_chans=3"):
        create_encoder("dbconformer_test", channels=MONTAGE, n_chans=3)


def test_single_branch_and_mean_pooling_variants():
    batch = ChannelBatch.collate([_sample(MONTAGE, _signals())])
    for kw, dim in (
        ({"branch": "temporal"}, 8),
        ({"branch": "spatial"}, 8),
        ({"channel_attention": False}, 16),
    ):
        model = _model(**kw)
        with torch.no_grad():
            assert model(batch).shape == (1, dim)
    with pytest.raises(ValueError, match="no channel attention"):
        _model(branch="temporal").channel_weights(batch)


def test_classifier_head_and_data_spec():
    batch = ChannelBatch.collate([_sample(MONTAGE, _signals())] * 2)
    model = _model(n_outputs=3)
    with torch.no_grad():
        assert model.forward_logits(batch).shape == (2, 3)
    with pytest.raises(ValueError, match="n_outputs"):
        _model().forward_logits(batch)
    spec = DataSpec(vocab=_vocab(), n_times=96)
    built = create_encoder("dbconformer_test", data_spec=spec, channels=MONTAGE)
    assert built.n_times == 96 and built.vocab is spec.vocab


def test_montage_is_linked_from_the_data_spec():
    """Built from data with a fixed channel set, the montage is that set in file order; a montage
    or size given by the caller wins over the data's."""
    keys = [MONTAGE[2], MONTAGE[0], MONTAGE[1]]
    spec = DataSpec(vocab=_vocab(), n_times=64, channels=keys)
    built = create_encoder("dbconformer_test", data_spec=spec)
    assert built.channels == keys
    batch = ChannelBatch.collate([_sample(MONTAGE, _signals())] * 2)
    with torch.no_grad():
        assert built(batch).shape == (2, built.embed_dim)
    assert create_encoder("dbconformer_test", data_spec=spec, channels=MONTAGE).channels == MONTAGE
    sized = create_encoder("dbconformer_test", data_spec=spec, n_chans=len(MONTAGE))
    assert sized.channels is None and sized.n_chans == len(MONTAGE)


def test_gradients_reach_every_parameter():
    model = _model(n_outputs=3, drop_rate=0.0).train()
    sig = [_signals() for _ in range(3)]
    batch = ChannelBatch.collate([_sample(MONTAGE, s) for s in sig])
    model.forward_logits(batch).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_temporal_stem_depthwise_matches_conv1d():
    """The stem's channels-last 2-d depthwise convolution equals the 1-d one, values and both gradients
    (63 taps: the length at which a contiguous [B, E, T, 1] layout gets wrong weight gradients)."""
    from chanformer.encoders.dbconformer import TemporalStem

    stem = TemporalStem(4, 8, kernel=63, patch=16, drop=0.0)
    x = torch.randn(2, 8, 64, requires_grad=True)
    grad_out = torch.randn(2, 8, 64)
    fast = stem._depthwise(x)
    slow = stem.depthwise(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    w = stem.depthwise.weight
    for a, b in zip(torch.autograd.grad(fast, (x, w), grad_out), torch.autograd.grad(slow, (x, w), grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    model = _model(n_outputs=2)
    batch = ChannelBatch.collate([_sample(MONTAGE[::-1], _signals()), _sample(KEYS, _signals())])
    save_pretrained(model, tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    assert again.vocab == model.vocab and again.channels == MONTAGE
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch), atol=0, rtol=0)
        torch.testing.assert_close(again.forward_logits(batch), model.forward_logits(batch), atol=0, rtol=0)
