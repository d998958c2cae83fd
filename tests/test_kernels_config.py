"""The kernel switch: Triton is opt-in (``CHANFORMER_KERNELS=triton`` or ``use_backend("triton")``)."""

import pytest
import torch

from chanformer.kernels import config
from chanformer.kernels.config import backend, forced_backend, use_backend, use_triton


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("CHANFORMER_KERNELS", raising=False)


def test_default_is_torch_on_every_device():
    assert forced_backend() is None
    assert backend() == "torch"
    assert backend(torch.device("cuda")) == "torch"  # no automatic Triton on CUDA until a compiled GPU run passes
    assert not use_triton(torch.zeros(1))


def test_environment_forces_a_backend(monkeypatch):
    monkeypatch.setenv("CHANFORMER_KERNELS", "auto")
    assert forced_backend() is None and backend() == "torch"
    monkeypatch.setenv("CHANFORMER_KERNELS", "Torch")
    assert forced_backend() == "torch"
    monkeypatch.setenv("CHANFORMER_KERNELS", "cuda")
    with pytest.raises(ValueError, match="CHANFORMER_KERNELS"):
        backend()


def test_use_backend_nests_and_wins_over_the_environment(monkeypatch):
    monkeypatch.setattr(config, "triton_available", lambda: True)
    monkeypatch.setenv("CHANFORMER_KERNELS", "torch")
    with use_backend("triton"):
        assert forced_backend() == "triton" and backend() == "triton"
        with use_backend("torch"):
            assert backend() == "torch"
        assert backend() == "triton"
    assert forced_backend() == "torch"
    with pytest.raises(ValueError, match="use_backend"):
        with use_backend("cuda"):  # type: ignore[arg-type]
            pass


def test_forced_triton_needs_triton(monkeypatch):
    monkeypatch.setattr(config, "triton_available", lambda: False)
    monkeypatch.setenv("CHANFORMER_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="not installed"):
        backend()


def test_use_triton_needs_a_device_triton_runs_on(monkeypatch):
    monkeypatch.setattr(config, "triton_available", lambda: True)
    x = torch.zeros(2)
    with use_backend("triton"):
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert use_triton(x, x)  # CPU tensors: the interpreter
        assert not use_triton()
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        assert not use_triton(x)  # CPU without the interpreter: PyTorch
