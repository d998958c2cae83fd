"""Triton MVPA vs the reference chanformer.kernels.mvpa.mvpa_reference, under the CPU interpreter."""

import pytest
import torch

from chanformer.kernels import use_backend
from chanformer.kernels.mvpa import mvpa_reference, relative_channel_index
from tests.triton_env import DEVICE, MARKS

pytestmark = MARKS


@pytest.fixture(autouse=True)
def _on_device():
    with torch.device(DEVICE):  # the CPU interpreter, or the GPU when there is one
        yield


def _inputs(b=2, t=5, c=3, hd=16, h=4, h_kv=2, masked=True):
    q = torch.randn(b, h, t, c, hd)
    k, v = torch.randn(b, h_kv, t, c, hd), torch.randn(b, h_kv, t, c, hd)
    mask = torch.ones(b, c, dtype=torch.bool)
    if masked:
        mask[1, 1] = False  # a gap in the middle: ranks skip it
    chan_index = relative_channel_index(mask)
    kw = dict(
        time_keys=torch.randn(h_kv, t, hd), chan_keys=torch.randn(h_kv, c, hd), chan_index=chan_index,
        content_bias=torch.randn(h_kv, hd), time_bias=torch.randn(h_kv, hd), chan_bias=torch.randn(h_kv, hd),
        key_mask=mask if masked else None,
    )
    return q, k, v, kw


@pytest.mark.parametrize("window", [1, None])
def test_forward_matches_reference(window):
    from chanformer.kernels.mvpa import mvpa_triton

    q, k, v, kw = _inputs()
    out = mvpa_triton(q, k, v, **kw, window=window)
    ref = mvpa_reference(q, k, v, **kw, window=window)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_no_content_no_mask_longer_sequence():
    from chanformer.kernels.mvpa import mvpa_triton

    q, k, v, kw = _inputs(b=1, t=23, c=4, masked=False)  # N = 92 > one 64-token block
    kw["content_bias"] = None
    out = mvpa_triton(q, k, v, **kw, window=2, scale=0.2)
    torch.testing.assert_close(out, mvpa_reference(q, k, v, **kw, window=2, scale=0.2), atol=1e-4, rtol=1e-4)


def _grad_check(window, content=True, **shape):
    from chanformer.kernels.mvpa import mvpa_triton

    q, k, v, kw = _inputs(**shape)
    if not content:
        kw["content_bias"] = None
    names = ["q", "k", "v", "time_keys", "chan_keys", "content_bias", "time_bias", "chan_bias"]
    base = dict(zip(names[:3], (q, k, v))) | {n: kw[n] for n in names[3:]}
    mine = {n: x.clone().requires_grad_() for n, x in base.items() if x is not None}
    theirs = {n: x.clone().requires_grad_() for n, x in base.items() if x is not None}
    rest = dict(chan_index=kw["chan_index"], key_mask=kw["key_mask"], window=window)

    def call(fn, t):
        return fn(t["q"], t["k"], t["v"], t["time_keys"], t["chan_keys"], content_bias=t.get("content_bias"),
                  time_bias=t["time_bias"], chan_bias=t["chan_bias"], **rest)

    out, ref = call(mvpa_triton, mine), call(mvpa_reference, theirs)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for n in mine:
        expected = theirs[n].grad if theirs[n].grad is not None else torch.zeros_like(mine[n])  # k without content term
        torch.testing.assert_close(mine[n].grad, expected, atol=1e-4, rtol=1e-4, msg=f"grad {n}")


def test_gradients_match_reference():
    _grad_check(window=1)  # T=5, C=3, hd=16, heads 4 / kv 2, a padded channel


def test_gradients_no_content_several_blocks():
    _grad_check(window=None, content=False, b=1, t=23, c=4, masked=False)


def test_non_contiguous_inputs_and_dispatch():
    from chanformer.kernels.mvpa import mvpa

    q, k, v, kw = _inputs()
    q_nc = q.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4)  # same values, permuted strides (as in the module)
    assert not q_nc.is_contiguous()
    with use_backend("triton"):
        fast = mvpa(q_nc, k, v, **kw, window=1)
        with_dropout = mvpa(q_nc, k, v, **kw, window=1, dropout_p=0.5)  # no dropout in the kernel: the reference
    torch.testing.assert_close(fast, mvpa_reference(q, k, v, **kw, window=1), atol=1e-4, rtol=1e-4)
    assert with_dropout.shape == fast.shape


def test_gradients_window_skips_far_key_blocks():
    # N = 200 tokens in 64-token blocks of 16 segments, window 1: query block 2 (segments 32-47) never
    # needs the content term of key block 0 (segments 0-15), so the kernels skip that dot product;
    # adjacent blocks (segments 16 and 15) sit exactly at the window's edge and must not be skipped
    _grad_check(window=1, b=2, t=50, c=4)


def test_bfloat16_values_and_gradients():
    """bf16 inputs: computed in float32 inside the kernels, so they match the float32 reference on the
    same (bf16-rounded) values up to bf16 output rounding."""
    from chanformer.kernels.mvpa import mvpa_triton

    q, k, v, kw = _inputs(t=7, c=5)
    tensors = {"q": q, "k": k, "v": v} | {n: kw[n] for n in ("time_keys", "chan_keys", "content_bias", "time_bias", "chan_bias")}
    low = {n: x.bfloat16().requires_grad_() for n, x in tensors.items()}
    ref = {n: x.bfloat16().float().requires_grad_() for n, x in tensors.items()}
    rest = dict(chan_index=kw["chan_index"], key_mask=kw["key_mask"], window=2)

    def call(fn, t):
        return fn(t["q"], t["k"], t["v"], t["time_keys"], t["chan_keys"], content_bias=t["content_bias"],
                  time_bias=t["time_bias"], chan_bias=t["chan_bias"], **rest)

    out, expected = call(mvpa_triton, low), call(mvpa_reference, ref)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    g = torch.randn_like(expected).bfloat16()
    (out * g).sum().backward()
    (expected * g.float()).sum().backward()
    for n in low:
        assert low[n].grad.dtype == torch.bfloat16, n
        scale = ref[n].grad.abs().max().item()
        torch.testing.assert_close(low[n].grad.float(), ref[n].grad, atol=2e-2 * scale, rtol=2e-2, msg=f"grad {n}")


def test_sizes_are_runtime_values():
    """T, C, R and the window are never compile-time constants or value-specialised: a new channel
    count must not compile a new kernel (only the power-of-two table bounds are constexprs)."""
    import inspect

    import triton.language as tl

    from chanformer.kernels.mvpa import triton as kern

    for name in ("_mvpa_fwd_kernel", "_mvpa_bwd_dq_kernel", "_mvpa_bwd_dkdv_kernel"):
        jitted = getattr(kern, name)
        params = inspect.signature(jitted.fn).parameters
        constexprs = {p for p, par in params.items() if par.annotation is tl.constexpr}
        assert {"T", "C", "R", "WINDOW"}.isdisjoint(constexprs), name
        not_specialised = getattr(jitted, "do_not_specialize", None) or jitted.kwargs.get("do_not_specialize")
        assert set(not_specialised) >= {"T", "C", "R", "WINDOW"}, name


@pytest.mark.parametrize(("h", "h_kv"), [(6, 2), (3, 3)])
def test_gradients_grouped_query_heads(h, h_kv):
    # a program holds the query rows of all heads sharing one K/V head: 3 per key head (padded to 4
    # rows of heads, like MVPFormer-S's 12/4), or plain multi-head attention
    _grad_check(window=2, h=h, h_kv=h_kv, t=9, c=5)
