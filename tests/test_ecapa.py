from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.encoders import create_encoder
from chanformer.encoders.ecapa_tdnn import ECAPA_TDNN
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.hub.converters.ecapa_tdnn import load_speechbrain_checkpoint
from tests.conftest import reference_path

# Another configuration than the fixture's: a projected residual (32 -> 48), groups, different
# kernels/dilations, no global context, an even-width kernel-dilation product in the MFA.
OTHER = {
    "input_size": 24,
    "channels": [32, 48, 48, 96],
    "kernel_sizes": [3, 3, 5, 1],
    "dilations": [1, 2, 2, 1],
    "attention_channels": 16,
    "res2net_scale": 4,
    "se_channels": 8,
    "lin_neurons": 10,
    "global_context": False,
    "groups": [1, 2, 2, 1],
}


def test_reference_fixture():
    report = check_reference_fixture(reference_path("ecapa_tdnn"))
    assert report.passed, [(c.name, c.max_abs, c.note) for c in report.checks]
    assert {c.name for c in report.checks if c.passed} == {"embedding", "fbank", "fbank_embedding"}


# -- a functional statement of SpeechBrain's ECAPA_TDNN on its own key layout --------------------------
def _sb_tdnn(x, sd, pre, k, d, groups=1):
    pad = d * (k - 1) // 2
    if pad:
        x = F.pad(x, (pad, pad), mode="reflect")
    x = torch.relu(F.conv1d(x, sd[f"{pre}.conv.conv.weight"], sd[f"{pre}.conv.conv.bias"], dilation=d, groups=groups))
    n = f"{pre}.norm.norm."
    return F.batch_norm(x, sd[n + "running_mean"], sd[n + "running_var"], sd[n + "weight"], sd[n + "bias"], False, 0.0, 1e-5)


def _sb_forward(sd, x, lengths, cfg):
    ch, ks, ds, gr, scale = cfg["channels"], cfg["kernel_sizes"], cfg["dilations"], cfg["groups"], cfg["res2net_scale"]
    x = x.transpose(1, 2)
    steps = x.shape[-1]
    m = (torch.arange(steps)[None] < lengths[:, None] * steps).float()[:, None]  # [B, 1, T]
    x = _sb_tdnn(x, sd, "blocks.0", ks[0], ds[0], gr[0])
    outs = []
    for i in range(1, len(ch) - 1):
        p = f"blocks.{i}"
        res = (
            F.conv1d(x, sd[f"{p}.shortcut.conv.weight"], sd[f"{p}.shortcut.conv.bias"])
            if f"{p}.shortcut.conv.weight" in sd
            else x
        )
        y = _sb_tdnn(x, sd, f"{p}.tdnn1", 1, 1, gr[i])
        parts = list(y.chunk(scale, 1))
        for j in range(1, scale):
            inp = parts[j] if j == 1 else parts[j] + parts[j - 1]
            parts[j] = _sb_tdnn(inp, sd, f"{p}.res2net_block.blocks.{j - 1}", ks[i], ds[i])
        y = _sb_tdnn(torch.cat(parts, 1), sd, f"{p}.tdnn2", 1, 1, gr[i])
        s = (y * m).sum(2, keepdim=True) / m.sum(2, keepdim=True)
        s = torch.relu(F.conv1d(s, sd[f"{p}.se_block.conv1.conv.weight"], sd[f"{p}.se_block.conv1.conv.bias"]))
        s = torch.sigmoid(F.conv1d(s, sd[f"{p}.se_block.conv2.conv.weight"], sd[f"{p}.se_block.conv2.conv.bias"]))
        x = y * s + res
        outs.append(x)
    x = _sb_tdnn(torch.cat(outs, 1), sd, "mfa", ks[-1], ds[-1], gr[-1])
    att = x
    if cfg["global_context"]:
        w = m / m.sum(2, keepdim=True)
        mean = (x * w).sum(2, keepdim=True)
        std = ((w * (x - mean) ** 2).sum(2, keepdim=True)).clamp_min(1e-12).sqrt()
        att = torch.cat([x, mean.expand_as(x), std.expand_as(x)], 1)
    att = F.conv1d(torch.tanh(_sb_tdnn(att, sd, "asp.tdnn", 1, 1)), sd["asp.conv.conv.weight"], sd["asp.conv.conv.bias"])
    w = torch.softmax(att.masked_fill(m == 0, float("-inf")), 2)
    mean = (x * w).sum(2)
    std = (w * (x - mean[..., None]) ** 2).sum(2).clamp_min(1e-12).sqrt()
    pooled = torch.cat([mean, std], 1)
    n = "asp_bn.norm."
    pooled = F.batch_norm(
        pooled, sd[n + "running_mean"], sd[n + "running_var"], sd[n + "weight"], sd[n + "bias"], False, 0.0, 1e-5
    )
    return F.linear(pooled, sd["fc.conv.weight"][..., 0], sd["fc.conv.bias"])


