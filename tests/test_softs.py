from __future__ import annotations

import torch

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.encoders import create_encoder
from chanformer.forecasting import ChannelForecaster
from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.nn import STAR
from tests.conftest import reference_path


def test_reference_fixture_all_outputs():
    report = check_reference_fixture(reference_path("softs"))
    assert report.passed
    assert {c.name for c in report.checks if c.passed} == {"forecast", "forecast_no_mark", "encoder_out",
                                                           "encoder_out_no_mark"}


def _original_state(cfg):
    """A random state dict in the original SOFTS key layout for any configuration."""
    d, core, ff, L, H = cfg["d_model"], cfg["d_core"], cfg["d_ff"], cfg["seq_len"], cfg["pred_len"]
    sd = {"enc_embedding.value_embedding.weight": torch.randn(d, L), "enc_embedding.value_embedding.bias": torch.randn(d),
          "projection.weight": torch.randn(H, d), "projection.bias": torch.randn(H)}
    for i in range(cfg["e_layers"]):
        p = f"encoder.attn_layers.{i}."
        shapes = {"attention.gen1": (d, d), "attention.gen2": (core, d), "attention.gen3": (d, d + core),
                  "attention.gen4": (d, d), "conv1": (ff, d, 1), "conv2": (d, ff, 1)}
        for k, shp in shapes.items():
            sd[p + k + ".weight"] = torch.randn(*shp) * 0.1
            sd[p + k + ".bias"] = torch.randn(shp[0]) * 0.1
        for n in ("norm1", "norm2"):
            sd[p + n + ".weight"] = torch.rand(d) + 0.5
            sd[p + n + ".bias"] = torch.randn(d) * 0.1
    return sd


def test_converter_other_configuration():
    cfg = {"seq_len": 48, "pred_len": 12, "d_model": 40, "d_core": 24, "d_ff": 80, "e_layers": 3,
           "dropout": 0.1, "activation": "relu", "use_norm": False}
    conv = get_converter("softs")
    model = conv.load(_original_state(cfg), {"configs": cfg})
    assert isinstance(model, ChannelForecaster) and model.norm is None
    assert len(model.encoder.layers) == 3 and isinstance(model.encoder.layers[0].mlp.act, torch.nn.ReLU)
    x = torch.randn(2, 48, 5)
    out = conv.run(model, {"x_enc": x}, {})
    assert out["forecast"].shape == (2, 12, 5) and torch.isfinite(out["forecast"]).all()


def test_padded_channels_do_not_change_real_forecasts():
    model = ChannelForecaster(create_encoder("softs_test"), horizon=4).eval()
    samples = [ChannelSample(torch.randn(c, 16) * (c + 1), torch.arange(c)) for c in (3, 7, 1)]
    batch = ChannelBatch.collate(samples)
    with torch.no_grad():
        joint = model(batch)
        for i, s in enumerate(samples):
            alone = model(ChannelBatch.collate([s]))
            c = s.values.shape[0]
            torch.testing.assert_close(joint[i, :c], alone[0], atol=1e-5, rtol=1e-5)
            assert (joint[i, c:] == 0).all()


def test_training_mode_stochastic_pooling_samples_real_tokens_only():
    star = STAR(8, 4).train()
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    torch.manual_seed(0)
    a = star(x, mask)
    torch.manual_seed(1)
    b = star(x, mask)
    assert not torch.allclose(a, b)  # sampling differs between draws
    # padded tokens never get sampled: changing them cannot change sample 1's real outputs
    x2 = x.clone()
    x2[1, 2:] = 1e3 * torch.randn(4, 8)
    torch.manual_seed(0)
    c = star(x2, mask)
    torch.testing.assert_close(a[1, :2], c[1, :2])
    star.eval()
    # eval pooling is deterministic and equals the softmax-weighted sum over real tokens
    core = star.core_proj(torch.nn.functional.gelu(star.core_hidden(x[1:, :2])))
    pooled = (core * torch.softmax(core, 1)).sum(1, keepdim=True)
    expected = star.out(torch.nn.functional.gelu(star.fuse(torch.cat([x[1:, :2], pooled.expand(-1, 2, -1)], -1))))
    torch.testing.assert_close(star(x, mask)[1:, :2], expected)


def test_gradients_reach_every_parameter():
    model = ChannelForecaster(create_encoder("softs_test"), horizon=3).train()
    batch = ChannelBatch.collate([ChannelSample(torch.randn(4, 16), torch.arange(4))] * 2)
    model(batch).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pretrained_round_trip_identical(tmp_path):
    model = ChannelForecaster(create_encoder("softs_test", d_model=24), horizon=5).eval()
    batch = ChannelBatch.collate([ChannelSample(torch.randn(3, 16), torch.arange(3))])
    save_pretrained(model, tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, ChannelForecaster)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_affine_channel_table_gives_each_channel_a_gain_and_starts_additive():
    """``channel_embedding="affine"``: ``token * (1 + gain[id]) + shift[id]``; with the gains at
    their initial 0 it is the additive table, and a task sizes it from the data's vocabulary."""
    import pytest

    from chanformer.channels import Channel, ChannelVocab
    from chanformer.spec import DataSpec

    torch.manual_seed(0)
    affine = create_encoder("softs_test", channel_embedding="affine", num_channels=5).double().eval()
    additive = create_encoder("softs_test", channel_embedding=True, num_channels=5).double().eval()
    d = affine.embed_dim
    assert affine.channel_embed.weight.shape == (5, 2 * d)
    assert torch.equal(affine.channel_embed.weight[:, d:], torch.zeros(5, d, dtype=torch.float64))
    state = dict(affine.state_dict())
    state["channel_embed.weight"] = state["channel_embed.weight"][:, :d]
    additive.load_state_dict(state)
    values = torch.randn(2, 3, 16, dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    ids = torch.tensor([[0, 3, 4], [2, 1, 0]])
    torch.testing.assert_close(affine.tokens(values, mask, channel_ids=ids),
                               additive.tokens(values, mask, channel_ids=ids), rtol=1e-12, atol=1e-12)
    # a gain of -1 on channel id 3 removes that channel's series from its token: only its shift stays
    with torch.no_grad():
        affine.channel_embed.weight[3, d:] = -1.0
    affine.layers = torch.nn.ModuleList()  # look at the embedding alone
    tok = affine.tokens(values, mask, channel_ids=ids)
    torch.testing.assert_close(tok[0, 1], affine.channel_embed.weight[3, :d], rtol=1e-12, atol=1e-12)
    vocab = ChannelVocab("v", [Channel(f"eeg/C{i}", kind="eeg") for i in range(7)])
    built = create_encoder("softs_test", data_spec=DataSpec(vocab=vocab, n_times=16), channel_embedding="affine")
    assert built.channel_embed.num_embeddings == 7
    drawn = create_encoder("softs_test", channel_embedding="affine", num_channels=5, channel_gain_init=1.0)
    assert 0.5 < float(drawn.channel_embed.weight[:, d:].std()) < 1.5
    with pytest.raises(ValueError, match="channel_gain_init=-1"):
        create_encoder("softs_test", channel_embedding="affine", num_channels=5, channel_gain_init=-1)
    with pytest.raises(ValueError, match="channel_embedding='film'"):
        create_encoder("softs_test", channel_embedding="film", num_channels=5)
    # GAT has no gain table: "affine" is refused, not read as a plain switch
    with pytest.raises(ValueError, match=r"GAT\(channel_embedding='affine'\)"):
        create_encoder("gat_test", channel_embedding="affine", num_channels=5)
