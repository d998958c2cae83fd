"""Synthetic imaging data, ImageDataModule, partial-channel evaluation, masked-channel SSL, 1-NN, recipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.datasets import ImageDataModule, SyntheticImageDataset, cellprofiler_manifest
from chanformer.eval import evaluate_channel_subsets, knn_macro_f1, subset_batch
from chanformer.hub import load_pretrained
from chanformer.spec import DataSpec
from chanformer.tasks import MaskedChannelPretrainTask

ROOT = Path(__file__).resolve().parents[1]
CP = ROOT.parent / "shared" / "data" / "microscopy-cellprofiler"


# -- synthetic generator ------------------------------------------------------------------
@pytest.mark.parametrize("style", ["cells", "fields"])
def test_class_shows_in_one_channel_only(style):
    ds = SyntheticImageDataset(8, image_size=24, style=style, seed=3)
    c = ds.channels.index(ds.class_channel)
    for i in range(4):
        a, b = ds.render(i, label=0), ds.render(i, label=1)
        others = [k for k in range(len(ds.channels)) if k != c]
        np.testing.assert_array_equal(a[others], b[others])  # relabelling changes nothing else
        assert np.abs(a[c] - b[c]).max() > 0.1
        np.testing.assert_array_equal(ds.render(i), SyntheticImageDataset(8, image_size=24, style=style, seed=3).render(i))
    s = ds[5]
    assert s.values.shape == (len(ds.channels), 24, 24) and s.values.dtype == torch.float32
    assert int(s.target) == 5 % 4 and ds.vocab.ids(ds.channels) == s.channel_ids.tolist()
    assert not np.array_equal(ds.render(0), SyntheticImageDataset(8, image_size=24, style=style, seed=4).render(0))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # distractor channels: nothing to fit
def test_class_channel_orientation_is_linearly_decodable_only_there():
    from sklearn.linear_model import LogisticRegression

    tr, te = SyntheticImageDataset(96, image_size=16, seed=1), SyntheticImageDataset(60, image_size=16, seed=2)

    def feats(ds, c):
        return np.log1p(np.stack([np.abs(np.fft.fft2(ds.render(i)[c])).ravel() for i in range(len(ds))]))

    ytr, yte = [tr.label(i) for i in range(len(tr))], [te.label(i) for i in range(len(te))]
    scores = {k: LogisticRegression(max_iter=200).fit(feats(tr, c), ytr).score(feats(te, c), yte)
              for c, k in enumerate(tr.channels)}  # fmt: skip
    assert scores["stain/Mito"] > 0.9
    assert all(v < 0.5 for k, v in scores.items() if k != "stain/Mito"), scores


def test_image_datamodule_hcs_only_in_training():
    dm = ImageDataModule(num_train=8, num_val=4, num_test=4, image_size=16, batch_size=8, hcs=True)
    assert dm.spec.image_size == 16 and dm.spec.num_classes == 4 and len(dm.spec.vocab) == 5
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    out = dm.on_after_batch_transfer(batch, 0)
    assert out.mask.sum() < batch.mask.sum() and (out.mask.sum(1) >= 1).all()
    assert torch.equal(out.values * 0, out.values * 0) and (out.values[~out.mask] == 0).all()
    dm.trainer = SimpleNamespace(training=False)  # type: ignore[assignment]
    assert dm.on_after_batch_transfer(batch, 0).mask.all()


@pytest.mark.skipif(not CP.is_dir(), reason="CellProfiler example images not present")
def test_cellprofiler_ragged_tiles(tmp_path):
    df = cellprofiler_manifest(CP)
    assert df.groupby("image_id").size().sort_values().tolist() == [2, 2, 3, 3, 3, 3]
    dm = ImageDataModule(source="cellprofiler", data_root=str(CP), tile=32, batch_size=6, repeats=2,
                         normalizer_path=str(tmp_path / "norm.json"))  # fmt: skip
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape[-2:] == (32, 32) and set(batch.mask.sum(1).tolist()) <= {2, 3}
    assert (tmp_path / "norm.json").is_file() and dm.spec.num_classes is None


def test_labelled_manifest_split_and_spec(tmp_path):
    import pandas as pd
    import tifffile

    ds = SyntheticImageDataset(20, image_size=24, seed=0)
    rows = []
    for i in range(20):
        p = tmp_path / f"img{i}.ome.tif"
        tifffile.imwrite(p, ds.render(i), ome=True, photometric="minisblack",
                         metadata={"axes": "CYX", "Channel": {"Name": [k.split("/")[1] for k in ds.channels]}})
        rows.append({"path": p.name, "label": ["a", "b"][i % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    dm = ImageDataModule(source="manifest", manifest=str(tmp_path / "manifest.csv"), tile=16, batch_size=4,
                         val_fraction=0.2, test_fraction=0.2)  # fmt: skip
    assert dm.spec.num_classes == 2 and dm.spec.class_names == ["a", "b"] and dm.spec.image_size == 16
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (12, 4, 4)
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape == (4, 5, 16, 16) and batch.target.dtype == torch.long
    assert batch.vocab_keys(dm.vocab) == ds.channels


def test_missing_data_root_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="CellProfiler example images not found.*data_root"):
        ImageDataModule(source="cellprofiler", data_root="no/such/folder")


# -- partial-channel evaluation -----------------------------------------------------------
class _NeedsChannel2(torch.nn.Module):
    """Predicts the true class (1) iff channel id 2 is present, else class 0."""

    def forward(self, batch: ChannelBatch) -> torch.Tensor:
        has = ((batch.channel_ids == 2) & batch.mask).any(1)
        return torch.nn.functional.one_hot(has.long(), 2).float()


def _batches():
    samples = [ChannelSample(torch.ones(3, 4, 4), torch.tensor([0, 1, 2]), target=torch.tensor(1)) for _ in range(6)]
    return [ChannelBatch.collate(samples[:4]), ChannelBatch.collate(samples[4:])]


def test_partial_channel_table_values():
    res = evaluate_channel_subsets(_NeedsChannel2(), _batches(), "all", verbose=False)
    assert res.full_accuracy == 1.0 and len(res.rows) == 7
    by_k = {r["k"]: r for r in res.by_k()}
    assert [by_k[k]["n_subsets"] for k in (1, 2, 3)] == [3, 3, 1]
    assert by_k[1]["mean"] == pytest.approx(1 / 3) and by_k[2]["mean"] == pytest.approx(2 / 3) and by_k[3]["mean"] == 1.0
    assert by_k[1]["min"] == 0.0 and by_k[1]["max"] == 1.0
    assert all(r["n"] == 6 for r in res.rows)
    assert "full channel set: accuracy 1.0000" in res.table() and len(res.to_frame()) == 7
    sampled = evaluate_channel_subsets(_NeedsChannel2(), _batches(), 2, verbose=False)
    assert [r["n_subsets"] for r in sampled.by_k()] == [2, 2, 1]


def test_subset_batch_skips_samples_without_channels():
    a = ChannelSample(torch.ones(2, 4, 4), torch.tensor([0, 1]), target=torch.tensor(0))
    b = ChannelSample(torch.ones(1, 4, 4), torch.tensor([2]), target=torch.tensor(1))
    batch = ChannelBatch.collate([a, b])
    sub = subset_batch(batch, [1])
    assert sub.mask.tolist() == [[False, True], [False, False]] and sub.values[0, 0].abs().sum() == 0
    res = evaluate_channel_subsets(_NeedsChannel2(), [batch], [[0], [2]], verbose=False)
    assert [(r["channels"], r["n"], r["accuracy"]) for r in res.rows] == [(("id0",), 1, 1.0), (("id2",), 1, 1.0)]


# -- self-supervised pretraining ----------------------------------------------------------
@pytest.mark.parametrize("encoder", ["channelvit_test", "chadavit_test"])
def test_masked_channel_pretraining_loss_decreases(encoder):
    torch.manual_seed(0)
    ds = SyntheticImageDataset(16, image_size=16, seed=0)
    samples = [ds[i] for i in range(16)]
    samples[3] = ChannelSample(samples[3].values[:2], samples[3].channel_ids[:2])  # ragged
    batch = ChannelBatch.collate([ChannelSample(s.values, s.channel_ids) for s in samples])
    spec = DataSpec(vocab=ds.vocab, image_size=16)
    task = MaskedChannelPretrainTask(encoder=encoder, data_spec=spec, patch_mask_ratio=0.3, channel_drop=0.1)
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = task.compute(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
    hidden, blanked = task.make_masks(batch)
    assert (hidden.sum(1) >= 1).all() and ((batch.mask & ~hidden).sum(1) >= 1).all()
    assert not (blanked & hidden[:, :, None]).any()
    assert task(batch).shape == (16, task.encoder.embed_dim)


# -- 1-NN macro-F1 ------------------------------------------------------------------------
def test_knn_macro_f1_hand_made():
    train_x, train_y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    test_x, test_y = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])
    # predictions [0, 1, 0]: F1 = 2/3 for both classes
    assert knn_macro_f1(train_x, train_y, test_x, test_y) == pytest.approx(2 / 3)
    assert knn_macro_f1(train_x, train_y, test_x[:2], test_y[:2], metric="euclidean") == 1.0
    with pytest.raises(ValueError, match="one width"):
        knn_macro_f1(train_x, train_y, test_x[:, :1], test_y)


# -- recipes end to end -------------------------------------------------------------------
# satellite-channelvit runs the same code path as microscopy-channelvit (another synthetic style): slow-marked
# to keep this file under a minute.
@pytest.mark.parametrize("recipe", ["microscopy-channelvit", pytest.param("satellite-channelvit", marks=pytest.mark.slow),
                                    "microscopy-chadavit-pretrain"])
def test_recipe_runs(recipe, tmp_path):
    if recipe.endswith("pretrain") and not CP.is_dir():
        pytest.skip("CellProfiler example images not present")
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    exe = str(Path(sys.executable).with_name("chanformer"))
    args = [exe, "fit", "--config", recipe, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
            f"--model.init_args.export_dir={tmp_path / 'export'}"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    enc = load_pretrained(tmp_path / "export")
    assert enc.vocab is not None and len(enc.vocab) >= 5
    if not recipe.endswith("pretrain"):
        assert "test/acc" in proc.stdout
