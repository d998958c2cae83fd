"""Export for deployment: ONNX (checked with onnxruntime) and torch.export round trips per family.

The expectations below are the table in docs/export.md; a family that starts to export (or stops)
fails its strict xfail (or its test), so the table is updated with the code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chanformer import create_encoder, list_encoders
from chanformer.batch import ChannelBatch, EmptySampleError
from chanformer.export import (
    ExportError,
    ExportMismatchError,
    FlatEncoder,
    check_inputs,
    export_onnx,
    export_torch,
    flatten_batch,
    load_torch,
    run_onnx,
)

FAMILIES = sorted(list_encoders("*_test"))

# family -> (ONNX exporter used by "auto", dynamic channel axis), for those that export to ONNX
ONNX = {
    "softs_test": ("dynamo", True),
    "gat_test": ("dynamo", True),
    "chadavit_test": ("torchscript", True),
    "dbconformer_test": ("torchscript", False),
    "ecapa_tdnn_test": ("torchscript", False),
}
# ChannelViT's default position-embedding resampling (DINO's fractional bicubic scale factor) is
# computed differently by ONNX Resize; with pos_embed_resample="if_needed" it exports exactly.
ONNX_KWARGS = {"channelvit_test": {"pos_embed_resample": "if_needed"}}
ONNX["channelvit_test"] = ("torchscript", True)

# dynamo: the data-dependent key-mask branch (encoders/mvpformer.py); tracing: a torch.nn.functional.pad
# whose sizes are computed from tensor shapes (the relative-position terms), which ONNX Pad cannot take
ONNX_FAILS = {"mvpformer_test": "Pad"}

TORCH_EXPORT = {"softs_test": True, "gat_test": True}  # family -> dynamic channel axis
TORCH_EXPORT_FAILS = {
    "channelvit_test": "bool(mask.all()) fast path in chanformer/nn/patch_embed.py",
    "chadavit_test": "bool(mask.all()) fast path in chanformer/nn/patch_embed.py",
    "mvpformer_test": "bool(mask.all()) in MVPFormer's key mask (encoders/mvpformer.py)",
    "dbconformer_test": "montage validation bool(batch.mask.all()) in DBConformer.montage_values",
    "ecapa_tdnn_test": "layout fast path bool(batch.mask.all()) in ECAPA_TDNN._features",
}


def test_every_family_is_in_the_table():
    assert set(FAMILIES) == set(ONNX) | set(ONNX_FAILS) == set(TORCH_EXPORT) | set(TORCH_EXPORT_FAILS)


@pytest.mark.parametrize("name", FAMILIES)
def test_flat_encoder_matches_the_encoder_whatever_the_padding_holds(name):
    enc = create_encoder(name).eval()
    batch = enc.example_batch(batch_size=2)
    flat = FlatEncoder(enc, coords=batch.coords is not None, lengths=batch.lengths is not None, sfreq=batch.sfreq).eval()
    dirty = batch.values.clone()
    dirty[~batch.mask] = float("nan")
    args = list(flatten_batch(batch, flat))
    args[0] = dirty
    with torch.no_grad():
        torch.testing.assert_close(flat(*args), enc(batch), rtol=0, atol=0)


def test_check_inputs_runs_the_contract_outside_the_graph():
    enc = create_encoder("softs_test")
    batch = enc.example_batch(batch_size=2)
    empty = ChannelBatch(batch.values, batch.channel_ids, torch.zeros_like(batch.mask))
    with pytest.raises(EmptySampleError):
        check_inputs(enc, empty)


@pytest.mark.parametrize("name", sorted(ONNX))
def test_onnx_round_trip(name, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime (pip install 'chanformer[export]')")
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (pip install 'chanformer[export]')")
    enc = create_encoder(name, **ONNX_KWARGS.get(name, {})).eval()
    exporter, dyn_channels = ONNX[name]
    path = tmp_path / f"{name}.onnx"
    report = export_onnx(enc, path)
    assert (report.exporter, report.dynamic_channels, report.dynamic_batch) == (exporter, dyn_channels, True)
    assert report.max_abs_error is not None and report.max_abs_error < 1e-4
    # batch sizes 2, 3 and 1 were checked, and one channel fewer where the channel axis is dynamic
    assert {s[0] for s in report.checked_shapes} == {1, 2, 3}
    assert (len({s[1] for s in report.checked_shapes}) > 1) == dyn_channels
    # the file itself (not only the bytes checked before writing) runs and carries its metadata
    batch = enc.example_batch(batch_size=3, seed=5)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(path, batch), enc(batch).numpy(), atol=1e-4, rtol=1e-4)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["chanformer.exporter"] == exporter and '"name": "' + name + '"' in meta["chanformer.encoder"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("name", sorted(ONNX_FAILS))
def test_onnx_failures_are_summarised(name, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    enc = create_encoder(name).eval()
    with pytest.raises(ExportError, match=f"dynamo: .*torchscript: .*{ONNX_FAILS[name]}"):
        export_onnx(enc, tmp_path / "m.onnx", check=False)
    assert not list(tmp_path.iterdir())


def test_channelvit_default_resampling_is_reported_as_a_mismatch(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime")
    enc = create_encoder("channelvit_test").eval()
    path = tmp_path / "vit.onnx"
    with pytest.raises(ExportMismatchError, match="differ from PyTorch"):
        export_onnx(enc, path, exporter="torchscript")
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing written, not even a temporary


@pytest.mark.parametrize("name", sorted(TORCH_EXPORT))
def test_torch_export_round_trip(name, tmp_path):
    enc = create_encoder(name).eval()
    path = tmp_path / f"{name}.pt2"
    report = export_torch(enc, path)
    assert report.dynamic_channels == TORCH_EXPORT[name] and report.max_abs_error < 1e-5
    module, meta = load_torch(path)
    assert meta["chanformer.inputs"] == ["values", "channel_ids", "mask"]
    batch = enc.example_batch(batch_size=4, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(module(*flatten_batch(batch)), enc(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TORCH_EXPORT_FAILS))
def test_torch_export_failures_name_the_line(name, tmp_path):
    """The families that torch.export refuses still do (update docs/export.md when one starts to export)."""
    enc = create_encoder(name).eval()
    with pytest.raises(ExportError, match=r"torch.export failed .*File .*chanformer/"):
        export_torch(enc, tmp_path / "m.pt2", check=False)
    assert not list(tmp_path.iterdir())


def test_static_axes_and_bad_arguments(tmp_path):
    enc = create_encoder("softs_test").eval()
    report = export_torch(enc, tmp_path / "static.pt2", dynamic_batch=False, dynamic_channels=False)
    assert report.checked_shapes == [tuple(enc.example_batch().values.shape)]
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(enc, tmp_path / "x.onnx", exporter="tf")
    with pytest.raises(TypeError, match="Encoder"):
        export_torch(torch.nn.Linear(2, 2), tmp_path / "x.pt2")  # type: ignore[arg-type]
