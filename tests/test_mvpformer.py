from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.encoders import create_encoder
from chanformer.encoders.mvpformer import MVPFormer, segment_samples_for_coeffs
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.kernels.mvpa import mvpa, relative_channel_index
from chanformer.nn.wavelet import DB4_DEC_LO, dwt_max_level, wavedec, wavedec_lengths
from tests.conftest import reference_path

SEG = 64


def _model(**kw) -> MVPFormer:
    model = create_encoder("mvpformer_test", **kw)
    with torch.no_grad():  # non-trivial norms so that wrong wiring shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _sample(n_chans: int, n_seg: int, ids: list[int] | None = None) -> ChannelSample:
    ids = list(range(n_chans)) if ids is None else ids
    return ChannelSample(torch.randn(n_chans, n_seg * SEG), torch.tensor(ids))


def test_reference_fixture():
    report = check_reference_fixture(reference_path("mvpformer"))
    assert report.passed, [(c.name, c.max_abs, c.note) for c in report.checks]
    assert all(c.max_abs < 1e-5 for c in report.checks)


# -- wavelet ------------------------------------------------------------------------------------------
def test_db4_filters_are_orthonormal_daubechies():
    lo = torch.tensor(DB4_DEC_LO, dtype=torch.float64)
    assert lo.sum().item() == pytest.approx(2**0.5, abs=1e-12)
    for shift in range(4):  # double-shift orthonormality
        dot = (lo[2 * shift :] * lo[: 8 - 2 * shift]).sum().item()
        assert dot == pytest.approx(1.0 if shift == 0 else 0.0, abs=1e-12)
    hi = torch.tensor([(-1) ** (k + 1) * DB4_DEC_LO[7 - k] for k in range(8)], dtype=torch.float64)
    k = torch.arange(8, dtype=torch.float64)
    for m in range(4):  # four vanishing moments
        assert (hi * k**m).sum().item() == pytest.approx(0.0, abs=1e-9)


def test_wavedec_lengths_and_levels():
    assert dwt_max_level(2560) == 8 and dwt_max_level(512) == 6 and dwt_max_level(13) == 0
    assert wavedec_lengths(512) == [14, 14, 22, 38, 70, 133, 259]
    assert sum(wavedec_lengths(2560)) == 2610
    coeffs = wavedec(torch.randn(3, 2, 511))
    assert [c.shape[-1] for c in coeffs] == wavedec_lengths(511) and coeffs[0].shape[:2] == (3, 2)
    assert segment_samples_for_coeffs(550) == 512


def test_wavedec_periodic_single_level_formula():
    # periodic mode: cA[i] = sum_k lo[k] x[(2i + 1 - k) mod n], cD likewise with the mirror filter
    lo = torch.tensor(DB4_DEC_LO, dtype=torch.float64)
    hi = torch.tensor([(-1) ** (k + 1) * DB4_DEC_LO[7 - k] for k in range(8)], dtype=torch.float64)
    for n in (36, 37):
        x = torch.randn(n, dtype=torch.float64)
        approx, detail = wavedec(x, level=1)
        assert approx.numel() == detail.numel() == (n + 7) // 2
        idx = (2 * torch.arange(approx.numel())[:, None] + 1 - torch.arange(8)[None, :]) % n
        torch.testing.assert_close(approx, (x[idx] * lo).sum(-1))
        torch.testing.assert_close(detail, (x[idx] * hi).sum(-1))


@pytest.mark.skipif(importlib.util.find_spec("pywt") is None, reason="PyWavelets not installed")
def test_wavedec_matches_pywavelets():
    import pywt

    x = torch.randn(4, 301, dtype=torch.float64)
    ref = torch.from_numpy(
        __import__("numpy").concatenate(pywt.wavedec(x.numpy(), "db4", mode="periodic"), -1)
    )
    torch.testing.assert_close(torch.cat(wavedec(x), -1), ref)


