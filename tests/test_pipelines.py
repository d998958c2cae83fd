"""From a raw recording to an embedding in one call: input contracts, model cards, channel aliases,
ChannelBatch.from_mne(on_unknown=...), Pipeline on real EEG/microscopy/audio files, Hub ids offline,
`chanformer embed`, and the README's "Embed your own recording" lines."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest
import torch
import xarray as xr

from chanformer import ChannelBatch
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError, eeg_1005_vocab
from chanformer.contract import InputContract
from chanformer.encoders import create_encoder
from chanformer.hub import ModelCard, load_input_contract, load_pretrained, read_model_card, save_pretrained, update_model_card
from chanformer.pipelines import Pipeline

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
EEG = SHARED / "eeg-formats"
EDF_TYPES = EEG / "EDF" / "chtypes_edf.edf"
BDF = EEG / "BDF" / "test_bdf_stim_channel.bdf"
NK = EEG / "NihonKohden" / "MB0400FU.EEG"
HUMAN = SHARED / "microscopy-cellprofiler" / "ExampleHuman" / "images"
WAV = SHARED / "voicebank-pairs" / "clean" / "p287_001.wav"
EEG_19 = [f"eeg/{n}" for n in "Fp1 Fp2 F3 F4 C3 C4 P3 P4 O1 O2 F7 F8 T7 T8 P7 P8 Fz Cz Pz".split()]

needs_data = pytest.mark.skipif(not EEG.is_dir(), reason="shared/data is not beside the checkout")


def eeg_model(folder: Path, **contract: object) -> Path:
    """A tiny SOFTS encoder over 2-s windows at 128 Hz, band-passed 1-40 Hz, common average."""
    torch.manual_seed(0)
    kw: dict = dict(modality="eeg", channels=EEG_19, key_prefix="eeg/", sfreq=128, l_freq=1.0, h_freq=40.0,
                    reference="average", window_s=2.0, n_times=256, units="V")  # fmt: skip
    kw.update(contract)
    enc = create_encoder("softs_test", seq_len=int(kw["n_times"]))
    return save_pretrained(enc, folder, vocab=eeg_1005_vocab(), input_contract=InputContract(**kw))


def cells_model(folder: Path) -> Path:
    """A tiny ChannelViT over 32-pixel tiles of three stains, with percentile statistics and aliases."""
    torch.manual_seed(0)
    vocab = ChannelVocab("cells", [Channel(k, kind="stain") for k in ("stain/DNA", "stain/PH3", "stain/CellBody")])
    enc = create_encoder("channelvit_test", img_size=32, num_channels=3)
    stats = {"stain/DNA": [2.0, 60.0], "stain/PH3": [1.0, 30.0], "stain/CellBody": [3.0, 80.0]}
    contract = InputContract(modality="image", channels=vocab.keys, key_prefix="stain/", tile_size=32,
                             normalizer={"method": "percentile", "stats": stats}, units="normalised",
                             aliases={"Hoechst": "stain/DNA", "DAPI": "stain/DNA"})  # fmt: skip
    return save_pretrained(enc, folder, vocab=vocab, input_contract=contract)


def speaker_model(folder: Path) -> Path:
    torch.manual_seed(0)
    enc = create_encoder("ecapa_tdnn_test")
    contract = InputContract(modality="audio", channels=["mic/0"], key_prefix="mic/", sfreq=16000, units="full scale",
                             features={"fbank": {"sample_rate": 16000, "n_mels": 20}, "normalise": "sentence_mean"})  # fmt: skip
    return save_pretrained(enc, folder, input_contract=contract)


# -- the contract ------------------------------------------------------------------------------
def test_contract_round_trips_through_json_and_refuses_nonsense():
    c = InputContract(modality="eeg", channels=EEG_19, sfreq=250, l_freq=0.5, h_freq=45, reference="average",
                      window_s=4, stride_s=2, n_times=1000, alignment="euclidean", scale=1e5, units="V",
                      normalizer={"method": "meanstd", "stats": {"eeg/C3": [0.0, 2.0]}}, tile_size=None,
                      features={"n_fft": 512}, aliases={"EEG 1": "eeg/C3"}, picks=["eeg"])  # fmt: skip
    text = json.dumps(c.to_json())
    assert InputContract.from_json(json.loads(text)) == c
    assert "tile_size" not in c.to_json()  # defaults are left out
    for bad in (dict(modality="fmri"), dict(reference="linked"), dict(sfreq=-1), dict(l_freq=40, h_freq=1),
                dict(n_times=0), dict(normalizer={"stats": {"eeg/C3": [0.0, float("nan")]}})):  # fmt: skip
        with pytest.raises(ValueError):
            InputContract(**bad)
    with pytest.warns(UserWarning, match="future_field"):
        later = InputContract.from_json({"version": 9, "sfreq": 100, "future_field": 1})
    assert later.extra == {"future_field": 1} and later.sfreq == 100.0


def test_save_pretrained_writes_contract_and_model_card(tmp_path):
    folder = eeg_model(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    assert load_input_contract(folder).sfreq == 128.0
    model = load_pretrained(folder)
    assert model.input_contract.channels == EEG_19 and model.input_contract.reference == "average"
    front, body = read_model_card((folder / "README.md").read_text())
    assert front["library_name"] == "chanformer" and front["model"] == "softs_test"
    for key in ("license", "intended_use", "limitations", "citation"):
        assert front[key]
    assert "sfreq: 128.0" in body
    update_model_card(folder, metrics={"test/acc": 0.75})
    front, body = read_model_card((folder / "README.md").read_text())
    assert front["metrics"] == {"test/acc": 0.75} and "| test/acc | 0.75 |" in body
    card = ModelCard(model="x", task="ClassificationTask", training_data="EEGDataModule(...)", metrics={"val/acc": 0.5},
                     license="cc-by-4.0")  # fmt: skip
    save_pretrained(create_encoder("softs_test"), tmp_path / "c", card=card)
    front, _ = read_model_card((tmp_path / "c" / "README.md").read_text())
    assert front["task"] == "ClassificationTask" and front["license"] == "cc-by-4.0" and front["metrics"] == {"val/acc": 0.5}
    assert "input_contract" not in json.loads((tmp_path / "c" / "config.json").read_text())
    assert load_pretrained(tmp_path / "c").input_contract is None


# -- channel names ------------------------------------------------------------------------------
def test_resolve_understands_recording_decorations_padding_and_synonyms():
    v = eeg_1005_vocab()
    cases = {"EEG Fp1-REF": "eeg/Fp1", "EEG Fp1-Ref": "eeg/Fp1", "Fc5.": "eeg/FC5", "C3..": "eeg/C3", "fp2": "eeg/Fp2",
             "EEG C4-LE": "eeg/C4", "POL Cz": "eeg/Cz", "O1-A2": "eeg/O1", "Fpz.": "eeg/Fpz"}  # fmt: skip
    assert {n: v.resolve(n, "eeg/") for n in cases} == cases
    modern = ChannelVocab("m", [Channel(k) for k in ("eeg/T7", "eeg/T8", "eeg/P7", "eeg/P8")])
    assert [modern.resolve(n, "eeg/") for n in ("T3", "EEG T4-Ref", "t5", "T6")] == modern.keys
    old = ChannelVocab("o", [Channel("eeg/T3")])
    assert old.resolve("T7", "eeg/") == "eeg/T3" and v.resolve("T3", "eeg/") == "eeg/T3"  # exact names first
    assert v.resolve("Hoechst", "stain/", {"hoechst": "eeg/Cz"}) == "eeg/Cz"
    assert v.resolve("ECG ECG1", "eeg/") is None and v.resolve("Status", "eeg/") is None


@needs_data
def test_from_mne_on_unknown_raise_warn_drop_on_a_real_edf():
    raw = mne.io.read_raw(EDF_TYPES, preload=True, verbose="error")
    vocab = eeg_1005_vocab()
    with pytest.raises(UnknownChannelError, match=r"ECG ECG1 \(not EEG \(name\)\).*on_unknown"):
        ChannelBatch.from_mne(raw, vocab)
    with pytest.warns(UserWarning, match="POL E"):
        warned = ChannelBatch.from_mne(raw, vocab, on_unknown="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = ChannelBatch.from_mne(raw, vocab, on_unknown="drop")
    assert torch.equal(batch.values, warned.values)
    keys = batch.vocab_keys(vocab)
    assert keys[:3] == ["eeg/Fp1", "eeg/Fp2", "eeg/F3"] and "eeg/T7" in keys
    dropped = batch.meta["dropped_channels"]
    assert dropped["ECG ECG1"] == "not EEG (name)" and dropped["SaO2 X9"] == "not EEG (name)"
    assert dropped["POL DC01"] == "not EEG (name)" and "not in vocabulary" in dropped["POL E"]
    assert len(keys) + len(dropped) == len(raw.ch_names)
    bdf = ChannelBatch.from_mne(mne.io.read_raw(BDF, preload=True, verbose="error"), vocab, on_unknown="drop")
    assert bdf.vocab_keys(vocab) == ["eeg/C3", "eeg/C4", "eeg/Cz"] and bdf.meta["dropped_channels"] == {"Status": "stim channel"}
    with pytest.raises(ValueError, match="on_unknown"):
        ChannelBatch.from_mne(raw, vocab, on_unknown="ignore")


# -- the pipeline -----------------------------------------------------------------------------------
@needs_data
def test_pipeline_embeds_real_eeg_files_and_reports_what_it_left_out(tmp_path):
    pipe = Pipeline.from_pretrained(eeg_model(tmp_path / "m"))
    out = pipe(EDF_TYPES)  # 5 s at 200 Hz -> 128 Hz -> two 2-s windows
    assert out.embeddings.shape == (2, 16) and np.isfinite(out.embeddings).all()
    assert out.channels == EEG_19 and out.positions["onset_s"].tolist() == [0.0, 2.0]
    assert out.dropped["ECG ECG1"] == "not EEG (name)"
    assert out.dropped["EEG A1-Ref"] == "eeg/A1 was not among the model's training channels"
    assert out.dropped["POL E"].startswith("unknown channel name")
    nk = pipe(NK)  # Nihon Kohden writes the old names T3..T6: they find T7, T8, P7, P8
    assert sorted(nk.channels) == sorted(EEG_19) and nk.dropped["X1"] == "bio channel"
    bdf = pipe(BDF)
    assert bdf.channels == ["eeg/C3", "eeg/C4", "eeg/Cz"] and bdf.dropped == {"Status": "stim channel"}
    assert "Status (stim channel)" in bdf.summary()


def test_pipeline_applies_the_stored_preprocessing_exactly(tmp_path):
    """numpy in at the model's rate, no filter: the embeddings are the model's on hand-cut windows."""
    pipe = Pipeline.from_pretrained(eeg_model(tmp_path / "m", l_freq=None, h_freq=None, stride_s=1.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 128 * 5)) * 1e-5
    names = ["EEG C3-REF", "c4", "Cz.", "ECG ECG1"]
    out = pipe(x, names, sfreq=128.0)
    assert out.channels == ["eeg/C3", "eeg/C4", "eeg/Cz"] and list(out.dropped) == ["ECG ECG1"]
    ref = x[:3] - x[:3].mean(0, keepdims=True)
    windows = np.stack([ref[:, s : s + 256] for s in range(0, 128 * 5 - 256 + 1, 128)])
    batch = ChannelBatch.from_numpy(windows.astype(np.float32), out.channels, pipe.vocab, sfreq=128.0)
    with torch.no_grad():
        expected = pipe.model(batch).numpy()
    np.testing.assert_allclose(out.embeddings, expected, rtol=1e-5, atol=1e-6)
    # the same signal as an xarray DataArray and as an mne Raw
    da = xr.DataArray(x, dims=("channel", "time"), coords={"channel": names}, attrs={"sfreq": 128.0})
    np.testing.assert_allclose(pipe(da).embeddings, expected, rtol=1e-5, atol=1e-6)
    info = mne.create_info(names, 128.0, ["eeg", "eeg", "eeg", "ecg"])
    raw_out = pipe(mne.io.RawArray(x, info, verbose="error"))
    np.testing.assert_allclose(raw_out.embeddings, expected, rtol=1e-5, atol=1e-6)
    assert raw_out.dropped == {"ECG ECG1": "ecg channel"}
    with pytest.raises(ValueError, match="sfreq"):
        pipe(x, names)
    with pytest.raises(ValueError, match="shorter than one 256-sample window"):
        pipe(x[:, :100], names, sfreq=128.0)
    with pytest.raises(ValueError, match="no channel of the input matches"):
        pipe(x[:1], ["Foo"], sfreq=128.0)


def test_pipeline_resamples_filters_and_leaves_out_flat_channels(tmp_path):
    pipe = Pipeline.from_pretrained(eeg_model(tmp_path / "m"))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 256 * 4)) * 1e-5
    x[2] = 0.0
    out = pipe(x, ["C3", "C4", "Pz"], sfreq=256.0)  # 4 s at 256 Hz -> 128 Hz: two windows
    assert out.embeddings.shape == (2, 16) and out.dropped == {"Pz": "flat (constant)"}


@needs_data
def test_pipeline_embeds_real_microscopy_fields(tmp_path):
    import tifffile

    pipe = Pipeline.from_pretrained(cells_model(tmp_path / "m"))
    files = sorted(HUMAN.glob("*.tif"))[:3]
    out = pipe(files, channel_names=["Hoechst", "PH3", "CellBody"])
    assert out.channels == ["stain/DNA", "stain/PH3", "stain/CellBody"] and not out.dropped
    assert out.embeddings.shape == (16 * 16, 32)  # 512 x 512 in 32-pixel tiles
    assert {int(v) for v in out.positions["y"]} == set(range(0, 512, 32))
    # a multichannel OME-TIFF with OME channel names (one the model does not know)
    planes = np.stack([tifffile.imread(f) for f in files])[:, :64, :64]
    ome = tmp_path / "field.ome.tif"
    names = {"Name": ["DAPI", "PH3", "CellBody", "Actin"]}
    tifffile.imwrite(ome, np.concatenate([planes, planes[:1]]), metadata={"axes": "CYX", "Channel": names})
    res = pipe(ome)
    assert res.channels == ["stain/DNA", "stain/PH3", "stain/CellBody"] and res.embeddings.shape == (4, 32)
    assert res.dropped["stain/Actin"].startswith("unknown channel name")
    # normalised tile by hand == the pipeline's row 0
    stats = pipe.contract.normalizer["stats"]
    tile = np.stack([(planes[c, :32, :32] - stats[k][0]) / stats[k][1] for c, k in enumerate(res.channels)])
    with torch.no_grad():
        expected = pipe.model(ChannelBatch.from_numpy(tile[None].astype(np.float32), res.channels, pipe.vocab)).numpy()
    np.testing.assert_allclose(res.embeddings[:1], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="smaller than the model's 32x32 tiles"):
        pipe(planes[:, :16, :16], ["DNA", "PH3", "CellBody"])


@needs_data
def test_pipeline_embeds_real_audio(tmp_path):
    pipe = Pipeline.from_pretrained(speaker_model(tmp_path / "m"))
    out = pipe(WAV)
    assert out.embeddings.shape == (1, 12) and out.channels == ["mic/0"] and np.isfinite(out.embeddings).all()
    import soundfile as sf

    wave, sr = sf.read(WAV, dtype="float32")
    np.testing.assert_allclose(pipe(wave, sfreq=float(sr)).embeddings, out.embeddings, rtol=1e-5, atol=1e-6)


def test_pipeline_refuses_what_it_cannot_embed(tmp_path):
    pipe = Pipeline.from_pretrained(eeg_model(tmp_path / "m"))
    with pytest.raises(TypeError, match="cannot embed a dict"):
        pipe({"a": 1})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot read EEG recording .*notes.txt"):  # an EEG model tries mne's readers
        pipe(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="unknown file type"):
        Pipeline(pipe.model, InputContract(channels=EEG_19))(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        pipe(tmp_path / "missing.edf")


def test_an_export_without_contract_still_embeds_by_channel_name(tmp_path):
    save_pretrained(create_encoder("softs_test", seq_len=64), tmp_path / "old", vocab=eeg_1005_vocab())
    with pytest.warns(UserWarning, match="no input contract"):
        pipe = Pipeline.from_pretrained(tmp_path / "old")
    out = pipe(np.random.default_rng(0).normal(size=(2, 64)), ["C3", "C4"], sfreq=100.0)
    assert out.embeddings.shape == (1, 16)


# -- Hugging Face Hub ids, offline ----------------------------------------------------------------
def test_hub_id_loads_from_a_local_hub_cache_offline(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    src = eeg_model(tmp_path / "src")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lab--tiny-eeg"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_pretrained("lab/tiny-eeg", cache_dir=tmp_path / "hub")
    assert model.input_contract.sfreq == 128.0
    pipe = Pipeline.from_pretrained("lab/tiny-eeg", cache_dir=tmp_path / "hub")
    x = np.random.default_rng(0).normal(size=(2, 256)) * 1e-5
    ref = Pipeline.from_pretrained(src)
    np.testing.assert_array_equal(pipe(x, ["C3", "C4"], sfreq=128.0).embeddings, ref(x, ["C3", "C4"], sfreq=128.0).embeddings)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        load_pretrained("lab/not-cached", cache_dir=tmp_path / "hub")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face Hub id"):
        load_pretrained(tmp_path / "no" / "such" / "folder")


# -- the command -------------------------------------------------------------------------------------
@needs_data
def test_embed_command_writes_zarr_and_parquet_atomically(tmp_path, capsys):
    import pandas as pd
    import pyarrow.parquet as pq
    import zarr

    from chanformer.cli.main import main

    model = eeg_model(tmp_path / "m")
    bad = tmp_path / "in" / "broken.edf"
    bad.parent.mkdir()
    bad.write_bytes(b"0       not an edf")
    out = tmp_path / "emb.zarr"
    code = main(["embed", str(model), str(EDF_TYPES), str(EEG / "BDF"), str(bad.parent), "--out", str(out)])
    assert code == 1  # the broken file is named and skipped; the others are written
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.edf" in err
    g = zarr.open_group(str(out), mode="r")
    assert g["embeddings"].shape == (2 + 5, 16)
    assert g["file"][:].tolist() == [0, 0, 1, 1, 1, 1, 1] and g["row"][:].tolist() == [0, 1, 0, 1, 2, 3, 4]
    attrs = dict(g.attrs)
    assert attrs["files"] == [str(EDF_TYPES), str(EEG / "BDF" / "test_bdf_stim_channel.bdf")]
    assert attrs["dropped"][str(EDF_TYPES)]["ECG ECG1"] == "not EEG (name)" and str(bad) in attrs["failed"]
    assert attrs["input_contract"]["sfreq"] == 128.0
    assert main(["embed", str(model), str(BDF), "--out", str(out)]) == 2  # exists: refuses without --overwrite
    assert main(["embed", str(model), str(BDF), "--out", str(out), "--overwrite"]) == 0
    assert zarr.open_group(str(out), mode="r")["embeddings"].shape == (5, 16)
    pq_out = tmp_path / "emb.parquet"
    assert main(["embed", str(model), str(BDF), "--out", str(pq_out)]) == 0
    df = pd.read_parquet(pq_out)
    assert len(df) == 5 and df["file"].unique().tolist() == [str(BDF)] and "emb_15" in df.columns
    meta = json.loads(pq.read_schema(pq_out).metadata[b"chanformer"])
    assert meta["dropped"][str(BDF)] == {"Status": "stim channel"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "emb.zarr", "in", "m"]  # no temporaries


# -- task exports carry the datamodule's contract and the run's metrics ---------------------------
@needs_data
def test_datamodules_describe_their_preprocessing():
    from chanformer.datasets.eeg.windows import EEGDataModule
    from chanformer.datasets.imaging.datamodules import ImageDataModule

    dm = EEGDataModule([str(EDF_TYPES)], window_s=1.0, resample=100.0, l_freq=1.0, h_freq=30.0, reference="average",
                       on_unknown="drop")  # fmt: skip
    c = dm.input_contract()
    got = (c.modality, c.sfreq, c.l_freq, c.h_freq, c.reference, c.window_s, c.n_times)
    assert got == ("eeg", 100.0, 1.0, 30.0, "average", 1.0, 100)
    assert "eeg/Fp1" in c.channels and "eeg/Oz" not in c.channels and c.units == "V"
    InputContract.from_json(json.loads(json.dumps(c.to_json())))
    cp = ImageDataModule(source="cellprofiler", data_root=str(SHARED / "microscopy-cellprofiler"), tile=32, batch_size=4)
    ic = cp.input_contract()
    assert ic.tile_size == 32 and ic.modality == "image" and ic.key_prefix == "stain/"
    assert set(ic.normalizer["stats"]) == set(cp.vocab.keys) and ic.aliases["DAPI"] == "stain/DNA"


def test_fit_exports_contract_and_card_with_the_run_metrics(tmp_path):
    import lightning as L

    from chanformer.datasets.imaging.datamodules import ImageDataModule
    from chanformer.tasks import ClassificationTask

    dm = ImageDataModule(num_train=8, num_val=4, num_test=4, image_size=16, batch_size=4)
    task = ClassificationTask(encoder="channelvit_test", encoder_kwargs={"patch_size": 8}, data_spec=dm.spec,
                              export_dir=str(tmp_path / "export"))  # fmt: skip
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm, verbose=False)
    folder = tmp_path / "export"
    contract = load_input_contract(folder)
    assert contract.modality == "image" and contract.image_size == 16 and contract.channels == dm.vocab.keys
    front, _ = read_model_card((folder / "README.md").read_text())
    assert front["task"] == "ClassificationTask" and front["training_data"].startswith("ImageDataModule(")
    assert "val/loss" in front["metrics"] and "test/loss" in front["metrics"]
    out = Pipeline.from_pretrained(folder)(np.random.default_rng(0).normal(size=(5, 16, 16)), dm.vocab.keys)
    assert out.embeddings.shape == (1, task.encoder.embed_dim)


# -- the README's lines, exactly ------------------------------------------------------------------------
def _readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Embed your own recording", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@needs_data
def test_readme_embed_your_own_recording_lines_run(tmp_path, monkeypatch, capsys):
    blocks = _readme_blocks()
    assert len(blocks) == 3 and all(len(b.strip().splitlines()) <= 5 for b in blocks)
    work = tmp_path / "main"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    os.symlink(SHARED, tmp_path / "shared" / "data")
    eeg_model(work / "eeg-model")
    cells_model(work / "cells-model")
    speaker_model(work / "speaker-model")
    monkeypatch.chdir(work)
    shapes = []
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own lines
        shapes.append(scope["out"].embeddings.shape)
    assert shapes == [(2, 16), (256, 32), (1, 12)]
    printed = capsys.readouterr().out
    assert "not EEG (name)" in printed


# -- recipes' datamodules carry their preprocessing into the export -----------------------------------
LIBRI = SHARED / "librispeech-subset" / "librispeech_test-other"


def _quick_trainer(tmp_path: Path):
    import lightning as L

    return L.Trainer(max_steps=1, limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip


@pytest.mark.skipif(not LIBRI.is_dir(), reason="shared/data/librispeech-subset is not beside the checkout")
def test_speaker_export_pipeline_embeds_a_file_as_the_task_embeds_it(tmp_path):
    """speaker-ecapa's datamodule + task, one step: Pipeline(export)(file) == the task's embedding of
    the same utterance through the datamodule (resample, centre crop or tiling, -25 dBFS, Fbank)."""
    from chanformer.datasets.speech.datamodules import SpeakerVerificationDataModule
    from chanformer.tasks.speaker import SpeakerVerificationTask

    spk = sorted(p.name for p in LIBRI.iterdir() if p.is_dir())[:2]
    files = [f"{s}/{sorted((LIBRI / s).glob('*.flac'))[0].name}" for s in spk]
    trials = tmp_path / "trials.txt"
    trials.write_text(f"0 {files[0]} {files[1]}\n1 {files[0]} {files[0]}\n")
    train = tmp_path / "train"
    for s in spk:  # two speakers, two utterances each
        (train / s).mkdir(parents=True)
        for f in sorted((LIBRI / s).glob("*.flac"))[:2]:
            os.symlink(f, train / s / f.name)
    results = {}
    for eval_seconds in (3.0, 40.0):  # a centre crop; an utterance shorter than the window (tiled)
        dm = SpeakerVerificationDataModule(source="folders", train_dir=str(train), test_trials=str(trials),
                                           trial_root=str(LIBRI), crop_seconds=0.5, eval_seconds=eval_seconds,
                                           augment=False, batch_size=2)  # fmt: skip
        torch.manual_seed(0)
        task = SpeakerVerificationTask(encoder="ecapa_tdnn_test", data_spec=dm.spec, score_norm="none",
                                       export_dir=str(tmp_path / f"export{eval_seconds:g}"))  # fmt: skip
        _quick_trainer(tmp_path).fit(task, datamodule=dm)
        contract = load_input_contract(tmp_path / f"export{eval_seconds:g}")
        assert contract.crop == "centre" and contract.pad == "wrap" and contract.loudness_db == -25.0
        assert contract.features["fbank"]["n_mels"] == 20 and contract.features["normalise"] == "sentence_mean"
        assert contract.sfreq == 16000.0 and contract.window_s == eval_seconds and contract.channels == ["mic/0"]
        pipe = Pipeline.from_pretrained(tmp_path / f"export{eval_seconds:g}")
        task.eval()
        for i, f in enumerate(dm.test_trials.files):
            with torch.no_grad():
                expected = task(ChannelBatch.collate([dm.test_dataset[i]])).numpy()
            out = pipe.embed(LIBRI / f)
            assert out.embeddings.shape == (1, 12)
            np.testing.assert_allclose(out.embeddings, expected, rtol=1e-4, atol=1e-5)
            assert torch.allclose(torch.from_numpy(out.embeddings), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
            results[eval_seconds, i] = out.embeddings
    assert not np.allclose(results[3.0, 0], results[40.0, 0])  # the window really differs


def test_uea_export_pipeline_on_raw_numpy_matches_the_normalised_test_sample(tmp_path):
    """uea-softs' datamodule (BasicMotions, resampled to 50 steps) + ClassificationTask, one step:
    Pipeline(export)(raw case, channel names) == the encoder on the datamodule's test sample."""
    from chanformer.datasets.timeseries.datamodules import UEADataModule
    from chanformer.tasks import ClassificationTask

    dm = UEADataModule("BasicMotions", batch_size=8, resample_to=50)
    torch.manual_seed(0)
    task = ClassificationTask(encoder="softs_test", encoder_kwargs={"seq_len": dm.length}, data_spec=dm.spec,
                              export_dir=str(tmp_path / "export"))  # fmt: skip
    _quick_trainer(tmp_path).fit(task, datamodule=dm)
    c = load_input_contract(tmp_path / "export")
    assert (c.modality, c.resample_to, c.n_times, c.crop, c.pad, c.sfreq) == ("series", 50, 50, "start", "edge", None)
    assert list(c.normalizer["stats"]) == dm.channel_keys
    np.testing.assert_allclose([c.normalizer["stats"][k][1] for k in dm.channel_keys], dm.stats.std)
    pipe = Pipeline.from_pretrained(tmp_path / "export")
    raw = dm._data["test"]  # resampled cases; the pipeline gets the file's own 100 steps
    from chanformer.datasets.timeseries.ts_format import read_ts

    original = read_ts(dm.paths["test"])
    names = [k.split("/", 1)[1] for k in dm.channel_keys]
    task.encoder.eval()
    for i in (0, 17):
        assert original.series[i].shape[-1] == 100 and raw.series[i].shape[-1] == 50
        out = pipe(original.series[i], names)
        with torch.no_grad():
            expected = task.encoder(ChannelBatch.collate([dm.test_dataset[i]])).numpy()
        assert out.channels == dm.channel_keys and out.embeddings.shape == expected.shape
        assert torch.allclose(torch.from_numpy(out.embeddings), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
    # channels given in another order are put back by name
    perm = [3, 1, 0, 5, 4, 2]
    out = pipe(original.series[0][perm], [names[p] for p in perm])
    with torch.no_grad():
        expected = task.encoder(ChannelBatch.collate([dm.test_dataset[0]])).numpy()
    assert torch.allclose(torch.from_numpy(out.embeddings), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)


def test_forecasting_datamodule_contract_keys_train_scaler_by_channel():
    from chanformer.datasets.timeseries.datamodules import ForecastingDataModule

    dm = ForecastingDataModule("macrodata", seq_len=12, horizon=4)
    c = dm.input_contract()
    assert c.modality == "series" and c.n_times == 12 and c.extra["horizon"] == 4 and "period_s" not in c.extra
    assert list(c.normalizer["stats"]) == dm.channel_keys
    assert [v[0] for v in c.normalizer["stats"].values()] == pytest.approx(dm.stats.mean.tolist())
    assert InputContract.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_public_imaging_datamodule_contract_round_trips_and_resolves_geotiff_band_names(tmp_path):
    import importlib.util

    from chanformer.datasets.imaging.eurosat import EuroSATDataModule

    spec = importlib.util.spec_from_file_location("eurosat_generate", REPO / "tests" / "data" / "eurosat" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    root = gen.generate(tmp_path / "eurosat")
    dm = EuroSATDataModule(str(root), bands=["B02", "B03", "B04", "B08"], batch_size=4)
    c = dm.input_contract()
    assert c.modality == "image" and c.sensor == "sentinel2" and c.image_size == 64 and c.key_prefix == "s2/"
    assert c.channels == ["s2/B02", "s2/B03", "s2/B04", "s2/B08"] and set(c.normalizer["stats"]) == set(c.channels)
    norm = dm.train_dataset.normalizer
    assert c.normalizer == norm.to_json()
    torch.manual_seed(0)
    enc = create_encoder("channelvit_test", img_size=64, num_channels=len(dm.vocab))
    folder = save_pretrained(enc, tmp_path / "m", vocab=dm.vocab, input_contract=c)
    assert load_input_contract(folder) == c
    pipe = Pipeline.from_pretrained(folder)
    raw = dm.test_dataset.raw(0)
    out = pipe(raw, ["B2", "band_3", "B4", "B08"])  # band spellings resolve through the sensor
    assert out.channels == c.channels and out.embeddings.shape == (1, enc.embed_dim)
    with torch.no_grad():
        expected = enc(ChannelBatch.collate([dm.test_dataset[0]])).numpy()
    np.testing.assert_allclose(out.embeddings, expected, rtol=1e-4, atol=1e-5)
