"""Analytic backward of the chunked selective scan (``_ChunkedScan``) against autograd through the loop."""

import pytest
import torch
import torch.nn.functional as F

from chanformer.kernels.selective_scan.reference import _ChunkedScan, selective_scan_chunked, selective_scan_reference


def _inputs(dtype, b=2, d=5, length=63, n=7):
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    a = -torch.exp(r(d, n))
    return [r(b, d, length), r(b, d, length) * 0.5, a, r(b, n, length), r(b, n, length), r(d), r(b, d, length), r(d)]


def _grads(fn, inputs, extras, softplus, **kw):
    leaves = [t.clone().requires_grad_() for t in inputs]
    u, dt, a, bb, cc, d, z, bias = leaves
    if not softplus:
        dt_in = F.softplus(dt)  # positive steps, as softplus would give
    else:
        dt_in = dt
    y, h = fn(u, dt_in, a, bb, cc, d if extras else None, z if extras else None, bias if extras else None, softplus,
              return_last_state=True, **kw)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
    wh = torch.randn(h.shape, generator=torch.Generator().manual_seed(6), dtype=h.dtype)
    used = leaves if extras else leaves[:5]
    return [y.detach(), h.detach(), *torch.autograd.grad((y * w).sum() + (h * wh).sum(), used)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1, 8, 64])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
def test_analytic_backward_matches_loop(dtype, chunk, extras, softplus, monkeypatch):
    calls = []
    apply = _ChunkedScan.apply
    monkeypatch.setattr(_ChunkedScan, "apply", lambda *a: calls.append(1) or apply(*a))
    inputs = _inputs(dtype)
    if not softplus:
        inputs[7] = inputs[7].abs()  # dt = softplus(delta) + bias stays positive (decays <= 1)
    ref = _grads(selective_scan_reference, inputs, extras, softplus)
    got = _grads(selective_scan_chunked, inputs, extras, softplus, chunk_size=chunk)
    assert calls, "the analytic-backward path was not taken"
    tol = 1e-4 if dtype == torch.float32 else 1e-8
    for g, g_ref in zip(got, ref):
        torch.testing.assert_close(g, g_ref, atol=tol, rtol=tol)


def test_strong_decays_fall_back_to_autograd(monkeypatch):
    monkeypatch.setattr(_ChunkedScan, "apply", lambda *a: pytest.fail("float64 fallback must use autograd"))
    inputs = _inputs(torch.float32, length=50)
    inputs[2] = inputs[2] * 400.0
    inputs[1] = inputs[1] + 2
    ref = _grads(selective_scan_reference, inputs, True, True)
    got = _grads(selective_scan_chunked, inputs, True, True)
    for g, g_ref in zip(got, ref):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_gradcheck_tiny():
    inputs = _inputs(torch.float64, b=1, d=2, length=9, n=3)
    u, dt, a, bb, cc, d, z, bias = (t.requires_grad_() for t in inputs)

    def fn(u, dt, a, bb, cc, d, z, bias):
        y, h = selective_scan_chunked(u, dt, a, bb, cc, d, z, bias, True, return_last_state=True, chunk_size=4)
        return y, h

    assert torch.autograd.gradcheck(fn, (u, dt, a, bb, cc, d, z, bias))


@pytest.mark.parametrize("tile_elements", [63 * 7, 3 * 63 * 7, 6 * 63 * 7])  # 1 and 3 channels, 1 batch element
def test_tiled_scan_matches_loop(tile_elements):
    """Cache-sized tiles over (batch, channel) rows give the loop's outputs, last state and gradients."""
    inputs = _inputs(torch.float64)
    tiled = _grads(selective_scan_chunked, inputs, True, True, tile_elements=tile_elements)
    loop = _grads(selective_scan_reference, inputs, True, True)
    for got, want in zip(tiled, loop):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
