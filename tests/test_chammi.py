"""CHAMMI reader, datamodule and recipe on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from chanformer.channels import UnknownChannelError
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.imaging.chammi import (
    CHAMMI_CHANNELS,
    CHAMMIDataModule,
    CHAMMIDataset,
    CHAMMIFormatError,
    CHAMMIMissingError,
    chammi_vocab,
    fold_strip,
)

_GEN = Path(__file__).parent / "data" / "chammi" / "generate.py"
_spec = importlib.util.spec_from_file_location("chammi_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def chammi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("chammi"))


def test_generator_writes_the_published_layout(chammi_root: Path) -> None:
    for subset, n in gen.CHANNELS.items():
        meta = pd.read_csv(chammi_root / subset / "enriched_meta.csv")
        assert {"file_path", "ID", "Label", "train_test_split", "channel_width", *gen.TASKS[subset]} <= set(meta.columns)
        assert meta["file_path"].str.startswith(f"{subset}/").all() and meta[gen.TASKS[subset][0]].dtype == bool
        h, w = gen.SIZES[subset]
        from PIL import Image

        with Image.open(chammi_root / meta["file_path"][0]) as im:
            assert im.mode == "L" and im.size == (n * w, h)  # strip: channels side by side
        assert len(CHAMMI_CHANNELS[subset]) == n


def test_strips_fold_into_channels_with_stain_keys(chammi_root: Path) -> None:
    ds = CHAMMIDataset(chammi_root, "Train")
    assert len(ds) == 14 * gen.TRAIN_PER_CLASS and ds.split == "Train"
    assert ds.classes == [c for s in ("Allen", "HPA", "CP") for c in sorted(gen.TRAIN_LABELS[s])] and not ds.novel_classes
    vocab = chammi_vocab()
    for subset in ("Allen", "HPA", "CP"):
        i = next(i for i in range(len(ds)) if ds.subset(i) == subset)
        s, row = ds[i], ds.frame.iloc[i]
        h, w = gen.SIZES[subset]
        assert s.values.shape == (gen.CHANNELS[subset], h, w) and s.values.dtype == torch.float32
        want = np.stack([gen.expected(row["ID"], c, h, w) for c in range(gen.CHANNELS[subset])]).astype(np.float32)
        np.testing.assert_array_equal(s.values.numpy(), want)
        assert s.channel_ids.tolist() == vocab.ids(list(CHAMMI_CHANNELS[subset]))
        assert s.target is not None and ds.classes[int(s.target)] == row["Label"]
    # the nucleus is one channel across sources; HPA stores it third, Allen and CP first
    assert CHAMMI_CHANNELS["HPA"][2] == CHAMMI_CHANNELS["Allen"][0] == CHAMMI_CHANNELS["CP"][0] == "stain/DAPI"
    assert CHAMMI_CHANNELS["CP"] == ("stain/DAPI", "stain/ER", "stain/RNA", "stain/AGP", "stain/Mito")


def test_tasks_follow_the_boolean_columns(chammi_root: Path) -> None:
    one = CHAMMIDataset(chammi_root, "Task_one")
    assert len(one) == 14 and not one.novel_classes
    assert set(one.frame["train_test_split"]) == {"Task_one"}
    three = CHAMMIDataset(chammi_root, "Task_three")
    assert sorted({three.subset(i) for i in range(len(three))}) == ["CP", "HPA"]
    assert three.novel_classes == ["BRD-K00000001", "nucleoplasm"] and three.classes[-2:] == three.novel_classes
    four = CHAMMIDataset(chammi_root, "Task_four", subsets=["CP"])
    assert four.frame["Label"].tolist() == ["BRD-K00000002"]
    assert len(CHAMMIDataset(chammi_root, "all")) == sum(len(gen.rows(s)) for s in gen.CHANNELS)
    with pytest.raises(ValueError, match="Task_five"):
        CHAMMIDataset(chammi_root, "Task_five")


def test_channels_subsets_and_resizing(chammi_root: Path) -> None:
    ds = CHAMMIDataset(chammi_root, "Train", subsets=["HPA"], channels=["DAPI", "stain/Protein"])
    s = ds[0]
    h, w = gen.SIZES["HPA"]
    full = np.stack([gen.expected(ds.frame["ID"][0], c, h, w) for c in range(4)]).astype(np.float32)
    np.testing.assert_array_equal(s.values.numpy(), full[[2, 1]])
    assert s.channel_ids.tolist() == chammi_vocab().ids(["stain/DAPI", "stain/Protein"])
    with pytest.raises(UnknownChannelError, match="stain/RNA"):
        CHAMMIDataset(chammi_root, "Train", subsets=["Allen"], channels=["RNA"])
    with pytest.raises(ValueError, match="sub-dataset Allen has none"):
        CHAMMIDataset(chammi_root, "Train", channels=["RNA"])
    sized = CHAMMIDataset(chammi_root, "Train", subsets=["Allen"], image_size=32)
    x = sized[0].values
    assert x.shape == (3, 32, 32)  # 10 x 16 scaled to 20 x 32, padded by 6 rows above and below
    assert float(x[:, :6].abs().max()) == 0.0 and float(x[:, 26:].abs().max()) == 0.0 and float(x[:, 6:26].min()) > 0


def test_fold_strip_checks_the_width() -> None:
    strip = np.arange(2 * 12).reshape(2, 12)
    assert fold_strip(strip, 3)[1].tolist() == [[4, 5, 6, 7], [16, 17, 18, 19]]
    with pytest.raises(CHAMMIFormatError, match="not 3 channels x channel_width 5"):
        fold_strip(strip, 3, 5, source="x.png")


def test_missing_data_and_wrong_columns_are_named_errors(chammi_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CHAMMIMissingError, match=r"not found.*Allen/enriched_meta\.csv.*zenodo.*never downloads"):
        CHAMMIDataset(tmp_path / "nowhere")
    with pytest.raises(CHAMMIMissingError, match="no CHAMMI sub-dataset folders"):
        CHAMMIDataset(tmp_path)
    assert issubclass(CHAMMIMissingError, FileNotFoundError)
    copy = tmp_path / "copy"
    shutil.copytree(chammi_root, copy / "CHAMMI")
    assert len(CHAMMIDataset(copy, "Train", subsets=["CP"])) == 12  # the parent of CHAMMI/ works too
    meta = pd.read_csv(copy / "CHAMMI" / "HPA" / "enriched_meta.csv")
    (copy / "CHAMMI" / meta["file_path"][0]).unlink()
    with pytest.raises(CHAMMIMissingError, match=r"HPA_Train_000\.png"):
        CHAMMIDataset(copy, "Train", subsets=["HPA"])[0]
    meta.rename(columns={"Label": "label"}).to_csv(copy / "CHAMMI" / "HPA" / "enriched_meta.csv", index=False)
    with pytest.raises(CHAMMIFormatError, match=r"column\(s\) Label missing; columns found: file_path, ID, label"):
        CHAMMIDataset(copy, "Train", subsets=["HPA"])
    (copy / "CHAMMI" / "CP" / "enriched_meta.csv").unlink()
    with pytest.raises(CHAMMIMissingError, match=r"CP/enriched_meta\.csv"):
        CHAMMIDataset(copy, "Train", subsets=["CP"])


def test_merged_metadata_csv(chammi_root: Path, tmp_path: Path) -> None:
    merged = pd.concat([pd.read_csv(chammi_root / s / "enriched_meta.csv") for s in gen.CHANNELS])
    merged.to_csv(tmp_path / "morphem70k_v2.csv", index=False)
    ds = CHAMMIDataset(chammi_root, "Task_two", metadata_csv=tmp_path / "morphem70k_v2.csv")
    assert len(ds) == 14 and [ds.subset(i) for i in (0, 6, 10)] == ["Allen", "HPA", "CP"]


def test_datamodule_ragged_batches_and_splits(chammi_root: Path) -> None:
    dm = CHAMMIDataModule(str(chammi_root), image_size=16, batch_size=42, val_fraction=0.34)
    spec = dm.spec
    assert spec.num_classes == 14 and spec.image_size == 16 and spec.channels is None and dm.vocab == chammi_vocab()
    train, val, test = dm.train_dataset, dm.val_dataset, dm.test_dataset
    assert (len(train), len(val), len(test)) == (28, 14, 14)  # type: ignore[arg-type]
    assert not set(train.frame["ID"]) & set(val.frame["ID"])  # type: ignore[union-attr]
    assert np.bincount(val.labels, minlength=14).tolist() == [1] * 14  # type: ignore[union-attr]
    assert val.normalizer is train.normalizer is test.normalizer is not None  # type: ignore[union-attr]
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape == (28, 5, 16, 16)
    assert sorted(set(batch.mask.sum(1).tolist())) == [3, 4, 5]
    again = CHAMMIDataModule(str(chammi_root), image_size=16, val_fraction=0.34)
    again.setup("fit")
    assert again.val_dataset.frame["ID"].tolist() == val.frame["ID"].tolist()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="novel-class task"):
        CHAMMIDataModule(str(chammi_root), image_size=16, test_task="Task_three").setup("fit")


def test_recipe_trains_one_epoch(chammi_root: Path, tmp_path: Path) -> None:
    assert "chammi-chadavit" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("chammi-chadavit"), f"--data.init_args.root={chammi_root}",
        "--data.init_args.image_size=16", "--data.init_args.batch_size=14",
        "--model.init_args.encoder_kwargs.embed_dim=16", "--model.init_args.encoder_kwargs.depth=1",
        "--model.init_args.encoder_kwargs.num_heads=2", "--model.init_args.encoder_kwargs.patch_size=8",
        "--model.init_args.encoder_kwargs.dim_feedforward=32",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2
    assert cli.model.num_classes == 14 and cli.model.encoder.img_size == 16
    assert math.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
