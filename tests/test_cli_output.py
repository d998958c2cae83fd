"""Output hygiene of ``chanformer fit`` (no Lightning advertising or known deprecation noise),
``--print_config`` of the default recipe, and stable run folders with a ``latest`` link."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from chanformer.cli.main import main
from chanformer.cli.output import new_run_dir, point_latest, quiet_lightning, run_root
from tests.test_cli import _cli

CHEAP = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
         "--trainer.limit_test_batches=1"]  # fmt: skip
NOISE = ("tensorboardX", "Tip:", "litlogger", "litmodels", "LitServe", "GPU available: False, used: False",
         "TPU available: False", "LeafSpec")  # fmt: skip


def test_default_fit_is_quiet_and_latest_points_to_the_newest_run(tmp_path):
    runs = []
    for _ in range(2):
        proc = _cli("fit", *CHEAP, f"--trainer.default_root_dir={tmp_path}")
        text = proc.stdout + proc.stderr
        for noise in NOISE:
            assert noise not in text, f"{noise!r} printed:\n{text}"
        assert "test/acc" in proc.stdout  # real output is still there
        runs.append(proc)
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(folders) == 2, folders
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == folders[-1].resolve()
    assert (latest / "checkpoints" / "best.ckpt").is_file() and (latest / "pretrained" / "model.safetensors").is_file()
    assert (latest / "config.yaml").is_file() and not (tmp_path / "lightning_logs").exists()
    assert f"exported SOFTS to {folders[-1]}" in runs[-1].stdout
    # one result-table style: `test` prints the table that `fit` prints, not Lightning's own
    assert "test results (best weights)" in runs[-1].stdout
    proc = _cli("test", "--trainer.limit_test_batches=1", f"--trainer.default_root_dir={tmp_path / 'test'}",
                f"--ckpt_path={latest / 'checkpoints' / 'best.ckpt'}")  # fmt: skip
    assert "test results (best.ckpt weights)" in proc.stdout and "test/acc" in proc.stdout, proc.stdout
    assert "Test metric" not in proc.stdout and "DataLoader 0" not in proc.stdout


def test_print_config_without_config_prints_the_default_recipe(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--print_config"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert "model: null" not in out and "data: null" not in out
    assert "chanformer.tasks.ClassificationTask" in out and "softs_small" in out and "BasicMotions" in out


def test_run_name_and_root(tmp_path):
    assert run_root(None, ["x/my-recipe.yaml"], None) == Path("runs/my-recipe")
    assert run_root(tmp_path, [], "sweep-1") == tmp_path / "sweep-1"
    with pytest.raises(ValueError, match="--run_name"):
        run_root(tmp_path, [], "../escape")


def test_latest_falls_back_to_a_pointer_file(tmp_path, monkeypatch):
    first = new_run_dir(tmp_path)
    second = new_run_dir(tmp_path)  # the same second: a suffixed name, not the same folder
    assert first != second and first.is_dir() and second.is_dir()
    assert point_latest(first) == tmp_path / "latest" and os.readlink(tmp_path / "latest") == first.name

    def refuse(*_args, **_kwargs):
        raise OSError("symlinks not supported")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    pointer = point_latest(second)
    assert pointer == tmp_path / "latest.txt" and pointer.read_text().strip() == second.name


def test_quiet_lightning_hides_only_known_noise(caplog):
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")  # quiet_lightning's filters go in front of this one
        with quiet_lightning():
            warnings.warn("Starting from v1.9.0, `tensorboardX` has been removed as a dependency", UserWarning, stacklevel=1)
            warnings.warn("a real problem", UserWarning, stacklevel=1)
            log.info("💡 Tip: try installing something")
            log.info("GPU available: False, used: False")
            log.info("GPU available: True (cuda), used: False")
    assert [str(w.message) for w in seen] == ["a real problem"]
    assert [r.getMessage() for r in caplog.records] == ["GPU available: True (cuda), used: False"]
    # nothing stays installed after the run
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn("Starting from v1.9.0, `tensorboardX` has been removed", UserWarning, stacklevel=1)
    assert len(seen) == 1
