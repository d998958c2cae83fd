"""Time-Series-Library forecasting tables and the UEA/UCR archive folders, read from generated
miniatures of the published layouts (and from ../shared/data where the real files are)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.timeseries.datamodules import UEADataModule
from chanformer.datasets.timeseries.sources import UEAMissingError, list_uea_archives, uea_path
from chanformer.datasets.timeseries.tslib import (
    TSLIB_DATASETS,
    TSLibForecastingDataModule,
    TSLibForecastingDataset,
    TSLibMissingError,
    read_tslib_table,
    tslib_path,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _load(name: str) -> ModuleType:
    path = Path(__file__).parent / "data" / name / "generate.py"
    spec = importlib.util.spec_from_file_location(f"{name}_generate", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tslib_gen, uea_gen = _load("tslib"), _load("uea_archive")


@pytest.fixture(scope="module")
def tslib_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tslib_gen.generate(tmp_path_factory.mktemp("tslib"))


@pytest.fixture(scope="module")
def uea_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uea_gen.generate(tmp_path_factory.mktemp("uea"))


# -- TSLib -------------------------------------------------------------------------------------------------
def test_every_tslib_name_resolves_to_its_published_path(tslib_root: Path) -> None:
    assert set(TSLIB_DATASETS) == {*tslib_gen.TABLES, "solar"}
    for name, (rel, *_rest) in tslib_gen.TABLES.items():
        assert tslib_path(tslib_root, name) == tslib_root / rel
    assert tslib_path(tslib_root, "solar") == tslib_root / "Solar" / "solar_AL.txt"
    assert tslib_path(tslib_root, "ECL") == tslib_root / "electricity" / "electricity.csv"  # TSLib's alias


def test_ett_hour_split_is_12_4_4_months_with_lookback_overlap(tslib_root: Path) -> None:
    kw = dict(seq_len=96, horizon=24, scale=False)
    tr, va, te = (TSLibForecastingDataset(tslib_root, "ETTh1", split=s, **kw) for s in ("train", "val", "test"))  # type: ignore[arg-type]
    assert (tr.borders, va.borders, te.borders) == ((0, 8640), (8640 - 96, 11520), (11520 - 96, 14400))
    assert len(tr) == 8640 - 96 - 24 + 1 and len(te) == 2880 + 96 - 96 - 24 + 1
    expect = tslib_gen.values(17420, 7)
    # the first val input starts 96 rows before the border; values round-trip from the file
    np.testing.assert_allclose(va[0].values.numpy(), expect[8640 - 96 : 8640].T, rtol=1e-5)
    np.testing.assert_allclose(te[0].target.numpy(), expect[11520 : 11520 + 24].T, rtol=1e-5)
    assert tr.columns == tslib_gen.ETT_COLUMNS and tr.columns[-1] == "OT"
    assert tr.covariates.shape[0] == 4  # hourly calendar features


def test_ett_minute_split_is_four_times_the_hourly(tslib_root: Path) -> None:
    va = TSLibForecastingDataset(tslib_root, "ETTm2", split="val", seq_len=96, horizon=96)
    assert va.borders == (34560 - 96, 46080) and va.covariates.shape[0] == 5  # minute features too


def test_ratio_split_train_only_scaling_and_ot_last(tslib_root: Path) -> None:
    n = 500  # electricity miniature rows: int(0.7 n) train, int(0.2 n) test, the rest val
    tr = TSLibForecastingDataset(tslib_root, "electricity", split="train", seq_len=24, horizon=12)
    te = TSLibForecastingDataset(tslib_root, "electricity", split="test", seq_len=24, horizon=12)
    assert tr.borders == (0, 350) and te.borders == (400 - 24, 500)
    raw = tslib_gen.values(n, 4)
    np.testing.assert_allclose(tr.stats.mean, raw[:350].mean(0), rtol=1e-5)  # type: ignore[union-attr]
    np.testing.assert_allclose(te.inverse_transform(te[0].values).numpy(), raw[376:400].T, rtol=1e-4, atol=1e-4)
    assert tr.columns == ["0", "1", "2", "OT"]
    ex = read_tslib_table(tslib_root, "exchange_rate")
    assert ex["date"].iloc[1] == "1990/1/2 0:00" and list(ex.columns)[-1] == "OT"


def test_weather_and_solar_tables(tslib_root: Path) -> None:
    w = TSLibForecastingDataset(tslib_root, "weather", split="val", seq_len=48, horizon=24)
    assert len(w.columns) == 21 and w.columns[0] == "p (mbar)" and w.columns[-1] == "OT"
    assert w.borders == (420 - 48, 480)  # 600 rows: 420 / 60 / 120
    solar = read_tslib_table(tslib_root, "solar")
    assert solar.shape == (700, 138) and solar["date"].iloc[1] == pd.Timestamp("2006-01-01 00:10")
    np.testing.assert_allclose(solar.iloc[:, 1:].to_numpy(), tslib_gen.values(700, 137), rtol=1e-5)
    s = TSLibForecastingDataset(tslib_root, "solar", split="test", seq_len=48, horizon=24)
    assert s.n_channels == 137 and s.borders == (560 - 48, 700)


def test_missing_tslib_folder_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(TSLibMissingError, match=r"weather/weather\.csv.*never downloads"):
        tslib_path(tmp_path, "weather")
    with pytest.raises(TSLibMissingError, match="root not found"):
        TSLibForecastingDataModule(root=str(tmp_path / "absent"), name="ETTh1")
    with pytest.raises(ValueError, match="unknown TSLib dataset"):
        tslib_path(tmp_path, "ETTh9")


def test_real_etth1_through_the_flat_layout() -> None:
    if not (SHARED / "ett" / "ETTh1.csv").is_file():
        pytest.skip("ETTh1 is not present in ../shared/data/ett")
    dm = TSLibForecastingDataModule(root=str(SHARED / "ett"), name="ETTh1", seq_len=96, horizon=96)
    assert dm.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    dm.setup("fit")
    assert dm.train_dataset.borders == (0, 8640) and dm.test_dataset.borders == (11424, 14400)  # type: ignore[union-attr]
    assert len(dm.test_dataset) == 2785  # type: ignore[arg-type]  # TSLib's ETTh1 test length at 96 -> 96
    assert dm._frame.shape == (17420, 8) and str(dm._frame["date"].iloc[0]) == "2016-07-01 00:00:00"


def _tiny(tmp_path: Path, recipe: str, root: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_lightning_cli([
        "fit", "--config", resolve_config(recipe), f"--data.init_args.root={root}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}", *extra,
    ])  # fmt: skip


@pytest.mark.parametrize("name", ["weather", "ETTh2"])
def test_tslib_recipe_trains_one_epoch_on_the_miniature(name: str, tslib_root: Path, tmp_path: Path) -> None:
    assert "tslib-softs" in list_recipes()
    cli = _tiny(tmp_path, "tslib-softs", tslib_root, f"--data.init_args.name={name}",
                "--data.init_args.seq_len=48", "--data.init_args.horizon=24",
                '--model.init_args.encoder_kwargs={"d_model": 16, "d_core": 16, "d_ff": 16, "e_layers": 1}')  # fmt: skip
    assert cli.trainer.global_step == 2
    assert len(cli.model.vocab) == TSLibForecastingDataset(tslib_root, name, seq_len=48, horizon=24).n_channels
    assert math.isfinite(float(cli.trainer.callback_metrics["test/mse"]))


# -- UEA / UCR archive layouts ---------------------------------------------------------------------------------
def test_archive_layout_lists_and_reads_any_archive(uea_root: Path) -> None:
    assert list_uea_archives(uea_root) == {
        "BasicMotions": "multivariate", "Epilepsy": "multivariate",
        "GunPoint": "univariate", "ItalyPowerDemand": "univariate",
    }  # fmt: skip
    assert uea_path("Epilepsy", "test", uea_root) == uea_root / "Multivariate_ts" / "Epilepsy" / "Epilepsy_TEST.ts"
    dm = UEADataModule(name="Epilepsy", root=str(uea_root), val_fraction=0.0, normalize=None)
    assert dm.classes == ["EPILEPSY", "WALKING", "RUNNING", "SAWING"] and dm.n_channels == 3 and dm.length == 206
    dm.setup("fit")
    test = dm.test_dataset
    assert len(test) == 8  # type: ignore[arg-type]
    s = test[3]  # type: ignore[index]
    # class 1 (WALKING), case 3 (test cases are 2, 3): value 100*1 + 3 + d + t/1000
    assert int(s.target) == 1 and s.values.shape == (3, 206)
    assert float(s.values[2, 10]) == pytest.approx(100 + 3 + 2 + 0.01)
    gp = UEADataModule(name="GunPoint", root=str(uea_root), val_fraction=0.5, normalize=None)
    assert gp.n_channels == 1 and gp.classes == ["1", "2"] and gp.length == 150


def test_flat_layout_and_missing_archive(tmp_path: Path) -> None:
    flat = uea_gen.generate(tmp_path / "flat", flat=True)
    assert list_uea_archives(flat) == dict.fromkeys(sorted(uea_gen.ARCHIVES), "")
    assert uea_path("GunPoint", "train", flat) == flat / "GunPoint_TRAIN.ts"
    with pytest.raises(UEAMissingError, match="NoSuch.*Multivariate_ts/NoSuch/NoSuch_TRAIN.ts"):
        uea_path("NoSuch", "train", flat)
    with pytest.raises(UEAMissingError, match="no such folder"):
        list_uea_archives(tmp_path / "absent")


def test_real_uea_folder_is_listed() -> None:
    if not (SHARED / "uea" / "FingerMovements_TRAIN.ts").is_file():
        pytest.skip("the UEA archives are not present in ../shared/data/uea")
    assert list_uea_archives(SHARED / "uea") == dict.fromkeys(
        ["ArticularyWordRecognition", "EyesOpenShut", "FingerMovements", "SelfRegulationSCP1"], ""
    )


def test_uea_recipe_trains_one_epoch_on_the_archive_miniature(uea_root: Path, tmp_path: Path) -> None:
    cli = _tiny(tmp_path, "uea-softs", uea_root, "--data.init_args.name=BasicMotions", "--data.init_args.batch_size=4")
    dm = cli.datamodule
    assert dm.paths["train"] == uea_root / "Multivariate_ts" / "BasicMotions" / "BasicMotions_TRAIN.ts"
    assert cli.trainer.global_step == 1 and dm.num_classes == 4
    assert math.isfinite(float(cli.trainer.callback_metrics["test/acc"]))
