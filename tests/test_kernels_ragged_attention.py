"""Triton ragged-channel attention vs SDPA + boolean mask, under the CPU interpreter."""

import pytest
import torch

from chanformer.kernels import use_backend
from chanformer.kernels.ragged_attention import ragged_attention, ragged_attention_reference
from tests.triton_env import DEVICE, MARKS

pytestmark = MARKS


@pytest.fixture(autouse=True)
def _on_device():
    with torch.device(DEVICE):  # the CPU interpreter, or the GPU when there is one
        yield


def _inputs(channels=(5, 2, 3), c=5, p=29, h=2, hd=24):
    b = len(channels)
    q, k, v = (torch.randn(b, h, c * p, hd) for _ in range(3))
    present = torch.arange(c)[None, :] < torch.tensor(channels)[:, None]  # [B, C]
    key_mask = present[:, :, None].expand(b, c, p).reshape(b, c * p)  # channel-major tokens
    return q, k, v, key_mask


def test_forward_matches_sdpa_and_skips_padding():
    from chanformer.kernels.ragged_attention import ragged_attention_triton

    q, k, v, key_mask = _inputs()
    out = ragged_attention_triton(q, k, v, key_mask)
    torch.testing.assert_close(out, ragged_attention_reference(q, k, v, key_mask), atol=2e-5, rtol=1e-4)
    # padded keys never matter: large values in them change nothing
    k2, v2 = k.clone(), v.clone()
    k2[~key_mask[:, None, :].expand_as(k[..., 0])] = 1e4
    v2[~key_mask[:, None, :].expand_as(v[..., 0])] = 1e4
    torch.testing.assert_close(ragged_attention_triton(q, k2, v2, key_mask), out)


def test_gradients_and_dispatch():
    q, k, v, key_mask = _inputs(channels=(1, 4), c=4, p=9, h=1, hd=16)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    refs = [t.clone().requires_grad_() for t in (q, k, v)]
    with use_backend("triton"):
        out = ragged_attention(*leaves, key_mask, scale=0.3)
    ref = ragged_attention(*refs, key_mask, scale=0.3)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for a, r in zip(leaves, refs):
        torch.testing.assert_close(a.grad, r.grad, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="key_mask"):
        ragged_attention(q, k, v, key_mask.float())


def test_gradients_multi_block_with_skipped_blocks():
    from chanformer.kernels.ragged_attention import ragged_attention_triton

    q, k, v, key_mask = _inputs(channels=(5, 2, 3), c=5, p=29, h=2, hd=24)  # L = 145: 3 key blocks, some all padding
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    refs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = ragged_attention_triton(*leaves, key_mask)
    ref = ragged_attention_reference(*refs, key_mask)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for name, a, r in zip("qkv", leaves, refs):
        torch.testing.assert_close(a.grad, r.grad, atol=2e-5, rtol=1e-4, msg=f"d{name}")


def test_sample_without_real_tokens_gives_zeros():
    from chanformer.kernels.ragged_attention import ragged_attention_triton

    q, k, v, key_mask = _inputs(channels=(0, 2), c=2, p=8, h=1, hd=16)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = ragged_attention_triton(*leaves, key_mask)
    out.sum().backward()
    assert torch.isfinite(out).all() and (out[0] == 0).all()
    assert all(torch.isfinite(t.grad).all() and (t.grad[0] == 0).all() for t in leaves)
    torch.testing.assert_close(out[1], ragged_attention_reference(q, k, v, key_mask)[1], atol=2e-5, rtol=1e-4)


def test_bfloat16_values_and_gradients():
    """bf16 q/k/v (the tensor-core dtype on GPU): output and gradients match SDPA in float32 on the same
    bf16-rounded values up to bf16 rounding, and come back in bf16."""
    from chanformer.kernels.ragged_attention import ragged_attention_triton

    q, k, v, key_mask = _inputs(channels=(5, 2, 3), c=5, p=29, h=2, hd=24)
    low = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    ref = [t.bfloat16().float().requires_grad_() for t in (q, k, v)]
    out = ragged_attention_triton(*low, key_mask)
    expected = ragged_attention_reference(*ref, key_mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    g = torch.randn_like(expected).bfloat16()
    (out * g).sum().backward()
    (expected * g.float()).sum().backward()
    for name, a, r in zip("qkv", low, ref):
        assert a.grad.dtype == torch.bfloat16
        torch.testing.assert_close(a.grad.float(), r.grad, atol=2e-2 * r.grad.abs().max().item(), rtol=2e-2, msg=f"d{name}")
