from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.encoders import create_encoder
from chanformer.encoders.channelvit import ChannelViT
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.nn.pos_embed import resample_pos_embed_2d
from chanformer.transforms.channel_sampling import HierarchicalChannelSampling, hierarchical_channel_sampling
from tests.conftest import reference_path


def _model(**kw) -> ChannelViT:
    model = create_encoder("channelvit_test", **kw)
    with torch.no_grad():  # non-trivial biases / norms, so that wrong wiring shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _sample(ids: list[int], size: int = 16) -> ChannelSample:
    return ChannelSample(torch.randn(len(ids), size, size), torch.tensor(ids))


def test_reference_fixture_all_outputs():
    report = check_reference_fixture(reference_path("channelvit"))
    assert report.passed
    assert all(c.passed for c in report.checks), [(c.name, c.max_abs, c.note) for c in report.checks]
    assert max(c.max_abs for c in report.checks) < 1e-5


# -- converter on another configuration, against a functional re-statement of the original ----------
def _original_forward(
    sd: dict, x: torch.Tensor, channels: torch.Tensor, heads: int, eps: float
) -> torch.Tensor:
    """The original computation written out (Conv3d per channel, row-0 channel ids, DINO blocks)."""
    b, c, hh, ww = x.shape
    p = sd["patch_embed.proj.weight"].shape[-1]
    tok = F.conv3d(
        x.unsqueeze(1), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(1, p, p)
    )
    tok = tok + sd["patch_embed.channel_embed"][:, :, channels[0]]
    tok = tok.flatten(2).transpose(1, 2)
    d = tok.shape[-1]
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), tok], 1)
    n = sd["pos_embed"].shape[1] - 1
    side = int(math.sqrt(n))
    grid = sd["pos_embed"][:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
    scale = ((hh // p + 0.1) / math.sqrt(n), (ww // p + 0.1) / math.sqrt(n))
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic").permute(0, 2, 3, 1).reshape(1, 1, -1, d)
    pos = torch.cat([sd["pos_embed"][:, :1], grid.expand(1, c, -1, d).reshape(1, -1, d)], 1)
    x = x + pos
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        g = lambda k: sd[f"blocks.{i}.{k}"]  # noqa: E731, B023
        y = F.layer_norm(x, (d,), g("norm1.weight"), g("norm1.bias"), eps)
        qkv = F.linear(y, g("attn.qkv.weight"), sd.get(f"blocks.{i}.attn.qkv.bias"))
        q, k, v = qkv.reshape(b, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) * (d // heads) ** -0.5).softmax(-1)
        x = x + F.linear(
            (att @ v).transpose(1, 2).reshape(b, -1, d), g("attn.proj.weight"), g("attn.proj.bias")
        )
        y = F.layer_norm(x, (d,), g("norm2.weight"), g("norm2.bias"), eps)
        x = x + F.linear(
            F.gelu(F.linear(y, g("mlp.fc1.weight"), g("mlp.fc1.bias"))),
            g("mlp.fc2.weight"),
            g("mlp.fc2.bias"),
        )
        i += 1
    return F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps)[:, 0]


def _to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Invert the converter's key map (our state dict -> original layout)."""
    out = {}
    for k, v in state.items():
        if k == "patch_embed.proj.weight":
            out[k] = v.unsqueeze(2)
        elif k == "channel_embed.weight":
            out["patch_embed.channel_embed"] = v.t().reshape(1, v.shape[1], v.shape[0], 1, 1)
        else:
            out[k] = v
    return out


def test_converter_other_configuration():
    kwargs = {
        "img_size": [24], "patch_size": 4, "in_chans": 7, "num_classes": 5, "embed_dim": 48, "depth": 3,
        "num_heads": 3, "mlp_ratio": 2.0, "qkv_bias": True, "qk_scale": None,
        "norm_layer": {"class": "torch.nn.LayerNorm", "eps": 1e-6},
    }  # fmt: skip
    conv = get_converter("channelvit")
    template = conv.build(kwargs)
    original = {k: torch.randn_like(v) * 0.3 for k, v in _to_original(template.state_dict()).items()}
    original["head.weight"], original["head.bias"] = torch.randn(5, 48), torch.randn(5)
    model = conv.load(original, kwargs)  # strict
    assert model.patch_embed.patch_size == 4 and len(model.blocks) == 3 and model.num_channels == 7
    with pytest.raises(ValueError, match="not part of"):
        conv.convert_state_dict({**original, "bogus.weight": torch.zeros(1)}, kwargs)
    # non-square image at another size; channel subset in another order
    x = torch.randn(2, 4, 28, 20)
    channels = torch.tensor([[6, 0, 3, 2]] * 2)
    ours = model(ChannelBatch(x, channels, torch.ones(2, 4, dtype=torch.bool)))
    ref = _original_forward(original, x, channels, heads=3, eps=1e-6)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


# -- channel-adaptive behaviour ------------------------------------------------------------------------
def test_padded_batch_matches_each_sample_alone():
    model = _model()
    items = [_sample([3, 1, 5]), _sample([0]), _sample([7, 2, 4, 6, 1])]
    batch = ChannelBatch.collate(items)
    with torch.no_grad():
        together = model(batch)
        for i, s in enumerate(items):
            alone = model(ChannelBatch.collate([s]))
            torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_channel_order_and_masked_subset():
    model = _model()
    s = _sample([1, 4, 6, 2])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        base = model(ChannelBatch.collate([s]))
        permuted = model(ChannelBatch.collate([ChannelSample(s.values[perm], s.channel_ids[perm])]))
        torch.testing.assert_close(base, permuted, atol=1e-5, rtol=1e-5)  # a set of (channel, patch) tokens
        compact = model(ChannelBatch.collate([ChannelSample(s.values[[0, 2]], s.channel_ids[[0, 2]])]))
        full = ChannelBatch.collate([s])
        full.mask[0, [1, 3]] = False  # masked in place (HCS style): same as the compacted subset
        torch.testing.assert_close(model(full), compact, atol=1e-5, rtol=1e-5)
        assert (base - compact).abs().max() > 1e-3  # the subset really changes the embedding
        # the channel identity matters: same values under other ids embed differently
        other = model(ChannelBatch.collate([ChannelSample(s.values, torch.tensor([0, 3, 5, 7]))]))
        assert (base - other).abs().max() > 1e-3


def test_pos_embed_resampling_modes():
    pos = torch.randn(16, 8)
    assert not torch.allclose(resample_pos_embed_2d(pos, (4, 4)), pos)  # scale-factor convention
    torch.testing.assert_close(resample_pos_embed_2d(pos, (4, 4), "size"), pos)
    assert resample_pos_embed_2d(pos, (3, 5)).shape == (15, 8)
    with pytest.raises(ValueError, match="square"):
        resample_pos_embed_2d(torch.randn(15, 8), (4, 4))
    model = _model(pos_embed_resample="if_needed")
    torch.testing.assert_close(model.patch_pos_embed(model.native_grid), model.pos_embed[0, 1:])
    with torch.no_grad():
        out = model(ChannelBatch.collate([_sample([1, 2], size=24)]))
    assert out.shape == (1, 32) and torch.isfinite(out).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="pos_embed_resample"):
        ChannelViT(img_size=16, patch_size=8, pos_embed_resample="never")
    with pytest.raises(ValueError, match="num_heads"):
        ChannelViT(img_size=16, patch_size=8, embed_dim=30, num_heads=4, depth=1)
    model = _model()
    with pytest.raises(ValueError, match="num_channels"):
        model(ChannelBatch.collate([_sample([8])]))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(ChannelBatch(torch.randn(1, 2, 16), torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool)))


# -- Hierarchical Channel Sampling ---------------------------------------------------------------------
def test_hcs_keeps_at_least_one_and_varies_counts():
    items = [_sample([0, 1, 2, 3], size=8), _sample([4, 5], size=8), _sample([6], size=8)]
    batch = ChannelBatch.collate(items)
    hcs = HierarchicalChannelSampling(seed=0)
    counts = []
    for _ in range(600):
        out = hcs(batch)
        assert out.values.shape == batch.values.shape
        assert (out.mask <= batch.mask).all() and (out.mask.sum(1) >= 1).all()
        assert (out.values[~out.mask] == 0).all()
        torch.testing.assert_close(out.values[out.mask], batch.values[out.mask])
        counts.append(out.mask.sum(1))
    counts = torch.stack(counts)
    freq = torch.stack([(counts[:, 0] == k).float().mean() for k in (1, 2, 3, 4)])
    assert (freq - 0.25).abs().max() < 0.07, freq  # channel COUNT uniform on 1..4
    assert set(counts[:, 1].tolist()) == {1, 2} and set(counts[:, 2].tolist()) == {1}
    a = hierarchical_channel_sampling(batch, torch.Generator().manual_seed(3))
    b = hierarchical_channel_sampling(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a.mask, b.mask)
    with pytest.raises(ValueError, match="min_channels"):
        HierarchicalChannelSampling(min_channels=0)


# -- training ------------------------------------------------------------------------------------------
def test_gradients_reach_every_parameter_and_checkpointing_matches():
    torch.manual_seed(1)
    model = create_encoder("channelvit_test", drop_path_rate=0.0).train()
    ckpt = create_encoder("channelvit_test", grad_checkpointing=True).train()
    ckpt.load_state_dict(model.state_dict())
    batch = ChannelBatch.collate([_sample([0, 2, 5]), _sample([1, 3])])
    grads = []
    for m in (model, ckpt):
        out = m(batch)
        out.pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)
    used = {0, 1, 2, 3, 5}
    unused = [i for i in range(8) if i not in used]
    assert (model.channel_embed.weight.grad[unused] == 0).all()  # ids absent from the batch get no gradient


def test_save_load_round_trip(tmp_path):
    model = _model()
    batch = ChannelBatch.collate([_sample([1, 2, 3]), _sample([4])])
    save_pretrained(model, tmp_path / "cvit")
    loaded = load_pretrained(tmp_path / "cvit")
    assert isinstance(loaded, ChannelViT)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
