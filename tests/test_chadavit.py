from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.encoders import create_encoder
from chanformer.encoders.chadavit import ChAdaViT
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.hub.converters.chadavit import stacked_to_batch
from tests.conftest import reference_path


def _model(**kw) -> ChAdaViT:
    model = create_encoder("chadavit_test", **kw)
    with torch.no_grad():  # non-trivial biases / norms, so that wrong wiring shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _sample(ids: list[int], size: int = 16) -> ChannelSample:
    return ChannelSample(torch.randn(len(ids), size, size), torch.tensor(ids))


def test_reference_fixture_with_mask_from_batch():
    # our key-padding mask comes from batch.mask (the original: all-zero tokens); outputs still match
    report = check_reference_fixture(reference_path("chadavit"))
    assert report.passed
    assert all(c.passed for c in report.checks), [(c.name, c.max_abs, c.note) for c in report.checks]
    assert {c.name for c in report.checks} >= {"embeddings", "cls_embedding", "tokenized", "key_padding_mask"}


def test_zero_channel_is_kept_unlike_the_original():
    # a REAL channel whose tokens are all zero (zero image, zero conv bias): the original's
    # zero-token rule would mask it; ours follows batch.mask and keeps it
    model = _model()
    with torch.no_grad():
        model.patch_embed.proj.bias.zero_()
        s = ChannelSample(
            torch.cat([torch.randn(2, 16, 16), torch.zeros(1, 16, 16)]), torch.tensor([0, 1, 2])
        )
        tokens, key_mask = model.prepare_tokens(ChannelBatch.collate([s]))
        assert key_mask.all()
        with_zero = model(ChannelBatch.collate([s]))
        without = model(ChannelBatch.collate([ChannelSample(s.values[:2], s.channel_ids[:2])]))
    assert (with_zero - without).abs().max() > 1e-4


