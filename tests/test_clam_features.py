"""CLAM feature folders (h5_files/, pt_files/, slide table, splits_<k>.csv) read into bags, on a
generated miniature of CLAM's output, plus one epoch of the clam-features-acmil recipe."""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from chanformer.batch import BagBatch
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.wsi.clam import (
    CLAMFeatureDataset,
    CLAMFeaturesDataModule,
    CLAMFeaturesMissingError,
    read_clam_features,
    read_clam_slide_table,
    read_clam_splits,
)
from chanformer.datasets.wsi.store import BagError

_GEN = Path(__file__).parent / "data" / "clam_features" / "generate.py"
_spec = importlib.util.spec_from_file_location("clam_features_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def clam_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("clam"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_generator_writes_clams_files(clam_root: Path) -> None:
    assert sorted(p.name for p in (clam_root / "h5_files").iterdir())[:2] == ["0007.h5", "slide_0.h5"]
    with h5py.File(clam_root / "h5_files" / "slide_1.h5") as f:
        assert set(f) == {"features", "coords"} and f["features"].dtype == np.float32 and f["coords"].dtype == np.int32
        assert f["features"].chunks == (32, gen.DIM) and f["features"].maxshape == (None, gen.DIM)
        assert dict(f["coords"].attrs) == {}  # extract_features_fp.py writes no attributes
    with h5py.File(clam_root / "patches" / "slide_1.h5") as f:
        assert f["coords"].attrs["patch_size"] == 256 and f["coords"].attrs["patch_level"] == 0
    assert isinstance(torch.load(clam_root / "pt_files" / "slide_1.pt", weights_only=True), torch.Tensor)
    header = (clam_root / "splits" / "splits_0.csv").read_text().splitlines()
    assert header[0] == ",train,val,test" and header[-1] == "7,slide_7,,"  # index column, ragged columns


def test_slide_table_and_splits_are_read_as_clam_writes_them(clam_root: Path) -> None:
    table = read_clam_slide_table(clam_root / "labels.csv")
    assert table.class_names == ["normal_tissue", "tumor_tissue"]
    assert table.slide_ids[-1] == "0007" and table.targets[-1] == 1  # an id that looks like a number stays a string
    assert table.case_ids[2] == table.case_ids[3] == "patient_2"
    splits = read_clam_splits(clam_root / "splits" / "splits_0.csv")
    assert splits == {"train": list(gen.SPLITS[0][0]), "val": list(gen.SPLITS[0][1]), "test": list(gen.SPLITS[0][2])}
    mapped = read_clam_slide_table(clam_root / "labels.csv", label_dict={"normal_tissue": 1, "tumor_tissue": 0})
    assert mapped.targets[:2] == [1, 0] and mapped.class_names == ["tumor_tissue", "normal_tissue"]
    ignored = read_clam_slide_table(clam_root / "labels.csv", ignore=["normal_tissue"])
    assert set(ignored.raw_labels) == {"tumor_tissue"} and len(ignored) == 6


def test_bags_hold_the_files_features_and_yx_coords(clam_root: Path) -> None:
    ds = CLAMFeatureDataset(clam_root, "test")
    assert ds.slides == ["slide_10", "0007"] and ds.labels.tolist() == [0, 1] and ds.split_source == "files"
    bag = ds[1]
    feats, coords_xy = gen.expected("0007")
    np.testing.assert_array_equal(bag.features.numpy(), feats)
    np.testing.assert_array_equal(bag.coords.numpy(), coords_xy[:, ::-1])  # CLAM's (x, y) -> chanformer's (y, x)
    assert bag.slide == "0007" and bag.label == 1 and bag.attrs["case_id"] == "patient_0007"
    assert bag.attrs["patch_size"] == 256 and bag.attrs["tile_extent"] == 256.0  # from patches/ (create_patches_fp)
    assert ds.feature_dim == gen.DIM and ds.n_instances == [len(gen.expected(s)[0]) for s in ds.slides]
    fold1 = CLAMFeatureDataset(clam_root, "test", fold=1)
    assert fold1.slides == ["slide_2", "slide_3"]
    assert len(CLAMFeatureDataset(clam_root, "all")) == len(gen.SLIDES)


def test_pt_files_are_read_as_plain_tensors(clam_root: Path, tmp_path: Path) -> None:
    pt = CLAMFeatureDataset(clam_root, "train", features="pt")
    h5 = CLAMFeatureDataset(clam_root, "train", features="h5")
    for a, b in zip(pt, h5):
        torch.testing.assert_close(a.features, b.features)
        assert torch.equal(a.coords, b.coords)  # coordinates still come from the .h5
    only_pt = _copy(clam_root, tmp_path / "pt_only")
    shutil.rmtree(only_pt / "h5_files")
    bag = CLAMFeatureDataset(only_pt, "train")[0]
    assert bag.attrs["coords"] == "row" and bag.coords[:, 0].tolist() == list(range(len(bag.features)))
    # a .pt that is not a bare tensor is refused, and nothing in it is unpickled
    torch.save({"features": torch.zeros(3, gen.DIM)}, only_pt / "pt_files" / "slide_0.pt")
    with pytest.raises(BagError, match=r"slide slide_0: .*slide_0\.pt holds a dict"):
        CLAMFeatureDataset(only_pt, "train")
    torch.save(_Opaque(), only_pt / "pt_files" / "slide_0.pt")
    with pytest.raises(BagError, match="nothing is unpickled"):
        CLAMFeatureDataset(only_pt, "train")
    with pytest.raises(BagError, match="nothing is unpickled"):
        read_clam_features(pt_path=only_pt / "pt_files" / "slide_0.pt")


class _Opaque:
    """An object torch.load(weights_only=True) must not rebuild."""


def test_missing_features_are_named_or_skipped(clam_root: Path, tmp_path: Path) -> None:
    root = _copy(clam_root, tmp_path / "partial")
    for sub, ext in (("h5_files", ".h5"), ("pt_files", ".pt")):
        (root / sub / f"slide_3{ext}").unlink()
        (root / sub / f"slide_5{ext}").unlink()
    with pytest.raises(CLAMFeaturesMissingError, match=r"2 slides of labels\.csv have no .*: slide_3, slide_5.*'skip'"):
        CLAMFeaturesDataModule(str(root))
    with pytest.warns(UserWarning, match="slide_3, slide_5; left out"):
        dm = CLAMFeaturesDataModule(str(root), on_missing="skip")
    assert "slide_3" not in dm.splits["train"] and len(dm.splits["train"]) == 6
    with pytest.raises(CLAMFeaturesMissingError, match=r"h5_files/<slide_id>\.h5 .*github\.com/mahmoodlab/CLAM"):
        CLAMFeaturesDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(CLAMFeaturesMissingError, match=r"splits_7\.csv not found \(fold=7\).*splits_0\.csv"):
        CLAMFeaturesDataModule(str(clam_root), fold=7)
    with pytest.raises(CLAMFeaturesMissingError, match="slide table .*other.csv not found"):
        CLAMFeaturesDataModule(str(clam_root), csv_path=str(tmp_path / "other.csv"))


def test_bad_tables_and_feature_files_are_named(clam_root: Path, tmp_path: Path) -> None:
    root = _copy(clam_root, tmp_path / "bad")
    table = root / "labels.csv"
    with pytest.raises(ValueError, match="label 'tumor_tissue' .* is not in label_dict"):
        read_clam_slide_table(table, label_dict={"normal_tissue": 0})
    table.write_text("case_id,slide_id,label\np0,slide_0,0\np1,slide_0,1\n")
    with pytest.raises(ValueError, match=r"line 3: slide slide_0 is listed twice \(first on line 2\)"):
        read_clam_slide_table(table)
    table.write_text("case,slide_name,y\np0,slide_0,0\n")
    with pytest.raises(ValueError, match="expected columns slide_id and label"):
        read_clam_slide_table(table)
    split = root / "splits" / "splits_0.csv"
    split.write_text(",train,val,test\n0,slide_0,slide_0,slide_1\n")
    with pytest.raises(ValueError, match="slide slide_0 is in both the train and the val split"):
        read_clam_splits(split)
    gen.generate(root)  # rewrite the good files
    with h5py.File(root / "h5_files" / "slide_4.h5", "a") as f:
        f["features"][0, 0] = np.nan
    ds = CLAMFeatureDataset(root, "train")
    with pytest.raises(BagError, match="slide slide_4: 1 tiles have NaN/inf features"):
        ds[ds.slides.index("slide_4")]
    (root / "pt_files" / "slide_4.pt").unlink()
    (root / "h5_files" / "slide_4.h5").unlink()
    with h5py.File(root / "h5_files" / "slide_4.h5", "w") as f:
        f["features"] = np.zeros((5, gen.DIM + 1), np.float32)
        f["coords"] = np.zeros((5, 2), np.int32)
    with pytest.raises(BagError, match=rf"slide slide_4: {gen.DIM + 1} features per patch, but slide slide_0 has {gen.DIM}"):
        CLAMFeatureDataset(root, "train")


def test_without_split_files_folds_keep_cases_together(clam_root: Path, tmp_path: Path) -> None:
    root = _copy(clam_root, tmp_path / "nosplits")
    shutil.rmtree(root / "splits")
    seen: list[str] = []
    for fold in range(3):
        dm = CLAMFeaturesDataModule(str(root), fold=fold, n_folds=3, val_fraction=0.2)
        assert dm.split_source == "folds"
        parts = dm.splits
        assert not (set(parts["train"]) & set(parts["test"])) and not (set(parts["val"]) & set(parts["test"]))
        for part in parts.values():
            assert ("slide_2" in part) == ("slide_3" in part)  # one case, one split
        seen += parts["test"]
    assert sorted(seen) == sorted(gen.SLIDES)  # every slide is tested once over the folds
    again = CLAMFeaturesDataModule(str(root), fold=1, n_folds=3, val_fraction=0.2)
    assert again.splits == CLAMFeaturesDataModule(str(root), fold=1, n_folds=3, val_fraction=0.2).splits


def test_datamodule_standardises_with_training_statistics_and_pads(clam_root: Path) -> None:
    dm = CLAMFeaturesDataModule(str(clam_root), batch_size=3)
    assert dm.spec.num_classes == 2 and dm.spec.feature_dim == gen.DIM
    assert dm.spec.class_names == ["normal_tissue", "tumor_tissue"]
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, BagBatch) and batch.features.shape[0] == 3 and batch.target is not None
    assert batch.mask.sum(1).tolist() == [len(gen.expected(s)[0]) for s in batch.slides]
    train = torch.cat([b.features for b in dm.datasets["train"]])
    torch.testing.assert_close(train.mean(0), torch.zeros(gen.DIM), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(gen.DIM), atol=1e-4, rtol=0)
    assert dm.datasets["test"].mean is dm.mean  # val/test use the training statistics
    capped = CLAMFeaturesDataModule(str(clam_root), max_instances=5)
    assert max(len(b.features) for b in capped.datasets["train"]) == 5
    assert min(len(b.features) for b in capped.datasets["test"]) > 5


def test_other_table_layouts(clam_root: Path, tmp_path: Path) -> None:
    root = _copy(clam_root, tmp_path / "plain")
    with (root / "labels.csv").open("w", newline="") as f:  # plain slide_id,label with integer labels
        w = csv.writer(f)
        w.writerow(["slide_id", "label"])
        w.writerows([[f"{s}.svs", gen.label_of(s)] for s in gen.SLIDES])  # extensions as in process_list_autogen.csv
    shutil.rmtree(root / "splits")
    ds = CLAMFeatureDataset(root, "all")
    assert ds.class_names == ["0", "1"] and ds.slides[0] == "slide_0.svs" and ds.case_ids[0] == "slide_0.svs"
    assert ds[1].features.shape[1] == gen.DIM


def test_recipe_is_listed_and_trains_one_epoch(clam_root: Path, tmp_path: Path) -> None:
    assert "clam-features-acmil" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("clam-features-acmil"), f"--data.init_args.root={clam_root}",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == len(gen.SPLITS[0][0])  # one bag per step over fold 0's training slides
    assert math.isfinite(float(cli.trainer.callback_metrics["test/loss"]))
    assert (tmp_path / "export" / "model.safetensors").is_file()