# -- MVPA against a direct N x N statement of the formula ----------------------------------------------
def _naive_mvpa(q, k, v, tk, ck, u, vb, z, mask, window, scale):
    b, h, t, c, hd = q.shape
    g = h // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    tk, ck = tk.repeat_interleave(g, 0), ck.repeat_interleave(g, 0)
    u, vb, z = (x.repeat_interleave(g, 0) for x in (u, vb, z))
    outs = []
    for bi in range(b):
        real = mask[bi].nonzero().flatten()
        n_real = real.numel()
        qb = q[bi][:, :, real]  # [H, T, n, hd]
        kb, vv = k[bi][:, :, real], v[bi][:, :, real]
        n = t * n_real
        qf, kf, vf = qb.reshape(h, n, hd), kb.reshape(h, n, hd), vv.reshape(h, n, hd)
        ts = torch.arange(t).repeat_interleave(n_real)
        cs = torch.arange(n_real).repeat(t)
        dt = ts[:, None] - ts[None, :]
        content = torch.einsum("hnd,hmd->hnm", qf + u[:, None], kf)
        keep = (dt.abs() <= window) | (ts[:, None] == t - 1)
        content = content * keep
        trow = (t - 1 - dt).clamp(0, t - 1)
        crow = n_real - 1 - (cs[:, None] - cs[None, :]).abs()
        time = torch.einsum("hnd,hnmd->hnm", qf + vb[:, None], tk[:, trow])
        chan = torch.einsum("hnd,hnmd->hnm", qf + z[:, None], ck[:, crow])
        logits = (content + time + chan) * scale
        logits = logits.masked_fill(dt < 0, float("-inf"))
        out = (logits.softmax(-1) @ vf).reshape(h, t, n_real, hd)
        full = torch.zeros(h, t, c, hd, dtype=q.dtype)
        full[:, :, real] = out
        outs.append(full)
    return torch.stack(outs)


def test_mvpa_matches_direct_formula_with_padding():
    gen = torch.Generator().manual_seed(1)
    b, h, h_kv, t, c, hd = 3, 4, 2, 6, 5, 8
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = r(b, h, t, c, hd), r(b, h_kv, t, c, hd), r(b, h_kv, t, c, hd)
    tk, ck = r(h_kv, t, hd), r(h_kv, c, hd)
    u, vb, z = r(h_kv, hd), r(h_kv, hd), r(h_kv, hd)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    out = mvpa(
        q,
        k,
        v,
        tk,
        ck,
        relative_channel_index(mask),
        content_bias=u,
        time_bias=vb,
        chan_bias=z,
        key_mask=mask,
        window=2,
        scale=0.3,
    )
    want = _naive_mvpa(q, k, v, tk, ck, u, vb, z, mask, 2, 0.3)
    torch.testing.assert_close(out * mask[:, None, None, :, None], want)


# -- converter on another configuration --------------------------------------------------------------
_INV_ATTN = {
    "q_proj": "q_attn",
    "kv_proj": "c_attn",
    "time_proj": "position_net",
    "chan_proj": "channel_net",
    "out_proj": "c_proj",
}
_INV_MLP = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


def _to_original(model: MVPFormer, global_att: bool, n_positions: int) -> dict[str, torch.Tensor]:
    """Our state dict in the original's key layout (inverse of the converter's map)."""
    sd = model.state_dict()
    out = {
        "positional_embedding.weight": sd["backbone.time_embed.weight"],
        "channel_embedding.weight": sd["backbone.channel_embed.weight"],
        "ln_f.weight": sd["backbone.norm.weight"],
        "encoder.ln.weight": sd["segment_encoder.norm.weight"],
        "encoder.proj.weight": sd["segment_encoder.proj.weight"],
    }
    for i in range(len(model.backbone.blocks)):
        pre = f"backbone.blocks.{i}."
        out[f"h.{i}.ln_1.weight"] = sd[pre + "norm.weight"]
        out[f"h.{i}.ln_2.weight"] = torch.randn_like(sd[pre + "norm.weight"])  # unused by the original
        for ours, theirs in _INV_ATTN.items():
            out[f"h.{i}.attn.{theirs}.weight"] = sd[pre + f"attn.{ours}.weight"]
        for ours, theirs in _INV_MLP.items():
            out[f"h.{i}.mlp.{theirs}.weight"] = sd[pre + f"mlp.{ours}.weight"]
        tb, cb = sd[pre + "attn.time_bias"], sd[pre + "attn.chan_bias"]
        u = sd[pre + "attn.content_bias"] if global_att else torch.randn_like(tb)
        out[f"h.{i}.attn.attn_bias"] = torch.cat([u.flatten(), tb.flatten(), cb.flatten()])
        out[f"h.{i}.attn.time_bias"] = torch.ones(1, 1, n_positions, n_positions, dtype=torch.bool).tril()
        out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return out