# -- converter on other configurations, against a functional re-statement of the original ------------
def _original_forward(sd: dict, x: torch.Tensor, counts: list[int], cfg: dict) -> torch.Tensor:
    """The original computation: 1-ch conv per plane, zero-pad to 10 slots, mask = all-zero tokens,
    channel_token only if max_number_channels == 10, nn.MultiheadAttention blocks; returns CLS."""
    d, heads, p = cfg["embed_dim"], cfg["num_heads"], cfg["patch_size"]
    tok = F.conv2d(x, sd["token_learner.proj.weight"], sd["token_learner.proj.bias"], stride=p)
    hh, ww = tok.shape[-2:]
    tok = tok.flatten(2).transpose(1, 2)  # [sum C, n, D]
    chunks = [torch.cat([c, c.new_zeros(10 - len(c), *c.shape[1:])]) for c in torch.split(tok, counts)]
    t = torch.stack(chunks)  # [B, 10, n, D]
    b = t.shape[0]
    pad = (t.reshape(b, -1, d) == 0).all(-1)
    n = sd["pos_embed"].shape[2] - 1
    pos = sd["pos_embed"][:, :, 1:]
    if not (hh * ww == n and x.shape[-1] == x.shape[-2]):
        side = int(math.sqrt(n))
        grid = pos.reshape(1, side, side, d).permute(0, 3, 1, 2)
        scale = ((hh + 0.1) / math.sqrt(n), (ww + 0.1) / math.sqrt(n))
        pos = F.interpolate(grid, scale_factor=scale, mode="bicubic").permute(0, 2, 3, 1).reshape(1, 1, -1, d)
    t = t + pos
    if cfg["max_number_channels"] == 10:
        t = t + sd["channel_token"]
    cls = sd["cls_token"] + sd["pos_embed"][:, :, 0]
    z = torch.cat([cls.expand(b, -1, -1), t.reshape(b, -1, d)], 1)
    mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool), pad], 1)
    eps = cfg.get("layer_norm_eps", 1e-5)
    act = F.gelu if cfg.get("activation") == "gelu" else F.relu
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        g = lambda k: sd[f"blocks.{i}.{k}"]  # noqa: E731, B023
        mha.load_state_dict(
            {k.split("self_attn.")[1]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.self_attn.")}
        )
        mha.eval()
        n1 = lambda v: F.layer_norm(v, (d,), g("norm1.weight"), g("norm1.bias"), eps)  # noqa: E731, B023
        n2 = lambda v: F.layer_norm(v, (d,), g("norm2.weight"), g("norm2.bias"), eps)  # noqa: E731, B023

        def ff(v, g=g):
            return F.linear(
                act(F.linear(v, g("linear1.weight"), g("linear1.bias"))),
                g("linear2.weight"),
                g("linear2.bias"),
            )

        if cfg.get("norm_first", False):
            y = n1(z)
            z = z + mha(y, y, y, key_padding_mask=mask, need_weights=False)[0]
            z = z + ff(n2(z))
        else:
            y = n1(z)
            z = n1(z + mha(y, y, y, key_padding_mask=mask, need_weights=False)[0])
            z = n2(z + ff(z))
        i += 1
    return F.layer_norm(z, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 0]


def _to_original(state: dict[str, torch.Tensor], slots: int) -> dict[str, torch.Tensor]:
    """Invert the converter's key map (our state dict -> original layout)."""
    back = {"attn.qkv.weight": "self_attn.in_proj_weight", "attn.qkv.bias": "self_attn.in_proj_bias",
            "attn.proj.weight": "self_attn.out_proj.weight", "attn.proj.bias": "self_attn.out_proj.bias",
            "mlp.fc1.weight": "linear1.weight", "mlp.fc1.bias": "linear1.bias",
            "mlp.fc2.weight": "linear2.weight", "mlp.fc2.bias": "linear2.bias"}  # fmt: skip
    out = {}
    for k, v in state.items():
        if k.startswith("patch_embed."):
            out[k.replace("patch_embed.", "token_learner.")] = v
        elif k == "pos_embed":
            out[k] = v.unsqueeze(1)
        elif k == "channel_embed.weight":
            out["channel_token"] = v.reshape(1, v.shape[0], 1, v.shape[1])
        elif k.startswith("blocks."):
            i, rest = k.split(".", 2)[1:]
            out[f"blocks.{i}.{back.get(rest, rest)}"] = v
        else:
            out[k] = v
    if "channel_token" not in out:  # the original always holds one, used only when slots == 10
        out["channel_token"] = torch.zeros(1, slots, 1, state["cls_token"].shape[-1])
    return out


@pytest.mark.parametrize(
    "extra",
    [
        {"max_number_channels": 10, "norm_first": False, "activation": "gelu", "layer_norm_eps": 1e-6},
        {"max_number_channels": 6, "norm_first": True},
    ],
)
def test_converter_other_configuration(extra):
    kwargs = {
        "img_size": [24], "in_chans": 1, "embed_dim": 48, "patch_size": 4, "num_classes": 3, "depth": 2,
        "num_heads": 3, "return_all_tokens": False,
        "norm_layer": {"class": "torch.nn.LayerNorm", "eps": 1e-6},
        **extra,
    }  # fmt: skip
    conv = get_converter("chadavit")
    template = conv.build(kwargs)
    original = {k: torch.randn_like(v) * 0.2 for k, v in _to_original(template.state_dict(), 6).items()}
    original["head.weight"], original["head.bias"] = torch.randn(3, 48), torch.randn(3)
    model = conv.load(original, kwargs)  # strict
    assert model.channel_embedding == ("slot" if extra["max_number_channels"] == 10 else "none")
    with pytest.raises(ValueError, match="not part of"):
        conv.convert_state_dict({**original, "blocks.0.bogus": torch.zeros(1)}, kwargs)
    counts = [2, 4, 1]
    for size in (24, 20):  # native grid, then a resampled one
        x = torch.randn(sum(counts), 1, size, size)
        batch = stacked_to_batch(x, counts)
        with torch.no_grad():
            ours = model(batch)
            ref = _original_forward(original, x, counts, {**kwargs, **extra})
            torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
            # the compact batch (3 .. 4 slots instead of the original's 10) gives the same embeddings
            compact = ChannelBatch(batch.values[:, :4], batch.channel_ids[:, :4], batch.mask[:, :4])
            torch.testing.assert_close(model(compact), ours, atol=2e-5, rtol=1e-4)


# -- channel-adaptive behaviour ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["slot", "vocab"])
def test_padded_batch_matches_each_sample_alone(mode):
    model = _model(channel_embedding=mode, num_channels=9)
    items = [_sample([3, 1, 5]), _sample([0]), _sample([7, 2, 4, 6, 8])]
    batch = ChannelBatch.collate(items)
    with torch.no_grad():
        feats = model.forward_features(batch)
        together = model.pool(feats, batch)
        assert model.channel_tokens(feats, batch).shape == (9 * 4, 32)
        for i, s in enumerate(items):
            alone = model(ChannelBatch.collate([s]))
            torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_slot_versus_vocab_channel_embedding():
    s = _sample([1, 4, 6, 2])
    perm = torch.tensor([2, 0, 3, 1])
    permuted = ChannelBatch.collate([ChannelSample(s.values[perm], s.channel_ids[perm])])
    relabelled = ChannelBatch.collate([ChannelSample(s.values, torch.tensor([0, 3, 5, 7]))])
    holed = ChannelBatch.collate([s])
    holed.mask[0, 1] = False
    compact = ChannelBatch.collate([ChannelSample(s.values[[0, 2, 3]], s.channel_ids[[0, 2, 3]])])
    with torch.no_grad():
        slot = _model(channel_embedding="slot")
        base = slot(ChannelBatch.collate([s]))
        assert (slot(permuted) - base).abs().max() > 1e-3  # slot = position: order matters
        torch.testing.assert_close(slot(relabelled), base)  # ... and ids do not
        # slots count the present channels, so a hole in the mask is the compacted sample
        torch.testing.assert_close(slot(holed), slot(compact), atol=1e-5, rtol=1e-5)
        vocab = _model(channel_embedding="vocab", num_channels=8)
        base = vocab(ChannelBatch.collate([s]))
        torch.testing.assert_close(vocab(permuted), base, atol=1e-5, rtol=1e-5)  # vocab = identity
        assert (vocab(relabelled) - base).abs().max() > 1e-3
        torch.testing.assert_close(vocab(holed), vocab(compact), atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_channels"):
        ChAdaViT(img_size=16, patch_size=8, channel_embedding="vocab")
    with pytest.raises(ValueError, match="channel_embedding"):
        ChAdaViT(img_size=16, patch_size=8, channel_embedding="semantic")
    with pytest.raises(ValueError, match="max_number_channels"):
        _model(max_number_channels=2)(ChannelBatch.collate([_sample([0, 1, 2])]))
    with pytest.raises(ValueError, match="num_channels"):
        _model(channel_embedding="vocab", num_channels=4)(ChannelBatch.collate([_sample([5])]))


# -- training ------------------------------------------------------------------------------------------
def test_gradients_reach_every_parameter_and_checkpointing_matches():
    model = create_encoder("chadavit_test").train()
    ckpt = create_encoder("chadavit_test", grad_checkpointing=True).train()
    ckpt.load_state_dict(model.state_dict())
    batch = ChannelBatch.collate([_sample([0, 2, 5]), _sample([1, 3])])
    grads = []
    for m in (model, ckpt):
        m(batch).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)
    assert (model.channel_embed.weight.grad[3:] == 0).all()  # slots beyond 3 channels are never used


def test_save_load_round_trip(tmp_path):
    model = _model(channel_embedding="vocab", num_channels=6)
    batch = ChannelBatch.collate([_sample([1, 2, 3]), _sample([4])])
    save_pretrained(model, tmp_path / "chada")
    loaded = load_pretrained(tmp_path / "chada")
    assert isinstance(loaded, ChAdaViT) and loaded.channel_embedding == "vocab"
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
