"""Cell Painting (JUMP-CP style) reader, datamodule and recipe on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.imaging.cellpainting import (
    CellPaintingDataModule,
    CellPaintingDataset,
    CellPaintingFormatError,
    CellPaintingMissingError,
    cell_painting_site_vocab,
)
from chanformer.datasets.imaging.sim import cell_painting_vocab

_GEN = Path(__file__).parent / "data" / "cellpainting" / "generate.py"
_spec = importlib.util.spec_from_file_location("cellpainting_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

KEYS = ["stain/DAPI", "stain/ER", "stain/RNA", "stain/AGP", "stain/Mito"]


@pytest.fixture(scope="module")
def cp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("cellpainting"))


def test_generator_writes_the_published_names(cp_root: Path) -> None:
    names = sorted(p.name for p in cp_root.rglob("*.tif*"))
    assert "r01c02f02p01-ch5sk1fk1fl1.tiff" in names
    assert any(n.startswith("BR00117037_B02_s2_w3") and n.endswith(".tif") for n in names)
    ld = pd.read_csv(cp_root / "workspace/load_data_csv/2021_04_26_Batch1/BR00117035/load_data.csv")
    assert ld["PathName_OrigDNA"][0].startswith("s3://cellpainting-gallery/cpg0016-jump/source_4/images/")
    assert ld["FileName_OrigDNA"][0] == "r01c01f01p01-ch5sk1fk1fl1.tiff"  # DNA is not ch1 here


def test_sites_stack_the_five_stains_by_column(cp_root: Path) -> None:
    ds = CellPaintingDataset(cp_root, "all")
    assert len(ds) == len(gen.PLATES) * len(gen.WELLS) * len(gen.SITES) and ds.dropped["not_in_platemap"] == 0
    assert ds.classes == ["BRD-A29260609-001-24-4", "BRD-K18895904-001-16-1", "DMSO"]
    assert ds.channel_keys == KEYS and cell_painting_site_vocab().ids(KEYS) == cell_painting_vocab().ids(KEYS)
    for plate in ("BR00117035", "BR00117037"):  # a Phenix and an ImageXpress plate
        i = int(np.flatnonzero((ds.frame["Metadata_Plate"] == plate) & (ds.frame["Metadata_Well"] == "B02"))[1])
        s = ds[i]
        assert s.values.shape == (5, 16, 16) and s.values.dtype == torch.float32
        want = np.stack([gen.expected(plate, "B02", 2, ch) for ch in gen.CHANNELS]).astype(np.float32)
        np.testing.assert_array_equal(s.values.numpy(), want)
        assert s.target is not None and ds.classes[int(s.target)] == "DMSO"  # empty broad_sample
    assert s.channel_ids.tolist() == cell_painting_site_vocab().ids(KEYS)


def test_plate_and_well_splits_are_seeded_and_disjoint(cp_root: Path) -> None:
    parts = {s: CellPaintingDataset(cp_root, s) for s in ("train", "val", "test")}
    plates = {s: set(ds.frame["Metadata_Plate"]) for s, ds in parts.items()}
    assert all(len(p) == 1 for p in plates.values()) and len(set.union(*plates.values())) == 3
    assert [p for s in ("train", "val", "test") for p in plates[s]] == [
        p for s in ("train", "val", "test") for p in set(CellPaintingDataset(cp_root, s).frame["Metadata_Plate"])
    ]
    wells = {s: set(CellPaintingDataset(cp_root, s, split_by="well", seed=1).frame[["Metadata_Plate", "Metadata_Well"]]
                    .itertuples(index=False, name=None)) for s in ("train", "val", "test")}  # fmt: skip
    assert not (wells["train"] & wells["val"]) and not (wells["train"] & wells["test"]) and not (wells["val"] & wells["test"])
    assert sum(map(len, wells.values())) == 12
    train = CellPaintingDataset(cp_root, "train", split_by="well", seed=1)
    assert (train.frame.groupby(["Metadata_Plate", "Metadata_Well"]).size() == 2).all()  # both sites of a well together


def test_metadata_labels_brightfield_and_platemap_table(cp_root: Path, tmp_path: Path) -> None:
    meta = cp_root / "metadata/external_metadata/JUMP-Target-1_compound_metadata.tsv"
    ds = CellPaintingDataset(cp_root, "all", metadata=meta, label_column="target")
    assert ds.classes == ["EGFR", "HDAC1"] and ds.dropped["no_metadata"] == 6  # DMSO wells have no metadata row
    assert set(ds.frame.loc[ds.frame["Metadata_Well"] == "A02", "_label"]) == {"EGFR"}
    with pytest.raises(CellPaintingFormatError, match="lacks column.*moa.*columns found: broad_sample, pert_iname"):
        CellPaintingDataset(cp_root, "all", metadata=meta, label_column="moa")
    bf = CellPaintingDataset(cp_root, "all", brightfield=True, load_data=[
        cp_root / "workspace/load_data_csv/2021_04_26_Batch1/BR00117035/load_data.csv"])  # fmt: skip
    assert bf.channel_keys == [*KEYS, "stain/Brightfield"] and bf[0].values.shape == (6, 16, 16)
    np.testing.assert_array_equal(bf[0].values[5].numpy(), gen.expected("BR00117035", "A01", 1, "Brightfield"))
    with pytest.raises(CellPaintingFormatError, match="FileName_OrigBrightfield"):
        CellPaintingDataset(cp_root, "all", brightfield=True)  # the ImageXpress plate has no brightfield
    well_csv = tmp_path / "well.csv.gz"  # JUMP's metadata/well.csv.gz shape
    pd.DataFrame({"Metadata_Source": "source_4", "Metadata_Plate": ["BR00117035"] * 2, "Metadata_Well": ["A01", "A02"],
                  "Metadata_JCP2022": ["JCP2022_000001", "JCP2022_000002"]}).to_csv(well_csv, index=False)  # fmt: skip
    jump = CellPaintingDataset(cp_root, "all", platemap=well_csv)
    assert jump.classes == ["JCP2022_000001", "JCP2022_000002"] and len(jump) == 4
    assert jump.dropped["not_in_platemap"] == 20


def test_missing_files_are_named_errors(cp_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CellPaintingMissingError, match=r"not found.*load_data\.csv.*cellpainting-gallery.*never downloads"):
        CellPaintingDataset(tmp_path / "nowhere")
    with pytest.raises(CellPaintingMissingError, match="no load_data.csv"):
        CellPaintingDataset(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(cp_root, copy)
    shutil.rmtree(copy / "metadata")
    with pytest.raises(CellPaintingMissingError, match="no plate map"):
        CellPaintingDataset(copy)
    shutil.copytree(cp_root / "metadata", copy / "metadata")
    next((copy / "images").rglob("r01c01f01p01-ch5sk1fk1fl1.tiff")).unlink()
    ds = CellPaintingDataset(copy, "all")
    with pytest.raises(CellPaintingMissingError, match=r"r01c01f01p01-ch5sk1fk1fl1\.tiff \(channel DNA, plate BR00117035"):
        ds[0]
    shutil.rmtree(copy / "images")
    with pytest.raises(CellPaintingMissingError, match="has no trailing part found"):
        CellPaintingDataset(copy, "all")[0]


def test_datamodule_normalises_with_training_statistics(cp_root: Path) -> None:
    dm = CellPaintingDataModule(str(cp_root), image_size=8, batch_size=4)
    spec = dm.spec
    assert spec.num_classes == 3 and spec.image_size == 8 and spec.channels == KEYS
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape == (4, 5, 8, 8)
    x = torch.cat([dm.train_dataset[i].values for i in range(8)], dim=1)  # type: ignore[index]
    assert abs(float(x.mean())) < 1e-3 and math.isclose(float(x.std()), 1.0, rel_tol=0.05)
    assert dm.test_dataset.normalizer is dm.train_dataset.normalizer  # type: ignore[union-attr]


def test_recipe_trains_one_epoch(cp_root: Path, tmp_path: Path) -> None:
    assert "jumpcp-channelvit" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("jumpcp-channelvit"), f"--data.init_args.root={cp_root}",
        "--data.init_args.image_size=16", "--data.init_args.batch_size=4",
        "--model.init_args.encoder_kwargs.embed_dim=16", "--model.init_args.encoder_kwargs.depth=1",
        "--model.init_args.encoder_kwargs.num_heads=2", "--model.init_args.encoder_kwargs.patch_size=8",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2
    assert cli.model.num_classes == 3 and cli.model.encoder.img_size == 16
    assert math.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
