import math
from pathlib import Path

import pytest
import torch

from chanformer.hub import check_reference_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.nn.gaam import GaussianBlock, MultiHeadGaussianAdaptiveAttention

REF = Path(__file__).resolve().parents[2] / "shared/reference/gaam"


def _ref_head(x, offsets, c, axis, padding_value, eps=1e-8):
    """Independent float64 transcription of the fixture README's per-head formula."""
    x = x.double()
    keep = torch.ones_like(x, dtype=torch.bool) if padding_value is None else x != padding_value
    xm = torch.where(keep, x, torch.zeros_like(x))
    mean = xm.mean(axis, keepdim=True)
    var = xm.var(axis, keepdim=True) + eps
    mix = torch.ones_like(x)
    for o, ci in zip(offsets.double(), c.double()):
        y = (x - (mean + o)) / var.sqrt()
        mix = mix * torch.exp(-(y**2) / (2 * ci**2)) / torch.sqrt(2 * math.pi * ci**2)
    w = mix / mix.sum(axis, keepdim=True).clamp_min(eps)
    return torch.where(keep, x * w, x), w


def _ref_multihead(x, state, prefix, axis, n_heads, padding_value):
    size = x.shape[axis]
    chunk = size // n_heads
    sizes = [chunk] * (n_heads - 1) + [size - chunk * (n_heads - 1)]
    outs, ws = [], []
    for h, xc in enumerate(x.split(sizes, axis)):
        o, w = _ref_head(
            xc,
            state[f"{prefix}attention_heads.{h}.mean_offsets"],
            state[f"{prefix}attention_heads.{h}.c"],
            axis,
            padding_value,
        )
        outs.append(o)
        ws.append(w)
    return torch.cat(outs, axis), torch.cat(ws, axis)


@pytest.mark.parametrize("sub", ["", "gaussian_block"])
def test_reference_fixture(sub):
    path = REF / sub
    if not path.is_dir():
        pytest.skip(f"reference fixture {path} is absent")
    report = check_reference_fixture(path)
    assert report.passed, report.checks
    for check in report.checks:
        assert check.max_abs < 1e-5, check


def _orig_state(n_layers_heads_gauss, prefix_fmt):
    g = torch.Generator().manual_seed(0)
    state = {}
    for layer, (heads, gauss) in enumerate(n_layers_heads_gauss):
        prefix = prefix_fmt.format(layer)
        for h in range(heads):
            state[f"{prefix}attention_heads.{h}.mean_offsets"] = 0.4 * torch.randn(gauss, generator=g)
            state[f"{prefix}attention_heads.{h}.c"] = 1 + 1.5 * torch.rand(gauss, generator=g)
    return state


def test_converter_other_config_uneven_heads_and_padding():
    conv = get_converter("gaam")
    kwargs = {"norm_axis": 1, "num_heads": 3, "num_gaussians": 2, "padding_value": 0.0, "eps": 1e-3}
    state = _orig_state([(3, 2)], "")
    model = conv.load(state, kwargs)
    assert model.eps == 1e-8  # the original's heads never see eps (positional-argument bug)
    x = torch.randn(2, 11, 6)  # 11 time steps over 3 heads: chunks 3, 3, 5
    x[1, 8:] = 0.0
    with torch.no_grad():
        out, w = model(x, return_attention=True)
    ref_out, ref_w = _ref_multihead(x, state, "", 1, 3, 0.0)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-5, rtol=1e-4)
    assert torch.equal(out[1, 8:], x[1, 8:])  # padded entries pass through

    with pytest.raises(ValueError, match="not part"):
        conv.convert_state_dict({**state, "attention_heads.0.extra": torch.zeros(2)}, kwargs)


def test_block_converter_other_config():
    conv = get_converter("gaam_block")
    kwargs = {"norm_axes": [2, 1, -1], "num_heads": [2, 3, 5], "num_gaussians": [4, 1, 2], "num_layers": 3,
              "padding_value": None, "eps": 1e-8}  # fmt: skip
    state = _orig_state([(2, 4), (3, 1), (5, 2)], "layers.{}.")
    model = conv.load(state, kwargs)
    x = torch.randn(3, 7, 12)
    with torch.no_grad():
        out, ws = model(x, return_attention=True)
    ref = x.double()
    for layer, (axis, heads) in enumerate(zip(kwargs["norm_axes"], kwargs["num_heads"])):
        y, w = _ref_multihead(ref, state, f"layers.{layer}.", axis % 3, heads, None)
        torch.testing.assert_close(ws[layer].double(), w, atol=1e-5, rtol=1e-4)
        ref = y + ref
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        conv.load({k: v for k, v in state.items() if not k.startswith("layers.2.attention_heads.4")}, kwargs)


@pytest.mark.parametrize("heads", [2, 3])  # even split (one pass) and uneven split (per-head loop)
def test_mask_excludes_entries_from_statistics(heads):
    torch.manual_seed(0)
    layer = MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=heads, num_gaussians=3, head_axis=2)
    with torch.no_grad():
        layer.mean_offsets.normal_(0, 0.3)
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0]], dtype=torch.bool)
    out, w = layer(x, mask, return_attention=True)
    # masked entries: weight 0, output unchanged; weights of the rest sum to 1 over the axis
    assert torch.all(w[~mask] == 0)
    assert torch.equal(out[~mask], x[~mask])
    torch.testing.assert_close(w.sum(1), torch.ones(2, 8))
    # changing the masked entries changes nothing else
    x2 = x.clone()
    x2[~mask] = 100.0 * torch.randn(int((~mask).sum()), 8)
    out2 = layer(x2, mask)
    torch.testing.assert_close(out2[mask], out[mask], atol=0, rtol=0)
    # the statistics are those of the present entries alone
    for b in range(2):
        alone = layer(x[b : b + 1, mask[b]])
        torch.testing.assert_close(out[b : b + 1, mask[b]], alone, atol=1e-6, rtol=1e-5)


