"""BigEarthNet-S2 v1.0 reader and datamodule (multi-hot targets) on a generated miniature of the published layout."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chanformer.channels import sentinel2_vocab
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.imaging.bigearthnet import (
    BEN19_CLASSES,
    BEN43_CLASSES,
    BEN43_TO_19,
    BIGEARTHNET_BANDS,
    BigEarthNetDataModule,
    BigEarthNetDataset,
    BigEarthNetFormatError,
    BigEarthNetMissingError,
)
from chanformer.encoders.channelvit import ChannelViT
from chanformer.hub import load_pretrained
from chanformer.tasks import ClassificationTask

_GEN = Path(__file__).parent / "data" / "bigearthnet" / "generate.py"
_spec = importlib.util.spec_from_file_location("bigearthnet_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)
NAMES = list(gen.PATCHES)


@pytest.fixture(scope="module")
def ben_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("bigearthnet"))


def test_generator_writes_the_published_names(ben_root: Path) -> None:
    p = NAMES[0]
    files = sorted(f.name for f in (ben_root / "BigEarthNet-v1.0" / p).iterdir())
    assert files == sorted([f"{p}_{b}.tif" for b in gen.BANDS] + [f"{p}_labels_metadata.json"])
    assert gen.BANDS == BIGEARTHNET_BANDS
    assert (ben_root / "train.csv").read_text().splitlines()[0] == p


def test_nomenclature_tables() -> None:
    assert len(BEN43_CLASSES) == 43 and len(BEN19_CLASSES) == 19
    assert set(BEN43_TO_19.values()) == set(range(19)) and len(BEN43_TO_19) == 32
    dropped = {BEN43_CLASSES[i] for i in range(43) if i not in BEN43_TO_19}
    assert dropped == {"Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
                       "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
                       "Bare rock", "Burnt areas", "Intertidal flats"}  # fmt: skip


def test_official_splits_and_multi_hot_19(ben_root: Path) -> None:
    parts = {s: BigEarthNetDataset(ben_root, s) for s in ("train", "val", "test")}
    assert {ds.split_source for ds in parts.values()} == {"files"}
    assert parts["train"].patches == NAMES[:4] and parts["val"].patches == [NAMES[4]] and parts["test"].patches == [NAMES[5]]
    train = parts["train"]
    assert train.label_names(0) == ["Coniferous forest", "Mixed forest", "Transitional woodland, shrub"]
    assert train.label_names(2) == ["Urban fabric", "Inland waters"]  # two urban labels merge into one
    t = train[3].target
    assert t is not None and t.dtype == torch.float32 and t.shape == (19,)
    assert torch.nonzero(t).flatten().tolist() == [18] and BEN19_CLASSES[18] == "Marine waters"
    assert parts["val"][0].target.sum() == 0  # type: ignore[union-attr]  # Bare rock, Burnt areas: outside the 19 classes
    assert parts["test"].label_names(0) == ["Inland wetlands", "Coastal wetlands"]
    meta = train.metadata(0)
    assert meta["acquisition_date"] == "2017-06-13 10:10:31" and set(meta["coordinates"]) == {"ulx", "uly", "lrx", "lry"}


def test_43_class_targets(ben_root: Path) -> None:
    ds = BigEarthNetDataset(ben_root, "val", nomenclature=43)
    assert ds.num_classes == 43
    t = ds[0].target
    assert t is not None and [BEN43_CLASSES[i] for i in torch.nonzero(t).flatten().tolist()] == ["Bare rock", "Burnt areas"]


def test_bands_resampled_to_120_and_values(ben_root: Path) -> None:
    ds = BigEarthNetDataset(ben_root, "train")
    s = ds[1]
    assert s.values.shape == (12, 120, 120) and ds.channel_keys == [f"s2/{b}" for b in BIGEARTHNET_BANDS]
    assert s.channel_ids.tolist() == sentinel2_vocab().ids(ds.channel_keys)
    np.testing.assert_array_equal(s.values[1].numpy(), gen.expected(1, "B02").astype(np.float32))  # 10 m: as stored
    b05 = torch.from_numpy(gen.expected(1, "B05").astype(np.float32))[None, None]
    want = F.interpolate(b05, size=(120, 120), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(s.values[4], want)
    near = BigEarthNetDataset(ben_root, "train", bands=["B01", "B04"], resample="nearest")[1].values
    assert near.shape == (2, 120, 120)
    np.testing.assert_array_equal(near[0, :6, :6].numpy(), np.full((6, 6), gen.expected(1, "B01")[0, 0], np.float32))
    np.testing.assert_array_equal(near[1].numpy(), gen.expected(1, "B04").astype(np.float32))


def test_torchgeo_lists_and_random_split(tmp_path: Path) -> None:
    tg = gen.generate(tmp_path / "tg", split_style="torchgeo")
    assert BigEarthNetDataset(tg, "train").patches == NAMES[:4]
    none = gen.generate(tmp_path / "none", split_style=None)
    parts = {s: BigEarthNetDataset(none, s, seed=1) for s in ("train", "val", "test")}
    assert {ds.split_source for ds in parts.values()} == {"random"}
    got = sorted(p for ds in parts.values() for p in ds.patches)
    assert got == sorted(NAMES[:6])  # the seasonal-snow patch is left out
    assert len(parts["val"]) == len(parts["test"]) == 1
    assert BigEarthNetDataset(none, "val", seed=1).patches == parts["val"].patches


def test_missing_and_malformed_are_named_errors(ben_root: Path, tmp_path: Path) -> None:
    with pytest.raises(BigEarthNetMissingError, match=r"not found.*_labels_metadata\.json.*bigearth\.net.*never downloads"):
        BigEarthNetDataset(tmp_path / "nowhere")
    with pytest.raises(BigEarthNetMissingError, match="no BigEarthNet patch folders"):
        BigEarthNetDataset(tmp_path)
    assert issubclass(BigEarthNetMissingError, FileNotFoundError)
    with pytest.raises(BigEarthNetMissingError, match=r"split lists train\.csv.*not found in"):
        BigEarthNetDataset(ben_root, split_dir=tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(ben_root, bad)
    data = bad / "BigEarthNet-v1.0"
    (data / NAMES[0] / f"{NAMES[0]}_B8A.tif").unlink()
    ds = BigEarthNetDataset(bad, "train")
    with pytest.raises(BigEarthNetMissingError, match=rf"{NAMES[0]}_B8A\.tif"):
        ds[0]
    (data / NAMES[1] / f"{NAMES[1]}_labels_metadata.json").write_text('{"labels": ["Forest of gold"]}')
    with pytest.raises(BigEarthNetFormatError, match="unknown BigEarthNet label 'Forest of gold'"):
        ds.target(1)
    shutil.rmtree(data / NAMES[5])
    with pytest.raises(BigEarthNetMissingError, match=rf"1 patch folder\(s\) listed in .*test\.csv.*{NAMES[5]}"):
        BigEarthNetDataset(bad, "test")


def test_datamodule_batches_multi_hot_targets(ben_root: Path) -> None:
    dm = BigEarthNetDataModule(str(ben_root), batch_size=2, bands=["B02", "B03", "B04", "B08"])
    assert (
        dm.spec.num_classes == 19 and dm.spec.image_size == 120 and dm.spec.channels == ["s2/B02", "s2/B03", "s2/B04", "s2/B08"]
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch.values.shape == (2, 4, 120, 120) and batch.target is not None and batch.target.shape == (2, 19)
    assert abs(float(batch.values.mean())) < 0.5


def test_datamodule_spec_is_multilabel(ben_root: Path) -> None:
    assert BigEarthNetDataModule(str(ben_root), nomenclature=43).spec.multilabel is True


@pytest.mark.filterwarnings("ignore:No positive samples found in target")  # the miniature's val patch has no 19-class label
def test_recipe_trains_one_epoch_multilabel(ben_root: Path, tmp_path: Path) -> None:
    assert "bigearthnet-channelvit" in list_recipes()
    common = [
        "--config", resolve_config("bigearthnet-channelvit"), f"--data.init_args.root={ben_root}",
        "--data.init_args.batch_size=2", "--data.init_args.norm_items=4", "--model.init_args.encoder_kwargs.embed_dim=16",
        "--model.init_args.encoder_kwargs.depth=1", "--model.init_args.encoder_kwargs.num_heads=2",
        "--model.init_args.encoder_kwargs.patch_size=40",
        "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false",
        "--trainer.logger=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
    ]  # fmt: skip
    cli = run_lightning_cli(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                             f"--model.init_args.export_dir={tmp_path / 'export'}"])  # fmt: skip
    model = cli.model
    assert cli.trainer.global_step == 2
    assert isinstance(model, ClassificationTask) and model.multilabel and model.num_classes == 19
    assert model.encoder.img_size == 120
    metrics = cli.trainer.callback_metrics
    assert {f"test/{m}" for m in ("map_micro", "map_macro", "f1_micro", "f1_macro")} <= set(metrics)
    # the miniature's test patch holds 2 of the 19 labels: micro mAP is a real value in (0, 1]
    assert 0.0 < float(metrics["test/map_micro"]) <= 1.0 and math.isfinite(float(metrics["test/loss"]))
    assert model.test_confusion is not None and model.test_confusion.shape == (19, 2, 2)
    encoder = load_pretrained(tmp_path / "export")
    assert isinstance(encoder, ChannelViT) and encoder.embed_dim == 16
    ckpts = sorted(tmp_path.rglob("last.ckpt"))
    assert ckpts, "the recipe's ModelCheckpoint wrote no last.ckpt"
    again = run_lightning_cli(["test", *common, f"--ckpt_path={ckpts[0]}"])
    assert again.model.multilabel and again.model.hparams["multilabel"] is None  # the spec decides, as num_classes
    torch.testing.assert_close(again.model.head[1].weight, model.head[1].weight)
    assert float(again.trainer.callback_metrics["test/map_micro"]) == pytest.approx(float(metrics["test/map_micro"]))
