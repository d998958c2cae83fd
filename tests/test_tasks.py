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