def _to_speechbrain(model: ECAPA_TDNN) -> dict[str, torch.Tensor]:
    """Our state dict in SpeechBrain's layout: every Conv1d/BatchNorm leaf gains its wrapper level."""
    out = {}
    for key, val in model.state_dict().items():
        pre, param = key.rsplit(".", 1)
        leaf = pre.rsplit(".", 1)[-1]
        out[f"{pre}.{'norm' if leaf in ('norm', 'asp_bn') else 'conv'}.{param}"] = val
    return out


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)


def test_converter_other_configuration():
    conv = get_converter("ecapa_tdnn")
    src = conv.build(OTHER)
    _randomise(src)
    state = _to_speechbrain(src)
    assert "blocks.1.shortcut.conv.weight" in state and "asp_bn.norm.running_var" in state
    model = conv.load(state, OTHER)  # strict
    x, lengths = torch.randn(3, 40, 24), torch.tensor([1.0, 0.6, 0.83])
    # SpeechBrain's collate zero-pads past each length; the batch path zeroes whatever is there.
    x = x * (torch.arange(40)[None, :, None] < lengths[:, None, None] * 40)
    with torch.no_grad():
        ours = model(model.batch_from_features(x.transpose(1, 2), lengths))
        ref = _sb_forward(state, x, lengths, OTHER)
        garbage = torch.where(torch.arange(40)[None, :, None] >= lengths[:, None, None] * 40, float("nan"), x)
        torch.testing.assert_close(model(model.batch_from_features(garbage.nan_to_num(nan=1e30).transpose(1, 2), lengths)), ours)
        assert torch.isfinite(model(model.batch_from_features(garbage.transpose(1, 2), lengths))).all()
    assert ours.shape == (3, 10)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not part of"):
        conv.convert_state_dict({**state, "blocks.1.extra.weight": torch.zeros(1)}, OTHER)


def test_load_speechbrain_checkpoint(tmp_path):
    src = get_converter("ecapa_tdnn").build(OTHER)
    _randomise(src)
    state = {k: v for k, v in _to_speechbrain(src).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "embedding_model.ckpt")
    model = load_speechbrain_checkpoint(tmp_path / "embedding_model.ckpt", **OTHER)
    feats = torch.randn(2, 24, 30)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(feats), src.eval().embed(feats))


def _model() -> ECAPA_TDNN:
    model = create_encoder("ecapa_tdnn_test")
    _randomise(model)
    return model.eval()


