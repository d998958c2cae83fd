import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chanformer import ChannelBatch, ChannelSample, create_encoder, list_encoders
from chanformer.hub import load_pretrained, save_pretrained

MODES = ["gaam", "gaam+sdpa"]


def _samples(n_channels, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in n_channels:
        ids = torch.randperm(10, generator=g)[:c]
        out.append(ChannelSample(torch.randn(c, t, generator=g), ids))
    return out


def _randomise(model):
    with torch.no_grad():
        for layer in model.layers:
            layer.gaam.mean_offsets.normal_(0, 0.3)


def test_registered():
    assert {"gat", "gat_test"} <= set(list_encoders("gat*"))
    enc = create_encoder("gat", seq_len=32, d_model=32, n_layers=1)
    out = enc(ChannelBatch.collate(_samples([3, 5], t=32)))
    assert out.shape == (2, 32)


@pytest.mark.parametrize("mode", MODES)
def test_padded_batch_matches_each_sample_alone(mode):
    torch.manual_seed(0)
    enc = create_encoder("gat_test", mode=mode, n_layers=2, num_channels=10).eval()
    _randomise(enc)
    samples = _samples([3, 6, 1])
    batch = ChannelBatch.collate(samples)
    # garbage in the padded slots must not matter either
    batch.values[~batch.mask] = 1e3
    tokens = enc.forward_features(batch)
    pooled = enc.pool(tokens, batch)
    imp = enc.channel_importance(batch)
    assert torch.isfinite(pooled).all()
    for i, s in enumerate(samples):
        c = s.values.shape[0]
        alone = ChannelBatch.collate([s])
        torch.testing.assert_close(tokens[i, :c], enc.forward_features(alone)[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(pooled[i], enc(alone)[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(imp[i, :c], enc.channel_importance(alone)[0], atol=1e-6, rtol=1e-4)
        assert torch.all(imp[i, c:] == 0)
    torch.testing.assert_close(imp.sum(1), torch.ones(3))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_every_parameter(mode):
    torch.manual_seed(0)
    enc = create_encoder("gat_test", mode=mode, num_channels=10, instance_norm=True)
    _randomise(enc)
    batch = ChannelBatch.collate(_samples([4, 2]))
    enc(batch).pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "channel_embed.weight":  # only the rows of used ids get gradient
            assert p.grad.abs().sum() > 0, name
    assert enc.channel_embed.weight.grad[batch.channel_ids[batch.mask]].abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = create_encoder("gat_test", mode="gaam+sdpa", num_channels=10).eval()
    _randomise(enc)
    batch = ChannelBatch.collate(_samples([5, 3]))
    loaded = load_pretrained(save_pretrained(enc, tmp_path / "gat"))
    assert torch.equal(loaded(batch), enc(batch))
    assert torch.equal(loaded.channel_importance(batch), enc.channel_importance(batch))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        create_encoder("gat_test", mode="softmax")
    with pytest.raises(ValueError, match="n_heads"):
        create_encoder("gat_test", d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="gaam_heads"):
        create_encoder("gat_test", d_model=8, n_heads=2, gaam_heads=9)
    enc = create_encoder("gat_test")
    with pytest.raises(ValueError, match="T=16"):
        enc(ChannelBatch.collate(_samples([2], t=8)))
    with pytest.raises(ValueError, match="num_channels"):
        create_encoder("gat_test", num_channels=3)(ChannelBatch.collate(_samples([4])))


def _task(n, seed):
    """Label in the frequency of channel id 0 (1 or 3 cycles); 2-5 other channels are noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16) / 16
    samples = []
    for _ in range(n):
        y = int(torch.randint(2, (1,), generator=g))
        c = int(torch.randint(3, 7, (1,), generator=g))
        ids = torch.cat([torch.tensor([0]), 1 + torch.randperm(9, generator=g)[: c - 1]])
        ids = ids[torch.randperm(c, generator=g)]
        values = torch.randn(c, 16, generator=g)
        phase = 6.28 * torch.rand(1, generator=g)
        values[ids == 0] = torch.sin(6.28 * (1 + 2 * y) * t + phase) + 0.3 * torch.randn(16, generator=g)
        samples.append(ChannelSample(values, ids, target=torch.tensor(y)))
    return ChannelBatch.collate(samples)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("mode", MODES)
def test_learns_when_one_channel_carries_the_label(mode, one_thread):
    torch.manual_seed(0)
    enc = create_encoder("gat_test", mode=mode, num_channels=10, d_model=32, gaam_heads=4, d_ff=64)
    head = nn.Linear(enc.embed_dim, 2)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=3e-3)
    train, test = _task(1024, 0), _task(256, 1)
    for _ in range(200):
        idx = torch.randint(1024, (64,))
        b = ChannelBatch(train.values[idx], train.channel_ids[idx], train.mask[idx], target=train.target[idx])
        loss = F.cross_entropy(head(enc(b)), b.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        acc = (head(enc(test)).argmax(1) == test.target).float().mean().item()
    assert acc > 0.9, acc  # chance is 0.5