def test_mask_with_heads_on_the_normalised_axis_and_block():
    torch.manual_seed(1)
    block = GaussianBlock(norm_axes=[1, 1], num_heads=[1, 1], num_gaussians=[2, 3])
    x = torch.randn(1, 9, 5)
    mask = torch.ones(1, 9, dtype=torch.bool)
    mask[0, 6:] = False
    out = block(x, mask)
    alone = block(x[:, :6])
    torch.testing.assert_close(out[:, :6], alone, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="broadcast"):
        block(x, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError):
        block(x, mask.float())


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    block = GaussianBlock(norm_axes=[2, 1], num_heads=[4, 2], num_gaussians=[3, 2], padding_value=-1.0)
    x = torch.randn(2, 10, 16, requires_grad=True)
    (block(x) ** 2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 10, 12)
    for model in (
        MultiHeadGaussianAdaptiveAttention(norm_axis=-1, num_heads=5, num_gaussians=3, padding_value=0.0),
        GaussianBlock(norm_axes=[2, 1], num_heads=[3, 2], num_gaussians=[2, 4], head_axes=[1, None]),
    ):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        save_pretrained(model, tmp_path / type(model).__name__)
        loaded = load_pretrained(tmp_path / type(model).__name__)
        assert type(loaded) is type(model)
        assert torch.equal(loaded(x), model(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=0, num_gaussians=2)
    with pytest.raises(ValueError, match="num_gaussians"):
        MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=2, num_gaussians=0)
    with pytest.raises(ValueError, match="eps"):
        MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=2, num_gaussians=2, eps=0.0)
    layer = MultiHeadGaussianAdaptiveAttention(norm_axis=3, num_heads=8, num_gaussians=2)
    with pytest.raises(ValueError, match="norm_axis"):
        layer(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=8, num_gaussians=2)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="num_layers"):
        GaussianBlock(norm_axes=[1, 2], num_heads=[1], num_gaussians=[1, 1])


def test_stable_mode_matches_and_never_underflows():
    torch.manual_seed(0)
    plain = MultiHeadGaussianAdaptiveAttention(norm_axis=1, num_heads=2, num_gaussians=3, head_axis=2)
    stable = MultiHeadGaussianAdaptiveAttention(
        norm_axis=1, num_heads=2, num_gaussians=3, head_axis=2, stable=True
    )
    with torch.no_grad():
        plain.mean_offsets.normal_(0, 0.3)
        plain.scales.uniform_(1.0, 2.0)
    stable.load_state_dict(plain.state_dict())
    x = torch.randn(2, 7, 6)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    torch.testing.assert_close(stable(x, mask, True)[1], plain(x, mask, True)[1], atol=1e-6, rtol=1e-5)
    # a single present entry (zero variance) or far-out values: the product underflows, the softmax does not
    with torch.no_grad():
        plain.scales.fill_(0.05)
        stable.scales.fill_(0.05)
    one = torch.zeros(2, 7, dtype=torch.bool)
    one[:, 0] = True
    for m in (one, mask):
        w = stable(100 * x, m, True)[1]
        torch.testing.assert_close(w.sum(1), torch.ones(2, 6))
    assert plain(x, one, True)[1].sum() == 0


@pytest.mark.parametrize("stable", [False, True])
def test_one_exponent_equals_the_product_of_gaussians(stable):
    """The layer folds the G Gaussians into one completed square; values and gradients must equal
    the per-Gaussian product of the formula, also with spread offsets and narrow or wide scales."""
    torch.manual_seed(3)
    layer = MultiHeadGaussianAdaptiveAttention(
        norm_axis=1, num_heads=3, num_gaussians=4, head_axis=2, stable=stable
    ).double()
    with torch.no_grad():
        layer.mean_offsets.normal_(0, 1.5)
        layer.scales.copy_(torch.tensor([[0.3, 1.0, 4.0, 0.8], [2.0, 0.5, 1.5, 3.0], [1.0, 1.0, 0.7, 6.0]]))
    x = (2 * torch.randn(4, 9, 9, dtype=torch.float64)).requires_grad_()
    out = layer(x)
    x_ref = x.detach().clone().requires_grad_()
    parts = []
    for h, xc in enumerate(x_ref.split(3, 2)):  # heads own feature chunks; statistics over axis 1
        if stable:  # the softmax of the summed log-densities
            mean, std = xc.mean(1, keepdim=True), (xc.var(1, keepdim=True) + 1e-8).sqrt()
            logit = sum(
                -(((xc - (mean + o)) / std) ** 2) / (2 * c**2)
                for o, c in zip(layer.mean_offsets[h], layer.scales[h])
            )
            parts.append(xc * torch.softmax(logit, 1))
        else:
            parts.append(_ref_head(xc, layer.mean_offsets[h], layer.scales[h], 1, None)[0])
    ref = torch.cat(parts, 2)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), [x, layer.mean_offsets, layer.scales])
    ref_grads = torch.autograd.grad((ref * probe).sum(), [x_ref, layer.mean_offsets, layer.scales])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)
