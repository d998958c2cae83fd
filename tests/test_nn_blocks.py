"""The shared blocks of chanformer.nn (attention, MLP, state-key renames) and the families built on them."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from chanformer.encoders import create_encoder
from chanformer.encoders._patch_vit import ChannelPatchViT
from chanformer.encoders.chadavit import ChAdaViT
from chanformer.encoders.channelvit import ChannelViT
from chanformer.hub import load_pretrained, save_pretrained
from chanformer.nn.attention import MultiHeadSelfAttention, merge_heads, split_heads
from chanformer.nn.mlp import Mlp
from chanformer.nn.state_keys import rename_keys, upgrade_state_dict
from chanformer.nn.transformer import MaskedSelfAttention
from chanformer.registry import lookup


def _naive_attention(attn: MultiHeadSelfAttention, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    b, n, d = x.shape
    h, hd = attn.num_heads, attn.head_dim
    q, k, v = (t.reshape(b, n, h, hd).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    logits = (q @ k.transpose(-1, -2)) * attn.scale
    logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
    return attn.proj(out)


def test_self_attention_is_masked_softmax_attention() -> None:
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(12, 3, qk_scale=None).double().eval()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    key_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    torch.testing.assert_close(attn(x, key_mask), _naive_attention(attn, x, key_mask))
    assert attn.scale == 4**-0.5
    # padded keys never reach real queries
    y = x.clone()
    y[1, 4:] = 1e3
    assert torch.equal(attn(x, key_mask)[1, :4], attn(y, key_mask)[1, :4])


def test_split_and_merge_heads_round_trip() -> None:
    packed = torch.arange(2 * 5 * 24, dtype=torch.float32).reshape(2, 5, 24)
    q, k, v = split_heads(packed, 4, 3)
    assert q.shape == (2, 4, 5, 2)
    assert torch.equal(merge_heads(k), packed[..., 8:16])
    assert torch.equal(merge_heads(split_heads(packed, 6)[0]), packed)
    with pytest.raises(ValueError, match="not 3 parts of 5 heads"):
        split_heads(packed, 5, 3)


def test_old_names_stay_importable() -> None:
    assert MaskedSelfAttention is MultiHeadSelfAttention
    with pytest.raises(ValueError, match="Mlp\\(activation='tanh'\\)"):
        Mlp(4, 8, "tanh")


def test_both_channel_vits_share_one_trunk() -> None:
    for cls in (ChannelViT, ChAdaViT):
        assert issubclass(cls, ChannelPatchViT)
        for name in ("prepare_tokens", "forward_features", "pool", "reset_parameters", "example_batch"):
            assert name not in cls.__dict__, f"{cls.__name__} redefines {name}"


def test_rename_keys_never_overwrites_new_keys() -> None:
    state = {"m.ff.0.weight": 1, "m.ff.fc1.weight": 2, "m.ff.0.bias": 3, "other.ff.0.bias": 4}
    done = rename_keys(state, "m.", {"ff.0.": "ff.fc1."})
    assert done == [("m.ff.0.bias", "m.ff.fc1.bias")]
    assert state == {"m.ff.0.weight": 1, "m.ff.fc1.weight": 2, "m.ff.fc1.bias": 3, "other.ff.0.bias": 4}


# Keys as chanformer saved them before the blocks were shared: (model builder, new -> old renames).
OLD_KEYS = {
    "gat": (lambda: create_encoder("gat_test"), {".ff.fc1.": ".ff.0.", ".ff.fc2.": ".ff.3."}),
    "softs": (lambda: create_encoder("softs_test"), {".mlp.fc1.": ".fc1.", ".mlp.fc2.": ".fc2."}),
    "mambattention": (
        lambda: lookup("model", "mambattention_test")(),
        {".attn.qkv.weight": ".attn.in_proj_weight", ".attn.qkv.bias": ".attn.in_proj_bias", ".attn.proj.": ".attn.out_proj."},
    ),
}


def _to_old(state: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, val in state.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = val
    return out


@pytest.mark.parametrize("family", sorted(OLD_KEYS))
def test_checkpoints_with_the_old_key_names_still_load(family: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    build, renames = OLD_KEYS[family]
    torch.manual_seed(0)
    model = build()
    state = model.state_dict()
    old = _to_old(state, renames)
    assert set(old) != set(state), "the renames must touch some key"
    assert set(upgrade_state_dict(model, old)) == set(state)
    # plain load_state_dict (Lightning checkpoints): strict, through the module's rename hook
    torch.manual_seed(1)
    fresh = build()
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    # a pretrained folder written before the rename
    save_pretrained(model, tmp_path / family)
    weights = tmp_path / family / "model.safetensors"
    save_file(_to_old(load_file(str(weights)), renames), str(weights))
    loaded = load_pretrained(tmp_path / family)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_mambattention_attention_uses_multihead_attention_scale() -> None:
    model = lookup("model", "mambattention_test")()
    attn = model.blocks[0].attention.attn
    assert isinstance(attn, MultiHeadSelfAttention)
    assert attn.scale == 1 / math.sqrt(attn.head_dim)


def test_series_conv_embedding_treats_each_channel_alone_and_is_shift_invariant_inside() -> None:
    from chanformer.nn.series_conv import SeriesConvEmbedding

    torch.manual_seed(0)
    emb = SeriesConvEmbedding(d_model=8, width=4, kernel_size=3, dilations=(1, 2)).double()
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    out = emb(x)
    assert out.shape == (2, 3, 8)
    # channel 1 changed: the tokens of channels 0 and 2 stay bit-identical
    y = x.clone()
    y[:, 1] = torch.randn(2, 40, dtype=torch.float64)
    changed = emb(y)
    assert torch.equal(changed[:, [0, 2]], out[:, [0, 2]]) and not torch.allclose(changed[:, 1], out[:, 1])
    # an event far from both edges, moved by 5 samples, gives the same token (receptive field 7)
    pulse = torch.zeros(1, 1, 60, dtype=torch.float64)
    pulse[..., 25:28] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    moved = torch.roll(pulse, 5, dims=-1)
    torch.testing.assert_close(emb(pulse), emb(moved), rtol=1e-12, atol=1e-12)
    # any length: the token width does not depend on T
    assert emb(torch.randn(1, 2, 7, dtype=torch.float64)).shape == (1, 2, 8)


def test_segment_mean_embedding_is_a_linear_layer_over_segment_means() -> None:
    from chanformer.nn.series_segments import SegmentMeanEmbedding

    torch.manual_seed(0)
    emb = SegmentMeanEmbedding(d_model=5, segments=4).double()
    x = torch.randn(2, 3, 12, dtype=torch.float64)
    means = x.view(2, 3, 4, 3).mean(-1)  # 12 samples, 4 segments of 3
    expected = means @ emb.proj.weight.T + emb.proj.bias
    torch.testing.assert_close(emb(x), expected, rtol=1e-12, atol=1e-12)
    # moving samples within a segment changes nothing; across segments it does
    within = x[..., [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
    torch.testing.assert_close(emb(within), emb(x), rtol=1e-12, atol=1e-12)
    across = x[..., [3, 1, 2, 0, 4, 5, 6, 7, 8, 9, 10, 11]]
    assert not torch.allclose(emb(across), emb(x))
    # any length, including one shorter than the segment count
    assert emb(torch.randn(1, 2, 3, dtype=torch.float64)).shape == (1, 2, 5)
    with pytest.raises(ValueError, match="segments=0"):
        SegmentMeanEmbedding(5, segments=0)


def test_series_conv_embedding_rejects_bad_sizes() -> None:
    from chanformer.nn.series_conv import SeriesConvEmbedding

    with pytest.raises(ValueError, match="kernel_size=4"):
        SeriesConvEmbedding(8, kernel_size=4)
    with pytest.raises(ValueError, match="dilations"):
        SeriesConvEmbedding(8, dilations=(1, 0))
    with pytest.raises(ValueError, match="embedding='patch'"):
        create_encoder("softs_test", embedding="patch")
