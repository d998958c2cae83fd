from __future__ import annotations

import json
import shutil

import pytest
import torch

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import series_vocab
from chanformer.cli.main import main
from chanformer.encoders import create_encoder, list_encoders
from chanformer.hub import load_pretrained, run_reference_fixture, save_pretrained
from tests.conftest import reference_path


def test_registry_lists_and_rejects():
    names = list_encoders()
    assert {"softs", "softs_small", "softs_test"} <= set(names)
    assert list_encoders("softs*") == [n for n in names if n.startswith("softs")]
    with pytest.raises(ValueError, match="unknown encoder name 'softz'"):
        create_encoder("softz")
    with pytest.raises(ValueError, match="seq_len"):
        create_encoder("softs_test", seq_len=0)


def test_save_load_identical_with_vocab(tmp_path):
    enc = create_encoder("softs_test", d_model=20).eval()
    vocab = series_vocab(["a", "b", "c"])
    save_pretrained(enc, tmp_path / "enc", vocab=vocab)
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    loaded = load_pretrained(tmp_path / "enc")
    assert loaded.vocab == vocab
    batch = ChannelBatch.collate([ChannelSample(torch.randn(3, 16), torch.arange(3))])
    with torch.no_grad():
        assert torch.equal(enc(batch), loaded(batch))


def test_save_is_atomic_and_replaces(tmp_path):
    enc = create_encoder("softs_test")
    save_pretrained(enc, tmp_path / "enc")
    enc2 = create_encoder("softs_test", d_model=32)
    save_pretrained(enc2, tmp_path / "enc")
    assert load_pretrained(tmp_path / "enc").embed_dim == 32
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]  # no temporary leftovers


def test_load_errors_name_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    save_pretrained(create_encoder("softs_test"), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_pretrained(tmp_path / "m")
    save_pretrained(create_encoder("softs_test"), tmp_path / "n")
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    cfg["model"]["kwargs"]["d_model"] = 8
    (tmp_path / "n" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="size mismatch|does not match"):
        load_pretrained(tmp_path / "n")


def test_unpicklable_model_is_refused(tmp_path):
    with pytest.raises(TypeError, match="create_encoder"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_run_reference_fixture_returns_named_outputs():
    out = run_reference_fixture(reference_path("softs"))
    assert set(out) >= {"forecast", "forecast_no_mark"}


def test_reference_check_cli_passes_and_fails(tmp_path, capsys):
    path = reference_path("softs")
    assert main(["reference", "check", str(path)]) == 0
    broken = tmp_path / "softs"
    shutil.copytree(path, broken)
    meta = json.loads((broken / "fixture.json").read_text())
    meta["atol"], meta["rtol"] = 0.0, 0.0
    meta["outputs"]["forecast"]["shape"] = [1]
    (broken / "fixture.json").write_text(json.dumps(meta))
    from safetensors.torch import load_file, save_file

    io = load_file(str(broken / "io.safetensors"))
    io["output.forecast"] = io["output.forecast"] + 1.0
    save_file(io, str(broken / "io.safetensors"))
    assert main(["reference", "check", str(broken)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_reference_convert_writes_pretrained(tmp_path):
    path = reference_path("softs")
    assert main(["reference", "convert", "--fixture", str(path), "--out", str(tmp_path / "conv")]) == 0
    model = load_pretrained(tmp_path / "conv")
    cfg = json.loads((tmp_path / "conv" / "config.json").read_text())
    assert cfg["source"]["repo"] == "Secilia-Cxy/SOFTS" and cfg["model"]["kind"] == "forecaster"
    out = run_reference_fixture(path)
    from chanformer.hub import load_fixture

    fx = load_fixture(path)
    x = fx.inputs["x_enc"].transpose(1, 2)
    batch = ChannelBatch(x, torch.arange(7).expand(4, -1).clone(), torch.ones(4, 7, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(model(batch).transpose(1, 2), out["forecast_no_mark"])
