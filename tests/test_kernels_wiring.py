"""The blocks reach the Triton kernels through the dispatch functions when Triton is forced: encoder
outputs (and gradients) equal the torch path.

``MultiVariateParallelAttention`` -> :func:`chanformer.kernels.mvpa.mvpa`; ``MaskedSelfAttention`` with
a key mask -> :func:`chanformer.kernels.ragged_attention.ragged_attention`; ``Mamba`` ->
:func:`chanformer.kernels.selective_scan.selective_scan`. Triton is opt-in (``use_backend("triton")``,
``CHANFORMER_KERNELS=triton``); by default every block stays on PyTorch.
"""

import pytest
import torch

import chanformer.kernels.mvpa as kmvpa
import chanformer.kernels.ragged_attention as kragged
import chanformer.kernels.selective_scan as kscan
from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.encoders import create_encoder
from chanformer.kernels import use_backend
from chanformer.nn.mamba import Mamba
from tests.triton_env import DEVICE, MARKS

pytestmark = MARKS


@pytest.fixture
def calls(monkeypatch):
    """Count launches of the Triton paths (the dispatchers look them up as module globals)."""
    counts = {"mvpa": 0, "ragged": 0, "scan": 0}

    def spy(name, fn):
        def wrapped(*a, **kw):
            counts[name] += 1
            return fn(*a, **kw)

        return wrapped

    monkeypatch.setattr(kmvpa, "mvpa_triton", spy("mvpa", kmvpa.mvpa_triton))
    monkeypatch.setattr(kragged, "ragged_attention_triton", spy("ragged", kragged.ragged_attention_triton))
    monkeypatch.setattr(kscan, "selective_scan_triton", spy("scan", kscan.selective_scan_triton))
    monkeypatch.delenv("CHANFORMER_KERNELS", raising=False)  # the default is what is tested, not the caller's shell
    return counts


def _perturbed(name: str, **kw):
    torch.manual_seed(0)
    model = create_encoder(name, **kw)
    with torch.no_grad():  # non-trivial biases / norms, so that wrong wiring shows
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(DEVICE)


def _mvp_batch() -> ChannelBatch:
    torch.manual_seed(1)
    seg = 64
    samples = [ChannelSample(torch.randn(3, 4 * seg), torch.tensor([0, 2, 5])),
               ChannelSample(torch.randn(5, 4 * seg), torch.arange(5))]
    return ChannelBatch.collate(samples).to(DEVICE)


def _vit_batch() -> ChannelBatch:
    torch.manual_seed(2)
    samples = [ChannelSample(torch.randn(2, 16, 16), torch.tensor([0, 3])),
               ChannelSample(torch.randn(4, 16, 16), torch.tensor([1, 2, 5, 7]))]
    return ChannelBatch.collate(samples).to(DEVICE)


def test_mvpformer_forward_and_grads_match(calls):
    model = _perturbed("mvpformer_test", drop_rate=0.0, attn_drop_rate=0.0).train()
    batch = _mvp_batch()
    results = []
    for name in ("torch", "triton"):
        model.zero_grad()
        with use_backend(name):  # type: ignore[arg-type]
            tokens = model.forward_features(batch)
            (tokens.square().mean() + model.pool(tokens, batch).sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((tokens.detach(), grads))
        if name == "torch":
            assert calls["mvpa"] == 0
    assert calls["mvpa"] == 2  # one per block, only under "triton"
    (t0, g0), (t1, g1) = results
    torch.testing.assert_close(t1, t0, atol=1e-4, rtol=1e-4)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], atol=1e-4, rtol=1e-4, msg=n)


def test_channelvit_padded_forward_matches(calls):
    model = _perturbed("channelvit_test").eval()
    batch = _vit_batch()
    assert not bool(batch.mask.all())  # padded channels -> key mask reaches the attention
    with torch.no_grad():
        ref = model.forward_features(batch)
        assert calls["ragged"] == 0
        with use_backend("triton"):
            out = model.forward_features(batch)
    assert calls["ragged"] == 2  # one per block
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_attention_dropout_in_training_keeps_torch_path(calls):
    model = _perturbed("channelvit_test", attn_drop_rate=0.1).train()
    with use_backend("triton"):
        model.forward_features(_vit_batch())
    assert calls["ragged"] == 0


def test_mamba_takes_the_kernel_only_when_forced(calls):
    torch.manual_seed(3)
    model = Mamba(8, d_state=4, d_conv=3, expand=1.5).to(DEVICE)
    x = torch.randn(2, 19, 8, device=DEVICE)
    ref = model(x)
    assert calls["scan"] == 0  # opt-in: the chunked PyTorch scan by default
    with use_backend("triton"):
        out = model(x)
        assert calls["scan"] == 1
        model.scan = "chunked"  # an explicit PyTorch implementation is passed through, never replaced
        model(x)
    assert calls["scan"] == 1
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
