"""The benchmark's Flash-MVPA-approach baseline computes the same MVPA as the reference (so the
benchmark compares equal work), under the CPU interpreter or on the GPU."""

import pytest
import torch

from chanformer.kernels.mvpa import mvpa_reference, relative_channel_index
from tests.triton_env import DEVICE, MARKS

pytestmark = MARKS


@pytest.mark.parametrize(("window", "content", "masked"), [(1, True, True), (None, True, False), (2, False, True)])
def test_baseline_matches_reference(window, content, masked):
    from benchmarks.flash_mvpa import flash_mvpa_baseline

    g = torch.Generator().manual_seed(0)
    b, h, h_kv, t, c, hd = 2, 4, 2, 19, 5, 16  # N = 95: two 64-token blocks in the interpreter
    q = torch.randn(b, h, t, c, hd, generator=g)
    k, v = torch.randn(b, h_kv, t, c, hd, generator=g), torch.randn(b, h_kv, t, c, hd, generator=g)
    mask = torch.ones(b, c, dtype=torch.bool)
    if masked:
        mask[1, 1] = mask[1, 4] = False
    kw = dict(
        time_keys=torch.randn(h_kv, t, hd, generator=g), chan_keys=torch.randn(h_kv, c, hd, generator=g),
        chan_index=relative_channel_index(mask), content_bias=torch.randn(h_kv, hd, generator=g) if content else None,
        time_bias=torch.randn(h_kv, hd, generator=g), chan_bias=torch.randn(h_kv, hd, generator=g),
        key_mask=mask if masked else None, window=window,
    )
    on_dev = {n: x.to(DEVICE) if isinstance(x, torch.Tensor) else x for n, x in kw.items()}
    out = flash_mvpa_baseline(q.to(DEVICE), k.to(DEVICE), v.to(DEVICE), **on_dev)
    ref = mvpa_reference(q, k, v, **kw)
    valid = mask[:, None, None, :, None].expand_as(ref)  # padded query rows are not compared
    torch.testing.assert_close(out.cpu()[valid], ref[valid], atol=1e-4, rtol=1e-4)
