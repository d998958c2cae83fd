from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chanformer.batch import BagBatch, EmptySampleError
from chanformer.hub import check_reference_fixture, load_fixture, load_pretrained, save_pretrained
from chanformer.hub.converters import get_converter
from chanformer.mil import ABMIL, ACMIL, acmil_loss, stkim_mask

REF = Path(__file__).resolve().parents[2] / "shared/reference/acmil"


def _needs_fixture():
    if not REF.is_dir():
        pytest.skip(f"reference fixture {REF} is absent")


def test_reference_fixture():
    _needs_fixture()
    report = check_reference_fixture(REF)
    assert report.passed, report.checks
    for check in report.checks:
        if check.primary:
            assert check.max_abs < 1e-5, check


def _orig_state(d_feat, d_inner, d_attn, n_token, n_class, g):
    s = {
        "dimreduction.fc1.weight": torch.randn(d_inner, d_feat, generator=g) / d_feat**0.5,
        "attention.attention_V.0.weight": torch.randn(d_attn, d_inner, generator=g),
        "attention.attention_V.0.bias": torch.randn(d_attn, generator=g),
        "attention.attention_U.0.weight": torch.randn(d_attn, d_inner, generator=g),
        "attention.attention_U.0.bias": torch.randn(d_attn, generator=g),
        "attention.attention_weights.weight": torch.randn(n_token, d_attn, generator=g),
        "attention.attention_weights.bias": torch.randn(n_token, generator=g),
        "Slide_classifier.fc.weight": torch.randn(n_class, d_inner, generator=g),
        "Slide_classifier.fc.bias": torch.randn(n_class, generator=g),
    }
    for k in range(n_token):
        s[f"classifier.{k}.fc.weight"] = torch.randn(n_class, d_inner, generator=g)
        s[f"classifier.{k}.fc.bias"] = torch.randn(n_class, generator=g)
    return s


def _manual(s, x, n_token):
    """Independent transcription of the fixture README for one bag x [N, D]."""
    h = torch.relu(x @ s["dimreduction.fc1.weight"].T)
    v = torch.tanh(h @ s["attention.attention_V.0.weight"].T + s["attention.attention_V.0.bias"])
    u = torch.sigmoid(h @ s["attention.attention_U.0.weight"].T + s["attention.attention_U.0.bias"])
    a = ((v * u) @ s["attention.attention_weights.weight"].T + s["attention.attention_weights.bias"]).T
    p = torch.softmax(a, 1)
    feats = p @ h
    branch = torch.stack(
        [feats[k] @ s[f"classifier.{k}.fc.weight"].T + s[f"classifier.{k}.fc.bias"] for k in range(n_token)]
    )
    slide = (p.mean(0, keepdim=True) @ h) @ s["Slide_classifier.fc.weight"].T + s["Slide_classifier.fc.bias"]
    return branch, slide, a[None]


def test_converter_other_config():
    conv = get_converter("acmil")
    kwargs = {"D": 8, "droprate": 0.0, "n_token": 3, "n_masked_patch": 4, "mask_drop": 0.5,
              "conf": {"D_feat": 20, "D_inner": 12, "n_class": 3, "n_token": 3}}  # fmt: skip
    g = torch.Generator().manual_seed(0)
    state = _orig_state(20, 12, 8, 3, 3, g)
    model = conv.load(state, kwargs)
    assert (model.n_token, model.n_masked_patch, model.mask_drop, model.attn_dim) == (3, 4, 0.5, 8)
    x = torch.randn(1, 17, 20, generator=g)
    with torch.no_grad():
        ours = conv.run(model, {"x": x}, {})
    for name, ref in zip(("branch_logits", "slide_logits", "attention"), _manual(state, x[0], 3)):
        torch.testing.assert_close(ours[name], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not part"):
        conv.convert_state_dict({**state, "dimreduction.ILayers.0.fc1.weight": torch.zeros(1)}, kwargs)
    with pytest.raises(ValueError, match="missing"):
        conv.load({k: v for k, v in state.items() if k != "classifier.2.fc.bias"}, kwargs)


def _padded(bags, fill=7.0):
    n = max(b.shape[0] for b in bags)
    x = torch.full((len(bags), n, bags[0].shape[1]), fill)
    mask = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : b.shape[0]] = b
        mask[i, : b.shape[0]] = True
    return x, mask


B = BagBatch.from_tensors


