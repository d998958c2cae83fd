"""The shipped ETTh1 forecasting recipes (SOFTS at its authors' configuration) on real and tiny data."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets import ForecastingDataModule

ROOT = Path(__file__).resolve().parents[1]
ETTH1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett" / "ETTh1.csv"
HORIZONS = (96, 192, 336, 720)
#: SOFTS paper (Han et al., NeurIPS 2024), ETTh1, lookback 96: test MSE / MAE averaged over HORIZONS.
PUBLISHED_MSE, PUBLISHED_MAE = 0.449, 0.442
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _recipe(horizon: int) -> dict:
    return yaml.safe_load(Path(resolve_config(f"etth1-softs-{horizon}")).read_text())


def _callback(cfg: dict, name: str) -> dict:
    return next(c["init_args"] for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith(name))


@pytest.mark.parametrize("horizon", HORIZONS)
def test_etth1_recipe_is_the_softs_configuration(horizon):
    assert f"etth1-softs-{horizon}" in list_recipes()
    cfg = _recipe(horizon)
    data, model = cfg["data"]["init_args"], cfg["model"]["init_args"]
    assert cfg["data"]["class_path"].endswith("ForecastingDataModule")
    assert data["horizon"] == horizon and data["seq_len"] == 96 and data["batch_size"] == 32
    assert data["split_scheme"] == "ett_hour" and data.get("scale", True)
    assert data["source"] == "../shared/data/ett/ETTh1.csv"
    # lengths and channels come from data.spec, never from the model section
    assert not {"horizon", "data_spec"} & set(model)
    assert model["encoder"] == "softs"
    assert not {"seq_len", "num_channels"} & set(model["encoder_kwargs"])
    enc = model["encoder_kwargs"]
    assert (enc["d_model"], enc["d_core"], enc["e_layers"]) == (256, 256, 1)
    assert enc["d_ff"] == (256 if horizon <= 192 else 512)
    assert model["optimizer"]["class_path"] == "torch.optim.Adam"
    assert model["optimizer"]["init_args"]["lr"] == pytest.approx(3e-4)
    sched = model["lr_scheduler"]
    assert sched["class_path"].endswith("CosineAnnealingLR")
    assert sched["init_args"]["T_max"] == cfg["trainer"]["max_epochs"] == 20
    stop = _callback(cfg, "EarlyStopping")
    assert stop["monitor"] == "val/loss" and stop["patience"] == 3
    assert _callback(cfg, "ModelCheckpoint")["monitor"] == "val/loss"


def _ett_like_table(path: Path, rows: int = 17420) -> Path:
    """A seeded table in ETTh1's layout (hourly ``date`` + its 7 columns), for runs without the data."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    cols = {
        name: 5.0 * np.sin(2 * np.pi * t / 24 + k) + 0.01 * k * t / 24 + rng.normal(0, 0.5, rows)
        for k, name in enumerate(ETT_COLUMNS)
    }
    frame = pd.DataFrame({"date": pd.date_range("2016-07-01", periods=rows, freq="h"), **cols})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("horizon", HORIZONS)
def test_etth1_recipe_trains_a_step(horizon, tmp_path):
    table = _ett_like_table(tmp_path / "ett.csv")
    cli = run_lightning_cli([
        "fit", "--config", resolve_config(f"etth1-softs-{horizon}"), f"--data.init_args.source={table}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
        f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    model = cli.model
    assert model.forecaster.horizon == horizon and model.encoder.seq_len == 96
    assert len(model.vocab) == 7 and model.encoder.embed_dim == 256
    assert len(model.encoder.layers) == 1
    assert cli.trainer.global_step == 2
    # one epoch of the cosine schedule: 3e-4 * (1 + cos(pi / 20)) / 2
    lr = cli.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(3e-4 * (1 + math.cos(math.pi / 20)) / 2)
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["test/mse"])) and math.isfinite(float(metrics["test/mae"]))
    assert (tmp_path / "export" / "model.safetensors").is_file()


def test_recipe_data_path_resolves_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="--data.init_args.source"):
        ForecastingDataModule(source="no/such/ETTh1.csv")
    if not ETTH1.is_file():
        pytest.skip(f"ETTh1 is not present at {ETTH1}")
    dm = ForecastingDataModule(source=_recipe(96)["data"]["init_args"]["source"], seq_len=96, horizon=96,
                               split_scheme="ett_hour")
    assert dm.columns == ETT_COLUMNS


def _test_metrics(stdout: str) -> dict[str, float]:
    """``test/<name> -> value`` from the results table the CLI prints after fit."""
    return {m[1]: float(m[2]) for m in re.finditer(r"(test/[a-z_]+)\W+?(-?[0-9]+\.[0-9]+)", stdout)}


@pytest.mark.slow  # 4 trainings: 4.5 min in all on a quiet 2-core CPU, 10 min on a loaded one
def test_etth1_softs_reaches_the_published_average(tmp_path):
    if not ETTH1.is_file():
        pytest.skip(f"ETTh1 is not present at {ETTH1}")
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    exe = str(Path(sys.executable).with_name("chanformer"))
    mse, mae = [], []
    for horizon in HORIZONS:
        args = [exe, "fit", "--config", f"etth1-softs-{horizon}", "--trainer.enable_progress_bar=false",
                f"--trainer.default_root_dir={tmp_path / str(horizon)}", f"--data.init_args.source={ETTH1}"]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = _test_metrics(proc.stdout)
        mse.append(metrics["test/mse"])
        mae.append(metrics["test/mae"])
        print(f"ETTh1 horizon {horizon}: test MSE {mse[-1]:.4f}, MAE {mae[-1]:.4f}")
    avg_mse, avg_mae = float(np.mean(mse)), float(np.mean(mae))
    assert abs(avg_mse - PUBLISHED_MSE) <= 0.02 * PUBLISHED_MSE, (avg_mse, mse)
    assert abs(avg_mae - PUBLISHED_MAE) <= 0.02 * PUBLISHED_MAE, (avg_mae, mae)
