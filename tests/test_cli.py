from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from chanformer.cli.main import DEFAULT_RECIPE, list_recipes, main
from chanformer.hub import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "configs" / "tiny-classify.yaml")


def _cli(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    exe = str(Path(sys.executable).with_name("chanformer"))
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"chanformer {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def test_lists_recipes_and_encoders(capsys):
    assert DEFAULT_RECIPE in list_recipes()
    assert {"japanesevowels-softs", "macrodata-softs"} <= set(list_recipes())
    assert main(["recipes"]) == 0 and DEFAULT_RECIPE in capsys.readouterr().out
    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    assert "softs_small" in out and "channelvit_small_p16" in out


def test_bad_config_path_is_one_line(capsys):
    assert main(["fit", "--config", "no/such/recipe.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("chanformer: error:") and "no/such/recipe.yaml" in err and "\n" not in err


def test_unknown_encoder_is_one_line(capsys):
    code = main(["fit", "--config", TINY, "--model.init_args.encoder=softz", "--trainer.max_epochs=1"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("chanformer: error: unknown encoder name 'softz'")


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_fit_exports_and_tests(tmp_path):
    proc = _cli("fit", "--config", TINY, f"--trainer.default_root_dir={tmp_path}",
                f"--model.init_args.export_dir={tmp_path / 'export'}")
    assert "test/acc" in proc.stdout
    enc = load_pretrained(tmp_path / "export")
    assert enc.encoder_name == "softs_test" and enc.vocab is not None and len(enc.vocab) == 6
    assert list(tmp_path.rglob("last.ckpt")) and not list(tmp_path.rglob("*.tmp"))
    # `chanformer test` reloads the checkpoint and, when asked, writes a channel-importance chart
    plot = tmp_path / "importance.png"
    ckpt = next(tmp_path.rglob("last.ckpt"))
    proc = _cli("test", "--config", TINY, f"--ckpt_path={ckpt}", f"--importance_plot={plot}",
                f"--trainer.default_root_dir={tmp_path}")
    assert "test/acc" in proc.stdout or plot.is_file()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    full, crash = tmp_path / "full", tmp_path / "crash"
    common = ["--config", TINY, "--trainer.max_epochs=4", "--test_after_fit=false"]
    _cli("fit", *common, f"--trainer.default_root_dir={full}", f"--model.init_args.export_dir={full / 'export'}")
    killed = _cli("fit", *common, f"--trainer.default_root_dir={crash}",
                  "--trainer.callbacks+=tests.helpers.KillAtEpoch", "--trainer.callbacks.epoch=2", check=False)
    assert killed.returncode == 17, killed.stderr[-2000:]
    last = next(crash.rglob("last.ckpt"))
    assert torch.load(last, weights_only=True)["epoch"] == 1  # two epochs done before the kill
    _cli("fit", *common, f"--trainer.default_root_dir={crash}", f"--ckpt_path={last}",
         f"--model.init_args.export_dir={crash / 'export'}")
    a = load_file(str(full / "export" / "model.safetensors"))
    b = load_file(str(crash / "export" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ddp_two_cpu_processes_agree(tmp_path):
    report = tmp_path / "ranks.json"
    _cli("fit", "--config", TINY, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
         "--test_after_fit=false", f"--trainer.default_root_dir={tmp_path}",
         "--trainer.callbacks+=chanformer.callbacks.RankConsistencyCheck",
         f"--trainer.callbacks.report={report}", f"--model.init_args.export_dir={tmp_path / 'export'}")
    result = json.loads(report.read_text())
    assert result["world_size"] == 2 and result["agree"] and len(set(result["digests"])) == 1
    assert (tmp_path / "export" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_default_recipe_reaches_095(tmp_path, precision):
    """Also under bfloat16 autocast (docs/performance.md: 2-3x faster training steps on CPUs with AMX)."""
    proc = _cli("fit", f"--trainer.default_root_dir={tmp_path}", f"--trainer.precision={precision}", timeout=900)
    line = next(ln for ln in proc.stdout.splitlines() if "test/acc " in ln or "test/acc│" in ln.replace(" ", ""))
    assert float(line.split()[-2]) >= 0.95, line


def test_integer_batch_limits_stay_integers_whatever_typing_cached(tmp_path):
    """``typing`` caches unions by their set of members: when a library imported before Lightning
    (scikit-learn, for one) has built ``Optional[Union[float, int]]``, Lightning's ``int | float``
    arguments come back float-first and ``--trainer.limit_train_batches=1`` (one batch) was parsed
    as ``1.0`` (every batch). The CLI must read what the user wrote. A fresh interpreter, because
    the trap depends on what was imported first."""
    code = f"""
import sklearn.neighbors  # imported first, as in a notebook: this is what set the trap (scikit-learn 1.x)
from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import DEFAULT_RECIPE, resolve_config
cli = run_lightning_cli(["fit", "--config", resolve_config(DEFAULT_RECIPE), "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=0.5",
    "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--trainer.default_root_dir={tmp_path}",
    "--model.init_args.export_dir={tmp_path / 'x'}", "--test_after_fit=false"])
t = cli.trainer
print("LIMITS", repr(t.limit_train_batches), repr(t.limit_test_batches), t.global_step)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LIMITS 1 0.5 1" in proc.stdout, proc.stdout


def test_fit_without_validation_data_stops_before_training_and_says_how(tmp_path, capsys):
    """A recipe that early-stops on val/loss, run with no validation split: one line naming the
    callbacks and the argument, before any step (Lightning alone fails after the first epoch)."""
    base = ["fit", "--config", "uea-softs", "--data.init_args.name=BasicMotions", "--data.init_args.val_fraction=0",
            "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
            f"--model.init_args.export_dir={tmp_path / 'export'}"]  # fmt: skip
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("chanformer: error: EarlyStopping monitors 'val/loss' and ModelCheckpoint monitors 'val/loss'")
    assert "val_fraction=0" in err and "--trainer.callbacks=[]" in err
    assert not list(tmp_path.rglob("*.ckpt"))  # stopped before the first step
    # the remedy it names: train on every training case for the fixed number of epochs
    assert main([*base, "--trainer.callbacks=[]"]) == 0
    assert list(tmp_path.rglob("*.ckpt")) and (tmp_path / "export").is_dir()
