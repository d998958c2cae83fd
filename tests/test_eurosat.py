"""EuroSAT multispectral reader, datamodule and recipe on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.batch import ChannelSample
from chanformer.channels import UnknownChannelError, sentinel2_vocab
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.imaging.eurosat import (
    EUROSAT_BANDS,
    EUROSAT_CLASSES,
    EuroSATDataModule,
    EuroSATDataset,
    EuroSATMissingError,
)

_GEN = Path(__file__).parent / "data" / "eurosat" / "generate.py"
_spec = importlib.util.spec_from_file_location("eurosat_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("eurosat"))


def test_generator_writes_the_published_names(eurosat_root: Path) -> None:
    names = sorted(p.relative_to(eurosat_root).as_posix() for p in eurosat_root.rglob("*.tif"))
    assert len(names) == 10 * gen.PER_CLASS
    assert "EuroSAT_MS/HerbaceousVegetation/HerbaceousVegetation_2.tif" in names
    assert (eurosat_root / "eurosat-val.txt").read_text().splitlines()[0] == "AnnualCrop_2.jpg"
    assert gen.CLASSES == EUROSAT_CLASSES and gen.BANDS == EUROSAT_BANDS


def test_split_lists_labels_bands_and_values(eurosat_root: Path) -> None:
    sizes = {}
    for split in ("train", "val", "test"):
        ds = EuroSATDataset(eurosat_root, split)
        assert ds.split_source == "files"
        sizes[split] = len(ds)
        n = {"train": 1, "val": 2, "test": 3}[split]
        assert [p.name for p in ds.files] == [f"{c}_{n}.tif" for c in EUROSAT_CLASSES]
        assert ds.labels.tolist() == list(range(10))
    assert sizes == {"train": 10, "val": 10, "test": 10}
    ds = EuroSATDataset(eurosat_root, "test")
    s = ds[7]
    assert isinstance(s, ChannelSample) and s.values.shape == (13, 64, 64) and s.values.dtype == torch.float32
    assert int(s.target) == 7 and ds.classes[7] == "Residential"
    np.testing.assert_array_equal(s.values.numpy(), gen.expected(7, 3).astype(np.float32))
    assert ds.channel_keys[-1] == "s2/B8A" and ds.channel_keys[8] == "s2/B09"  # B8A is stored last
    assert s.channel_ids.tolist() == sentinel2_vocab().ids(ds.channel_keys)


def test_band_subset_keeps_identity(eurosat_root: Path) -> None:
    ds = EuroSATDataset(eurosat_root, "train", bands=["B8A", "s2/B04", "B02"])
    s = ds[0]
    assert ds.channel_keys == ["s2/B8A", "s2/B04", "s2/B02"]
    full = gen.expected(0, 1)
    np.testing.assert_array_equal(s.values.numpy(), full[[12, 3, 1]].astype(np.float32))
    with pytest.raises(UnknownChannelError, match="s2/B13"):
        EuroSATDataset(eurosat_root, "train", bands=["B13"])


def test_stratified_split_without_lists_is_seeded_and_disjoint(tmp_path: Path) -> None:
    root = gen.generate(tmp_path, split_files=False, per_class=5)
    parts = {s: EuroSATDataset(root, s, seed=3) for s in ("train", "val", "test")}
    assert {ds.split_source for ds in parts.values()} == {"stratified"}
    names = {s: {p.name for p in ds.files} for s, ds in parts.items()}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert sum(map(len, names.values())) == 50
    for s, ds in parts.items():  # every class in every split (1 of 5 to val and test each)
        assert np.bincount(ds.labels, minlength=10).tolist() == [3 if s == "train" else 1] * 10
    again = EuroSATDataset(root, "val", seed=3)
    assert [p.name for p in again.files] == [p.name for p in parts["val"].files]
    assert [p.name for p in EuroSATDataset(root, "val", seed=4).files] != [p.name for p in again.files]


def test_missing_data_and_lists_are_named_errors(eurosat_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EuroSATMissingError, match=r"not found.*EuroSAT_MS/<Class>/<Class>_<n>\.tif.*zenodo.*never downloads"):
        EuroSATDataset(tmp_path / "nowhere")
    with pytest.raises(EuroSATMissingError, match="no EuroSAT class folders"):
        EuroSATDataset(tmp_path)
    assert issubclass(EuroSATMissingError, FileNotFoundError)
    with pytest.raises(EuroSATMissingError, match=r"eurosat-train\.txt.*not found in"):
        EuroSATDataset(eurosat_root, split_dir=tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(eurosat_root, partial)
    (partial / "EuroSAT_MS" / "River" / "River_1.tif").unlink()
    with pytest.raises(EuroSATMissingError, match=r"1 image\(s\) listed in .*eurosat-train\.txt.*River_1\.jpg"):
        EuroSATDataset(partial, "train")
    shutil.rmtree(partial / "EuroSAT_MS" / "Forest")
    with pytest.raises(EuroSATMissingError, match="class folder.*missing.*Forest"):
        EuroSATDataset(partial, "train")


def test_datamodule_normalises_with_training_statistics(eurosat_root: Path) -> None:
    dm = EuroSATDataModule(str(eurosat_root), batch_size=4)
    spec = dm.spec
    assert spec.num_classes == 10 and spec.image_size == 64 and spec.class_names == list(EUROSAT_CLASSES)
    assert spec.channels == [f"s2/{b}" for b in EUROSAT_BANDS] and dm.vocab == sentinel2_vocab()
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape == (4, 13, 64, 64)
    x = torch.cat([dm.train_dataset[i].values for i in range(10)], dim=1)  # type: ignore[index]
    assert abs(float(x.mean())) < 1e-3 and math.isclose(float(x.std()), 1.0, rel_tol=0.05)
    assert dm.val_dataset.normalizer is dm.train_dataset.normalizer  # type: ignore[union-attr]


def test_recipe_trains_one_epoch(eurosat_root: Path, tmp_path: Path) -> None:
    assert "eurosat-channelvit" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("eurosat-channelvit"), f"--data.init_args.root={eurosat_root}",
        "--data.init_args.batch_size=5", "--model.init_args.encoder_kwargs.embed_dim=16",
        "--model.init_args.encoder_kwargs.depth=1", "--model.init_args.encoder_kwargs.num_heads=2",
        "--model.init_args.encoder_kwargs.patch_size=16",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2
    assert cli.model.num_classes == 10 and cli.model.encoder.img_size == 64
    assert math.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