def test_padded_batch_matches_each_bag_alone():
    torch.manual_seed(0)
    bags = [torch.randn(n, 10) for n in (7, 12, 3)]
    x, mask = _padded(bags)
    acmil = ACMIL(10, 3, embed_dim=16, attn_dim=8, n_token=4).eval()
    abmil = ABMIL(10, 3, embed_dim=16, attn_dim=8).eval()
    out, ab = acmil(B(x, mask)), abmil(B(x, mask))
    for i, bag in enumerate(bags):
        n = bag.shape[0]
        alone, ab_alone = acmil(B(bag)), abmil(B(bag[None]))
        torch.testing.assert_close(out.branch_logits[i], alone.branch_logits[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.slide_logits[i], alone.slide_logits[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.attention[i, :, :n], alone.attention[0], atol=1e-6, rtol=1e-5)
        assert torch.isneginf(out.attention[i, :, n:]).all()
        torch.testing.assert_close(ab.logits[i], ab_alone.logits[0], atol=1e-6, rtol=1e-5)
        assert torch.isneginf(ab.attention[i, n:]).all()
    # the loss of the padded batch is the mean of the per-bag losses
    target = torch.tensor([0, 2, 1])
    per_bag = torch.stack([acmil_loss(acmil(B(b)), target[i : i + 1]) for i, b in enumerate(bags)])
    torch.testing.assert_close(acmil_loss(out, target), per_bag.mean(), atol=1e-5, rtol=1e-5)


def test_training_masks_random_top_instances_of_fixture_model():
    _needs_fixture()
    fx = load_fixture(REF)
    model = get_converter("acmil").load(fx.weights, fx.meta["constructor_kwargs"])
    x = fx.inputs["x"]
    with torch.no_grad():
        clean = model(B(x)).attention[0]  # eval: no masking
        model.train()
        draws = [model(B(x), generator=torch.Generator().manual_seed(s)).attention[0] for s in range(4)]
    top10 = clean.topk(10, dim=-1).indices
    for masked in draws:
        hidden = masked == -1e9
        assert hidden.sum(-1).tolist() == [6] * 5  # int(10 * 0.6) per branch
        for k in range(5):
            assert set(hidden[k].nonzero().flatten().tolist()) <= set(top10[k].tolist())
        torch.testing.assert_close(masked[~hidden], clean[~hidden])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # the draw is random
    # the fixture's recorded draw has the same structure
    rec = fx.outputs["train_attention_masked"][0] == -1e9
    assert rec.sum(-1).tolist() == [6] * 5


def test_stkim_respects_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 4:] = False
    logits[1, :, 4:] = 50.0  # padded instances with huge logits must never be chosen
    hidden = stkim_mask(logits, n_masked_patch=10, mask_drop=0.6, mask=mask)
    assert hidden.sum(-1).tolist() == [[6, 6, 6], [2, 2, 2]]  # int(min(10, 4) * 0.6) = 2
    assert not hidden[1, :, 4:].any()
    top = logits[0].topk(10, -1).indices
    for k in range(3):
        assert set(hidden[0, k].nonzero().flatten().tolist()) <= set(top[k].tolist())
    assert not stkim_mask(logits, 10, 0.0, mask).any()


def test_loss_and_gradients():
    torch.manual_seed(0)
    model = ACMIL(10, 2, embed_dim=16, attn_dim=8, n_token=3, n_masked_patch=3, mask_drop=0.5).train()
    x, mask = _padded([torch.randn(9, 10), torch.randn(5, 10)])
    target = torch.tensor([1, 0])
    out = model(B(x, mask))
    parts = acmil_loss(out, target, return_parts=True)
    b, k, c = out.branch_logits.shape
    ce_b = F.cross_entropy(out.branch_logits.reshape(-1, c), target.repeat_interleave(k))
    ce_s = F.cross_entropy(out.slide_logits, target)
    a = torch.softmax(out.attention, -1)
    div = sum(F.cosine_similarity(a[:, i], a[:, j], dim=-1).mean() for i in range(k) for j in range(i + 1, k))
    div = div / (k * (k - 1) / 2)
    torch.testing.assert_close(parts["loss"], ce_b + ce_s + div)
    torch.testing.assert_close(parts["diversity"], div)
    parts["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    abmil = ABMIL(10, 2, embed_dim=16, attn_dim=8)
    F.cross_entropy(abmil(B(x, mask)).logits, target).backward()
    for name, p in abmil.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    single = ACMIL(10, 2, embed_dim=16, attn_dim=8, n_token=1)
    one = acmil_loss(single(B(x, mask)), target, return_parts=True)
    assert one["branch"] == 0 and one["diversity"] == 0


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    x, mask = _padded([torch.randn(6, 10), torch.randn(4, 10)])
    for model in (ACMIL(10, 3, embed_dim=16, attn_dim=8, n_token=2, dropout=0.1), ABMIL(10, 3, 16, 8)):
        path = save_pretrained(model, tmp_path / type(model).__name__)
        loaded = load_pretrained(path)
        assert type(loaded) is type(model)
        for a, b in zip(loaded(B(x, mask)), model.eval()(B(x, mask))):
            assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_token"):
        ACMIL(10, 2, n_token=0)
    with pytest.raises(ValueError, match="mask_drop"):
        ACMIL(10, 2, mask_drop=1.5)
    model = ACMIL(10, 2, embed_dim=8, attn_dim=4)
    with pytest.raises(ValueError, match="x must be"):
        model(B(torch.randn(2, 5, 11)))
    with pytest.raises(EmptySampleError, match=r"sample\(s\) \[0, 1\] .* no present instance"):
        model(B(torch.randn(2, 5, 10), torch.zeros(2, 5, dtype=torch.bool)))
    with pytest.raises(TypeError, match="mask"):
        B(torch.randn(2, 5, 10), torch.ones(2, 5))
    with pytest.raises(TypeError, match="takes a BagBatch"):
        model(torch.randn(2, 5, 10))
    with pytest.raises(ValueError, match="without any instance"):  # the tensor helper keeps its own check
        model.forward_tensors(torch.randn(2, 5, 10), torch.zeros(2, 5, dtype=torch.bool))