def test_converter_other_configuration_and_lora_merge():
    kwargs = {
        "n_positions": 8,
        "n_channels": 6,
        "n_embd": 48,
        "n_layer": 2,
        "n_head": 6,
        "n_head_kv": 3,
        "n_inner": 40,
        "global_att": False,
        "wave_encoder_kwargs": {"size_input": 100, "size_output": 48},
    }
    conv = get_converter("mvpformer")
    src = conv.build(kwargs).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(0, 0.3)
    state = _to_original(src, global_att=False, n_positions=8)
    loaded = conv.load(
        state, {k: v for k, v in kwargs.items() if k != "wave_encoder_kwargs"}
    )  # size from weights
    assert loaded.segment_encoder.n_coeffs == src.segment_encoder.n_coeffs
    batch = ChannelBatch.collate([ChannelSample(torch.randn(c, 300), torch.arange(c)) for c in (5, 6)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(batch), src.forward_features(batch))
    assert loaded.forward_features(batch).shape == (2, 3, 6, 48)

    # LoRA adapters (q_attn, value half of c_attn) are merged with scale alpha / rank
    a_q, b_q = torch.randn(4, 48), torch.randn(48, 4)
    a_c, b_c = torch.randn(4, 48), torch.randn(24, 4)
    lora = dict(state) | {
        "h.0.attn.q_attn.lora_A": a_q,
        "h.0.attn.q_attn.lora_B": b_q,
        "h.0.attn.c_attn.lora_A": a_c,
        "h.0.attn.c_attn.lora_B": b_c,
    }
    merged = conv.convert_state_dict(
        {"mvpformer." + k: v for k, v in lora.items()}, kwargs | {"lora_alpha": 8}
    )
    torch.testing.assert_close(
        merged["backbone.blocks.0.attn.q_proj.weight"], state["h.0.attn.q_attn.weight"] + 2 * b_q @ a_q
    )
    kv = merged["backbone.blocks.0.attn.kv_proj.weight"]
    torch.testing.assert_close(kv[:24], state["h.0.attn.c_attn.weight"][:24])
    torch.testing.assert_close(kv[24:], state["h.0.attn.c_attn.weight"][24:] + 2 * b_c @ a_c)
    with pytest.raises(ValueError, match="h.0.attn.bogus"):
        conv.convert_state_dict(state | {"h.0.attn.bogus.weight": a_q}, kwargs)


# -- channel handling -----------------------------------------------------------------------------------
def test_padding_and_holes_never_change_real_tokens():
    model = _model()
    samples = [_sample(3, 5, [4, 1, 7]), _sample(6, 5, [0, 1, 2, 3, 5, 9]), _sample(1, 5, [2])]
    batch = ChannelBatch.collate(samples)
    with torch.no_grad():
        feats = model.forward_features(batch)
        pooled = model(batch)
        for i, s in enumerate(samples):
            alone = ChannelBatch.collate([s])
            c = s.values.shape[0]
            torch.testing.assert_close(
                feats[i, :, :c], model.forward_features(alone)[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(pooled[i], model(alone)[0], atol=1e-5, rtol=1e-5)
        # a hole in the middle (mask False) = the sample without that channel
        holed = ChannelBatch(batch.values.clone(), batch.channel_ids, batch.mask.clone())
        holed.mask[1, 2] = False
        holed.values[1, 2] = 123.0  # whatever an absent channel holds is ignored
        keep = [0, 1, 3, 4, 5]
        alone = ChannelBatch.collate([ChannelSample(samples[1].values[keep], samples[1].channel_ids[keep])])
        torch.testing.assert_close(model(holed)[1], model(alone)[0], atol=1e-5, rtol=1e-5)


def test_any_channel_count_and_bad_inputs():
    model = _model()
    with torch.no_grad():
        for c in (1, 2, 9, 16):
            assert model(ChannelBatch.collate([_sample(c, 2)])).shape == (1, 32)
    with pytest.raises(ValueError, match="n_channels=16"):
        model(ChannelBatch.collate([_sample(17, 1)]))
    with pytest.raises(ValueError, match="n_positions=16"):
        model(ChannelBatch.collate([_sample(2, 17)]))
    bad = ChannelBatch.collate([ChannelSample(torch.randn(2, SEG + 3), torch.tensor([0, 1]))])
    with pytest.raises(ValueError, match="64-sample segments"):
        model(bad)
    with pytest.raises(ValueError, match="num_kv_heads"):
        create_encoder("mvpformer_test", num_kv_heads=3)


def test_causal_over_segments():
    model = _model()
    s = _sample(3, 4)
    later = ChannelSample(s.values.clone(), s.channel_ids)
    later.values[:, 3 * SEG :] += 5.0  # change only the last segment
    with torch.no_grad():
        a = model.forward_features(ChannelBatch.collate([s]))
        b = model.forward_features(ChannelBatch.collate([later]))
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_gradients_reach_every_parameter():
    model = create_encoder("mvpformer_test", drop_rate=0.0, attn_drop_rate=0.0).train()
    batch = ChannelBatch.collate([_sample(3, 4), _sample(5, 4)])
    tokens = model.forward_features(batch)
    (tokens.square().mean() + model.pool(tokens, batch).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_grad_checkpointing_same_gradients():
    batch = ChannelBatch.collate([_sample(3, 3)])
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = create_encoder("mvpformer_test", grad_checkpointing=ckpt, drop_rate=0.0, attn_drop_rate=0.0)
        model(batch).sum().backward()
        grads.append(model.backbone.blocks[0].attn.q_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_save_load_round_trip(tmp_path):
    model = _model()
    batch = ChannelBatch.collate([_sample(4, 3), _sample(2, 3)])
    save_pretrained(model, tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch), atol=0, rtol=0)


def test_segment_encoder_is_rmsnorm_then_linear():
    model = _model()
    x = torch.randn(5, SEG)
    enc = model.segment_encoder
    coeffs = torch.cat(wavedec(x), -1)
    want = F.linear(F.rms_norm(coeffs, (coeffs.shape[-1],), enc.norm.weight, 1e-5), enc.proj.weight)
    torch.testing.assert_close(enc(x), want)


def test_trains_with_64_channels_by_25_segments():
    """N = 64 x 25 = 1600 tokens: one [B, H, N, N] score tensor per layer keeps this trainable on CPU."""
    from chanformer import ChannelBatch, create_encoder

    enc = create_encoder("mvpformer_test", n_channels=64, n_positions=25)
    s = enc.segment_samples
    batch = ChannelBatch(torch.randn(1, 64, 25 * s), torch.arange(64)[None], torch.ones(1, 64, dtype=torch.bool))
    feats = enc.forward_features(batch)
    assert feats.shape[:3] == (1, 25, 64)
    feats.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize("content, window", [(True, 3), (True, None), (False, 3)])
def test_mvpa_reference_blocks_equal_one_block(content, window):
    """The reference attends per block of query segments over their key prefix (causal); T = 25 gives
    3 blocks. Values and gradients equal one block over all segments (float64)."""
    from chanformer.kernels.mvpa import mvpa_reference, relative_channel_index
    from chanformer.kernels.mvpa.reference import _attend_block

    torch.manual_seed(0)
    b, h, h_kv, t, c, hd = 2, 4, 2, 25, 3, 8
    mask = torch.tensor([[True, True, True], [True, False, True]])
    leaves = {
        "q": torch.randn(b, h, t, c, hd), "k": torch.randn(b, h_kv, t, c, hd), "v": torch.randn(b, h_kv, t, c, hd),
        "time_keys": torch.randn(h_kv, t, hd), "chan_keys": torch.randn(h_kv, c, hd),
        "content_bias": torch.randn(h_kv, hd), "time_bias": torch.randn(h_kv, hd), "chan_bias": torch.randn(h_kv, hd),
    }
    leaves = {n: x.double().requires_grad_() for n, x in leaves.items()}
    if not content:
        del leaves["content_bias"]
    p = dict(leaves)
    index = relative_channel_index(mask)
    blocked = mvpa_reference(
        p["q"], p["k"], p["v"], p["time_keys"], p["chan_keys"], index, content_bias=p.get("content_bias"),
        time_bias=p["time_bias"], chan_bias=p["chan_bias"], key_mask=mask, window=window, scale=0.3,
    )
    whole = _attend_block(
        p["q"].reshape(b, h_kv, h // h_kv, t, c, hd), p["k"].unsqueeze(2), p["v"].unsqueeze(2), 0, t,
        p["time_keys"], p["chan_keys"], index, p.get("content_bias"), p["time_bias"], p["chan_bias"], mask,
        window, 0.3, 0.0,
    ).reshape(b, h, t, c, hd)
    real = mask[:, None, None, :, None].double()  # padded channels' queries are not used
    torch.testing.assert_close(blocked * real, whole * real)
    grad_out = torch.randn_like(blocked) * real
    for a, w in zip(torch.autograd.grad(blocked, list(p.values()), grad_out, allow_unused=True),
                    torch.autograd.grad(whole, list(p.values()), grad_out, allow_unused=True)):
        if a is None or w is None:
            assert a is None and w is None  # k without the content term
        else:
            torch.testing.assert_close(a, w)
