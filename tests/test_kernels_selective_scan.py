"""Triton selective scan vs the per-step reference, under the CPU interpreter (TRITON_INTERPRET=1)."""

import pytest
import torch

from chanformer.kernels import use_backend
from chanformer.kernels.selective_scan import selective_scan_reference
from tests.triton_env import DEVICE, MARKS

pytestmark = MARKS


@pytest.fixture(autouse=True)
def _on_device():
    with torch.device(DEVICE):  # the CPU interpreter, or the GPU when there is one
        yield


def _inputs(b, d, n, length, dtype=torch.float32, full=True):
    with torch.device("cpu"):  # seeded CPU generator, then moved
        g = torch.Generator().manual_seed(1)
        u = torch.randn(b, d, length, generator=g)
        delta = torch.randn(b, d, length, generator=g) * 0.5
        A = -torch.rand(d, n, generator=g) * 2 - 0.1
        B = torch.randn(b, n, length, generator=g)
        C = torch.randn(b, n, length, generator=g)
        extra = dict(
            D=torch.randn(d, generator=g), z=torch.randn(b, d, length, generator=g), delta_bias=torch.randn(d, generator=g) * 0.1
        )
    pos = [t.to(DEVICE, dtype) for t in (u, delta, A, B, C)]
    kw = {k: v.to(DEVICE, dtype) for k, v in extra.items()} if full else {}
    return pos, kw


def _check(b, d, n, length, full, assoc_scan, softplus=True):
    from chanformer.kernels.selective_scan import selective_scan_triton

    pos, kw = _inputs(b, d, n, length, full=full)
    p1 = [t.clone().requires_grad_() for t in pos]
    k1 = {k: v.clone().requires_grad_() for k, v in kw.items()}
    p2 = [t.clone().requires_grad_() for t in pos]
    k2 = {k: v.clone().requires_grad_() for k, v in kw.items()}
    y1, h1 = selective_scan_triton(*p1, **k1, delta_softplus=softplus, return_last_state=True, assoc_scan=assoc_scan)
    y2, h2 = selective_scan_reference(*p2, **k2, delta_softplus=softplus, return_last_state=True)
    torch.testing.assert_close(y1, y2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h1, h2, atol=1e-4, rtol=1e-4)
    gy, gh = torch.randn_like(y1), torch.randn_like(h1)
    ((y1 * gy).sum() + (h1 * gh).sum()).backward()
    ((y2 * gy).sum() + (h2 * gh).sum()).backward()
    for name, a, r in [*zip("u delta A B C".split(), p1, p2), *((k, k1[k], k2[k]) for k in kw)]:
        scale = r.grad.abs().max().item()
        torch.testing.assert_close(a.grad, r.grad, atol=1e-5 * max(1.0, scale), rtol=1e-4, msg=f"grad {name}")


def test_odd_sizes_values_and_grads():
    _check(2, 60, 16, 63, full=True, assoc_scan=False)


def test_minimal_arguments_no_softplus():
    _check(1, 5, 3, 17, full=False, assoc_scan=False, softplus=False)


def test_associative_scan_path():
    """The GPU default (tl.associative_scan inside a chunk); element-wise in the interpreter, so tiny."""
    _check(1, 3, 4, 70, full=True, assoc_scan=True)


def test_bf16_values_and_grads():
    """bf16 inputs are scanned in float32: output and every gradient match the float32 reference on the
    same (bf16-rounded) values up to bf16 rounding, and come back in bf16."""
    from chanformer.kernels.selective_scan import selective_scan_triton

    pos, kw = _inputs(2, 60, 16, 63, dtype=torch.bfloat16)
    p1 = [t.clone().requires_grad_() for t in pos]
    k1 = {k: v.clone().requires_grad_() for k, v in kw.items()}
    p2 = [t.float().requires_grad_() for t in pos]
    k2 = {k: v.float().requires_grad_() for k, v in kw.items()}
    y = selective_scan_triton(*p1, **k1, delta_softplus=True)
    ref = selective_scan_reference(*p2, **k2, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, atol=5e-2, rtol=2e-2)
    g = torch.randn_like(ref).bfloat16()
    (y * g).sum().backward()
    (ref * g.float()).sum().backward()
    for name, a, r in [*zip("u delta A B C".split(), p1, p2), *((k, k1[k], k2[k]) for k in kw)]:
        assert a.grad.dtype == torch.bfloat16, name
        scale = r.grad.abs().max().item()
        torch.testing.assert_close(a.grad.float(), r.grad, atol=2e-2 * scale, rtol=2e-2, msg=f"grad {name}")


def test_dispatch_and_validation(monkeypatch):
    from chanformer.kernels import selective_scan as mod
    from chanformer.kernels.config import use_triton

    monkeypatch.delenv("CHANFORMER_KERNELS", raising=False)
    pos, kw = _inputs(1, 4, 2, 9)
    with use_backend("triton"):
        assert use_triton(pos[0])
        y = mod.selective_scan(*pos, **kw)
        # an explicit PyTorch implementation is never replaced by the kernel
        loop = mod.selective_scan(*pos, **kw, implementation="reference")
    assert not use_triton(pos[0])  # opt-in: nothing forced, no Triton (on CUDA either)
    with use_backend("torch"):
        assert not use_triton(pos[0])
        ref = mod.selective_scan(*pos, **kw)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loop, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="B, N, L"):
        mod.selective_scan(pos[0], pos[1], pos[2], pos[3][:, :, :-1], pos[4])
    with pytest.raises(ValueError, match="D="):
        mod.selective_scan_triton(*pos, D=torch.ones(3))
    with pytest.raises(ValueError, match="implementation"):
        mod.selective_scan(*pos, implementation="triton")