def test_padded_and_reordered_channels_do_not_change_outputs():
    model = _model()
    feats = torch.randn(2, 20, 32)
    with torch.no_grad():
        alone = model(model.batch_from_features(feats))
        perm = torch.randperm(20)
        batch = ChannelBatch.collate([ChannelSample(feats[0][perm], perm), ChannelSample(feats[1], torch.arange(20))])
        padded = ChannelBatch(
            torch.cat([batch.values, torch.randn(2, 3, 32)], 1),
            torch.cat([batch.channel_ids, torch.zeros(2, 3, dtype=torch.long)], 1),
            torch.cat([batch.mask, torch.zeros(2, 3, dtype=torch.bool)], 1),
        )
        torch.testing.assert_close(model(padded), alone, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model(model.batch_from_features(feats[:1])), alone[:1], atol=1e-6, rtol=1e-6)
    missing = ChannelBatch(feats[:, :19], torch.arange(19).expand(2, -1), torch.ones(2, 19, dtype=torch.bool))
    with pytest.raises(ValueError, match="mel/19"):
        model(missing)
    # a dataset vocabulary holding the mel keys at other ids
    model.vocab = ChannelVocab("data", ["eeg/Cz", *(f"mel/{i}" for i in range(20))])
    shifted = ChannelBatch(feats, torch.arange(1, 21).expand(2, -1), torch.ones(2, 20, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(model(shifted), alone, atol=1e-6, rtol=1e-6)
    model.vocab = ChannelVocab("other", ["mel/0"])
    with pytest.raises(ValueError, match="not in vocabulary"):
        model(shifted)


def test_lengths_mask_padding_frames():
    model = _model()
    feats = torch.randn(1, 20, 40)
    with torch.no_grad():
        a = model(model.batch_from_features(feats, torch.tensor([0.5])))
        tail = feats.clone()
        tail[..., 30:] = 5.0  # beyond every conv's reach from the real frames (t < 20)
        b = model(model.batch_from_features(tail, torch.tensor([0.5])))
        full = model(model.batch_from_features(feats))
    torch.testing.assert_close(a, b)
    assert (a - full).abs().max() > 1e-3
    with pytest.raises(ValueError, match="lengths"):
        model(model.batch_from_features(feats, torch.tensor([1.5])))


def test_gradients_reach_every_parameter():
    model = create_encoder("ecapa_tdnn_test", channels=[16, 24, 24, 48]).train()  # with a shortcut conv
    out = model(model.batch_from_features(torch.randn(3, 20, 25), torch.tensor([1.0, 0.8, 0.5])))
    out.square().sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 2)])
def test_tdnn_context_equals_tiled_channels(kernel_size, dilation):
    """TDNNBlock(x, context) = TDNNBlock(cat([x, context tiled over time])), values and gradients."""
    from chanformer.nn.tdnn import TDNNBlock

    block = TDNNBlock(7, 5, kernel_size, dilation).double().train()
    x = torch.randn(3, 4, 11, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    fast = block(x, ctx)
    slow = block(torch.cat([x, ctx[..., None].expand(-1, -1, 11)], dim=1))
    torch.testing.assert_close(fast, slow)
    grad_out = torch.randn_like(fast)
    inputs = (x, ctx, *block.parameters())
    for a, b in zip(torch.autograd.grad(fast, inputs, grad_out), torch.autograd.grad(slow, inputs, grad_out)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="input channels"):
        block(x, ctx[:, :2])


def test_save_load_round_trip(tmp_path):
    model = _model()
    feats = torch.randn(2, 20, 30)
    save_pretrained(model, tmp_path / "ecapa")
    loaded = load_pretrained(tmp_path / "ecapa")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(loaded.batch_from_features(feats)), model(model.batch_from_features(feats)), atol=0, rtol=0
        )
    assert loaded.vocab.keys[:2] == ["mel/0", "mel/1"]


def test_variants_and_bad_arguments():
    assert sum(p.numel() for p in create_encoder("ecapa_tdnn_512").parameters()) == pytest.approx(6.19e6, rel=1e-3)
    with pytest.raises(ValueError, match="kernel_sizes"):
        ECAPA_TDNN(channels=[8, 8, 8], kernel_sizes=[3, 3], dilations=[1, 1, 1])
    with pytest.raises(ValueError, match="res2net_scale"):
        ECAPA_TDNN(input_size=8, channels=[12, 12, 24], kernel_sizes=[3, 3, 1], dilations=[1, 1, 1], res2net_scale=8)
    with pytest.raises(ValueError, match="activation"):
        ECAPA_TDNN(activation="Swish3")
