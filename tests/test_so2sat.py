"""So2Sat LCZ42 reader, datamodule and recipe on a generated miniature of the published HDF5 files."""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from chanformer.channels import UnknownChannelError
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.imaging.so2sat import (
    LCZ_CLASSES,
    SEN1_CHANNELS,
    So2SatDataModule,
    So2SatDataset,
    So2SatFormatError,
    So2SatMissingError,
    so2sat_vocab,
)

_GEN = Path(__file__).parent / "data" / "so2sat" / "generate.py"
_spec = importlib.util.spec_from_file_location("so2sat_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def so2sat_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("so2sat"))


def test_generator_writes_the_published_files(so2sat_root: Path) -> None:
    assert sorted(p.name for p in so2sat_root.iterdir()) == ["testing.h5", "training.h5", "validation.h5"]
    with h5py.File(so2sat_root / "training.h5") as f:
        assert sorted(f) == ["label", "sen1", "sen2"]
        assert f["sen1"].shape == (34, 32, 32, 8) and f["sen2"].shape == (34, 32, 32, 10) and f["label"].shape == (34, 17)
        assert f["sen2"].dtype == np.float64


def test_labels_channels_and_values_round_trip(so2sat_root: Path) -> None:
    for split in ("train", "val", "test"):
        ds = So2SatDataset(so2sat_root, split)
        assert ds.labels.tolist() == gen.LABELS[split]
    ds = So2SatDataset(so2sat_root, "val")
    assert len(ds) == 17 and ds.num_classes == 17 and ds.classes[16] == "Water" == LCZ_CLASSES[-1]
    s = ds[3]
    assert s.values.shape == (18, 32, 32) and s.values.dtype == torch.float32
    assert int(s.target) == gen.LABELS["val"][3] == 13
    sen1, sen2 = gen.expected("val", 3)
    want = np.concatenate([sen1, sen2], axis=-1).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(s.values.numpy(), want)
    assert ds.channel_keys[:8] == list(SEN1_CHANNELS) and ds.channel_keys[8:] == [
        "s2/B02", "s2/B03", "s2/B04", "s2/B05", "s2/B06", "s2/B07", "s2/B08", "s2/B8A", "s2/B11", "s2/B12"]  # fmt: skip
    vocab = so2sat_vocab()
    assert s.channel_ids.tolist() == vocab.ids(ds.channel_keys)
    assert vocab["s1/VV_lee"].kind == "sar" and vocab["s2/B8A"].wavelength_nm == pytest.approx(864.7)


def test_modalities_and_channel_subsets(so2sat_root: Path) -> None:
    s2 = So2SatDataset(so2sat_root, "test", modalities=["s2"])
    assert s2[0].values.shape == (10, 32, 32)
    np.testing.assert_array_equal(s2[0].values.numpy(), gen.expected("test", 0)[1].transpose(2, 0, 1).astype(np.float32))
    s1 = So2SatDataset(so2sat_root, "test", modalities=["s1"], channels=["s1/VV_lee", "s1/VH_lee"])
    np.testing.assert_array_equal(
        s1[0].values.numpy(), gen.expected("test", 0)[0][..., [5, 4]].transpose(2, 0, 1).astype(np.float32)
    )
    with pytest.raises(UnknownChannelError, match="s2/B04"):
        So2SatDataset(so2sat_root, "test", modalities=["s1"], channels=["B04"])
    with pytest.raises(ValueError, match="modalities"):
        So2SatDataset(so2sat_root, "test", modalities=["s3"])
    clone = pickle.loads(pickle.dumps(s2))  # DataLoader workers: the open HDF5 handle is not carried
    assert clone._h5 is None and clone[1].values.shape == (10, 32, 32)


def test_version3_variant_folder(tmp_path: Path) -> None:
    root = gen.generate(tmp_path, version=3)
    assert len(So2SatDataset(root, "train", variant="random")) == 34
    with pytest.raises(So2SatMissingError, match=r"training\.h5"):
        So2SatDataset(root, "train")


def test_missing_and_malformed_files_are_named_errors(so2sat_root: Path, tmp_path: Path) -> None:
    with pytest.raises(So2SatMissingError, match=r"root folder not found.*training\.h5.*mediatum.*never downloads"):
        So2SatDataset(tmp_path / "nowhere")
    with pytest.raises(So2SatMissingError, match=r"test file not found: .*testing\.h5"):
        So2SatDataset(tmp_path, "test")
    assert issubclass(So2SatMissingError, FileNotFoundError)
    with h5py.File(tmp_path / "training.h5", "w") as f:
        f.create_dataset("sen2", data=np.zeros((2, 32, 32, 10)))
    with pytest.raises(So2SatFormatError, match="no HDF5 dataset.*sen1, label"):
        So2SatDataset(tmp_path, "train")
    with h5py.File(tmp_path / "validation.h5", "w") as f:
        f.create_dataset("sen1", data=np.zeros((2, 32, 32, 8)))
        f.create_dataset("sen2", data=np.zeros((2, 32, 32, 10)))
        f.create_dataset("label", data=np.zeros((2, 17)))
    with pytest.raises(So2SatFormatError, match="row 0 is not one-hot"):
        So2SatDataset(tmp_path, "val")


def test_datamodule_and_recipe_one_epoch(so2sat_root: Path, tmp_path: Path) -> None:
    dm = So2SatDataModule(str(so2sat_root), batch_size=4)
    assert dm.spec.num_classes == 17 and dm.spec.image_size == 32 and len(dm.spec.channels or []) == 18
    assert next(iter(dm.val_dataloader())).values.shape == (4, 18, 32, 32)
    assert "so2sat-channelvit" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("so2sat-channelvit"), f"--data.init_args.root={so2sat_root}",
        "--data.init_args.batch_size=4", "--model.init_args.encoder_kwargs.embed_dim=16",
        "--model.init_args.encoder_kwargs.depth=1", "--model.init_args.encoder_kwargs.num_heads=2",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 2 and cli.model.num_classes == 17
    assert cli.model.encoder.img_size == 32 and len(cli.model.vocab) == len(so2sat_vocab()) == 21
    assert math.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
