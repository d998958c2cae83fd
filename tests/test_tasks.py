from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import series_vocab
from chanformer.spec import DataSpec
from chanformer.tasks import ClassificationTask, ForecastingTask


def _spec(**kw):
    return DataSpec(vocab=series_vocab(["a", "b", "c"]), n_times=16, **kw)


def test_nan_input_names_sample_and_channel():
    task = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=2))
    vals = torch.randn(2, 3, 16)
    vals[1, 2, 5] = float("nan")
    batch = ChannelBatch(vals, torch.arange(3).expand(2, -1).clone(), torch.ones(2, 3, dtype=torch.bool),
                         target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample 1, channel series/c"):
        task.training_step(batch, 0)


def test_classification_needs_classes_and_known_encoder():
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask(encoder="softs_test", data_spec=_spec())
    with pytest.raises(ValueError, match="unknown encoder name 'nope'"):
        ClassificationTask(encoder="nope", data_spec=_spec(num_classes=2))


def test_wrong_series_length_names_seq_len():
    task = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=2))
    batch = ChannelBatch.collate([ChannelSample(torch.randn(3, 20), torch.arange(3), target=torch.tensor(0))])
    with pytest.raises(ValueError, match="seq_len=16"):
        task(batch)


def test_forecasting_reports_original_scale():
    spec = _spec(horizon=4, channel_mean=[10.0, 20.0, 30.0], channel_std=[2.0, 3.0, 4.0])
    task = ForecastingTask(encoder="softs_test", data_spec=spec)
    x = torch.ones(1, 3, 4)
    ids = torch.tensor([[2, 0, 1]])
    out = task.to_original_scale(x, ids)
    assert out[0, :, 0].tolist() == [34.0, 12.0, 23.0]


def test_classifier_learns_one_informative_channel():
    """Only channel b carries the class (a sine's sign); the classifier must find it."""
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 6.28, 16)
    samples = []
    for i in range(96):
        y = i % 2
        v = torch.randn(3, 16, generator=g) * 0.5
        v[1] += (1 if y else -1) * torch.sin(t)
        samples.append(ChannelSample(v, torch.arange(3), target=torch.tensor(y)))
    train = DataLoader(samples[:64], batch_size=16, shuffle=True, collate_fn=ChannelBatch.collate)
    test = DataLoader(samples[64:], batch_size=32, collate_fn=ChannelBatch.collate)
    L.seed_everything(0)
    task = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=2), export_dir=None)
    trainer = L.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    task.on_fit_end = lambda: None  # no export in this unit test
    trainer.fit(task, train)
    acc = trainer.test(task, test, verbose=False)[0]["test/acc"]
    assert acc >= 0.9
    assert task.test_confusion is not None and task.test_confusion.sum() == 32


def _multilabel_samples(n: int, seed: int) -> list[ChannelSample]:
    """4 independent labels, each written into the series by its own pattern (label 3 shares channel a)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 6.28, 16)
    patterns = [(0, torch.sin(t)), (1, torch.cos(t)), (2, torch.ones(16)), (0, torch.sin(3 * t))]
    out = []
    for _ in range(n):
        y = (torch.rand(4, generator=g) < 0.4).float()
        v = torch.randn(3, 16, generator=g) * 0.5
        for k, (ch, p) in enumerate(patterns):
            v[ch] += y[k] * p
        out.append(ChannelSample(v, torch.arange(3), target=y))
    return out


def test_multilabel_classifier_learns_multi_hot_targets():
    spec = _spec(num_classes=4, multilabel=True)
    train = DataLoader(_multilabel_samples(128, 0), batch_size=16, shuffle=True, collate_fn=ChannelBatch.collate)
    test = DataLoader(_multilabel_samples(64, 1), batch_size=32, collate_fn=ChannelBatch.collate)
    L.seed_everything(0)
    task = ClassificationTask(encoder="softs_test", data_spec=spec, export_dir=None,
                              optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2))  # fmt: skip
    assert task.multilabel and task.hparams["multilabel"] is None  # from the data spec, like num_classes
    trainer = L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    task.on_fit_end = lambda: None  # no export in this unit test
    before = trainer.test(task, test, verbose=False)[0]
    assert set(before) == {"test/loss", "test/map_micro", "test/map_macro", "test/f1_micro", "test/f1_macro"}
    assert before["test/map_macro"] < 0.65  # chance is the label frequency (about 0.4)
    trainer.fit(task, train)
    after = trainer.test(task, test, verbose=False)[0]
    assert after["test/map_macro"] >= 0.95 and after["test/map_micro"] >= 0.95
    assert after["test/map_macro"] > before["test/map_macro"] + 0.4
    assert after["test/f1_macro"] >= 0.9 and after["test/loss"] < 0.5 * before["test/loss"]
    assert task.test_confusion is not None and task.test_confusion.shape == (4, 2, 2)
    assert task.test_confusion.sum(dim=(1, 2)).tolist() == [64] * 4  # one binary matrix per label
    probs = task.predict_step(next(iter(test)), 0)
    assert probs.shape == (32, 4) and bool(((probs >= 0) & (probs <= 1)).all())
    assert not torch.allclose(probs.sum(-1), torch.ones(32))  # independent sigmoids, not a softmax


def test_multilabel_options_and_named_errors():
    spec = _spec(num_classes=3, multilabel=True)
    with pytest.raises(ValueError, match=r"multilabel=False.*multi-hot"):
        ClassificationTask(encoder="softs_test", data_spec=spec, multilabel=False)
    with pytest.raises(ValueError, match="pos_weight.*multi-label only"):
        ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=3), pos_weight=2.0)
    with pytest.raises(ValueError, match="needs 1 or 3 values"):
        ClassificationTask(encoder="softs_test", data_spec=spec, pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="label_smoothing.*single-label only"):
        ClassificationTask(encoder="softs_test", data_spec=spec, label_smoothing=0.1)
    task = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=3), multilabel=True,
                              pos_weight=[1.0, 2.0, 4.0]).eval()  # fmt: skip
    assert task.multilabel
    batch = ChannelBatch.collate([ChannelSample(torch.randn(3, 16), torch.arange(3), target=torch.tensor([1.0, 0.0, 1.0]))
                                  for _ in range(2)])  # fmt: skip
    loss, probs, target = task.compute(batch)
    logits = task(batch)
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.target, pos_weight=torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(loss, want)
    assert target.dtype == torch.long and torch.allclose(probs, torch.sigmoid(logits))
    wrong = ChannelBatch.collate([ChannelSample(torch.randn(3, 16), torch.arange(3), target=torch.tensor(1))])
    with pytest.raises(ValueError, match=r"multi-hot targets \[B, 3\], got \(1,\)"):
        task.compute(wrong)
    single = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=3))
    with pytest.raises(ValueError, match=r"class indices \[B\].*multilabel=true"):
        single.compute(batch)


def test_occlusion_importance_of_a_multilabel_task_uses_each_labels_sigmoid():
    from dataclasses import replace

    from chanformer.importance import _occlusion

    task = ClassificationTask(encoder="softs_test", data_spec=_spec(num_classes=3, multilabel=True)).eval()
    batch = ChannelBatch.collate([ChannelSample(torch.randn(3, 16), torch.arange(3)) for _ in range(2)])
    scores = _occlusion(task, batch, target=2, chunk_size=8)
    with torch.no_grad():
        full = torch.sigmoid(task(batch))[:, 2]
        mask = batch.mask.clone()
        values = batch.values.clone()
        mask[:, 1], values[:, 1] = False, 0
        hidden = torch.sigmoid(task(replace(batch, values=values, mask=mask)))[:, 2]
    torch.testing.assert_close(scores[:, 1], full - hidden)
