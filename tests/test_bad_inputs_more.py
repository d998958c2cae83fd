"""Bad-input matrix, second half: speech files, the command line and its configs, ``--ckpt_path``
checkpoints, pretrained folders and models (tests/test_bad_inputs.py holds the time-series, EEG,
imaging and WSI readers). Every case must raise a named error (the expected type, and a message
naming the file or argument); CLI cases must print exactly one ``chanformer: error:`` line and
exit 2.

Plus the behaviours the CLI cases rely on: a checkpoint of another model is refused unless
``--ckpt_overrides_config=true`` (then a warning names what it replaces), ``max_epochs=-1``
warns, and a non-finite value in a batch is traced to its file and line.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from chanformer.batch import ChannelBatch, ChannelIdError, ChannelSample, EmptySampleError
from chanformer.cli.main import main
from chanformer.datasets.speech.audio import AudioReadError, read_audio
from chanformer.datasets.speech.datasets import NoisyCleanDataset, SpeakerFolderDataset
from chanformer.datasets.speech.trials import VerificationTrials
from chanformer.encoders import create_encoder
from chanformer.hub import load_pretrained, save_pretrained
from chanformer.hub.pretrained import PretrainedFolderError, PretrainedMismatchError

TINY = str(Path(__file__).parent / "configs" / "tiny-classify.yaml")


class CliError(Exception):
    """The one ``chanformer: error:`` line of a CLI run that exited 2."""


# -- builders ----------------------------------------------------------------------------------
def cli(*args: str) -> Callable[[Path], object]:
    """Run ``chanformer ARGS`` in-process (``{tmp}`` in an argument is the test's folder)."""

    def run(tmp: Path) -> object:
        argv = [a.replace("{tmp}", str(tmp)) for a in args]
        if argv[0] in ("fit", "validate", "test", "predict"):
            argv.append(f"--trainer.default_root_dir={tmp / 'run'}")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("chanformer: error:")]
        if code != 0:
            assert code == 2 and len(lines) == 1, f"exit {code}, error lines {lines}:\n{err.getvalue()[-2000:]}"
            assert "Traceback" not in err.getvalue()
            raise CliError(lines[0])
        return code

    return run


def config(text: str, name: str = "c.yaml") -> Callable[[Path], object]:
    """Write ``text`` as a config in the test's folder, then ``chanformer fit --config`` it."""

    def run(tmp: Path) -> object:
        (tmp / name).write_text(text)
        return cli("fit", "--config", str(tmp / name))(tmp)

    return run


def tiny_with(extra: str) -> str:
    return Path(TINY).read_text() + extra


def wav(tmp: Path, x: np.ndarray, sr: int = 16000, name: str = "a.wav", subtype: str | None = None) -> Path:
    path = tmp / name
    sf.write(str(path), x.T if x.ndim == 2 else x, sr, subtype=subtype)
    return path


def tone(n: int = 8000, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(n) / 16000
    return np.stack([amp * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def wav_header(channels: int, sr: int = 16000, bits: int = 16, data: bytes = b"\x00\x00" * 100) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_bytes(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def audio(name: str, **kw: object) -> Callable[[Path], object]:
    return lambda tmp: read_audio(tmp / name, **kw)  # type: ignore[arg-type]


def speakers(tmp: Path, layout: dict[str, list[str]]) -> Path:
    root = tmp / "spk"
    for spk, files in layout.items():
        (root / spk).mkdir(parents=True, exist_ok=True)
        for f in files:
            wav(root / spk, tone(), name=f)
    return root


def encoder_folder(tmp: Path, **kw: object) -> Path:
    enc = create_encoder("softs_test", **{"seq_len": 16, "num_channels": 3, "d_model": 8, **kw})  # type: ignore[arg-type]
    return save_pretrained(enc, tmp / "enc")


def pretrained(edit: Callable[[Path], object]) -> Callable[[Path], object]:
    """Save a tiny encoder, damage its folder with ``edit``, load it back."""

    def run(tmp: Path) -> object:
        folder = encoder_folder(tmp)
        edit(folder)
        return load_pretrained(folder)

    return run


def edit_config(change: Callable[[dict], object]) -> Callable[[Path], object]:
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        change(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))

    return edit


def other_weights(folder: Path) -> None:
    """Replace the weights with those of a wider encoder (config.json unchanged)."""
    wider = encoder_folder(folder.parent / "other", d_model=12)
    (folder / "model.safetensors").write_bytes((wider / "model.safetensors").read_bytes())


def drop_key(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    state.pop(sorted(state)[0])
    save_file(state, str(folder / "model.safetensors"))


def batch(values: torch.Tensor, ids: list[list[int]] | None = None, mask: torch.Tensor | None = None) -> ChannelBatch:
    b, c = values.shape[:2]
    ids_t = torch.tensor(ids) if ids is not None else torch.arange(c).repeat(b, 1)
    return ChannelBatch(values=values, channel_ids=ids_t, mask=torch.ones(b, c, dtype=torch.bool) if mask is None else mask)


def encode(make: Callable[[], ChannelBatch], name: str = "softs_test", **kw: object) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        enc = create_encoder(name, **{"seq_len": 16, "num_channels": 3, "d_model": 8, **kw})  # type: ignore[arg-type]
        return enc(make())

    return run


# -- the matrix --------------------------------------------------------------------------------
CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    # speech: WAV files
    (
        "wav-empty",
        lambda tmp: read_audio(wav(tmp, np.zeros((1, 0), np.float32))),
        AudioReadError,
        r"a\.wav is empty \(0 samples\)",
    ),
    (
        "wav-wrong-rate",
        lambda tmp: read_audio(wav(tmp, tone(), sr=8000), 16000, resample_to_rate=False),
        AudioReadError,
        r"a\.wav has sample rate 8000 Hz, expected 16000 Hz",
    ),
    (
        "wav-nan",
        lambda tmp: read_audio(
            wav(tmp, np.where(np.arange(8000) == 99, np.nan, tone()[0])[None].astype(np.float32), subtype="FLOAT")
        ),
        AudioReadError,
        r"a\.wav holds non-finite samples",
    ),
    (
        "wav-inf",
        lambda tmp: read_audio(
            wav(tmp, np.where(np.arange(8000) == 5, np.inf, tone()[0])[None].astype(np.float32), subtype="FLOAT")
        ),
        AudioReadError,
        r"a\.wav holds non-finite",
    ),
    (
        "wav-truncated-header",
        lambda tmp: read_audio(write_bytes(tmp, "cut.wav", wav_header(1)[:30])),
        AudioReadError,
        r"cannot read audio file .*cut\.wav",
    ),
    (
        "wav-zero-channels",
        lambda tmp: read_audio(write_bytes(tmp, "none.wav", wav_header(0))),
        AudioReadError,
        r"cannot read audio file .*none\.wav",
    ),
    ("wav-text", lambda tmp: read_audio(write_bytes(tmp, "notes.wav", b"just some text\n" * 20)), AudioReadError, r"notes\.wav"),
    ("wav-missing", audio("gone.wav"), AudioReadError, r"audio file not found: .*gone\.wav"),
    (
        "wav-stereo-for-mono",
        lambda tmp: read_audio(wav(tmp, tone(channels=2)), channels=1),
        AudioReadError,
        r"a\.wav is stereo but mono audio was expected",
    ),
    ("wav-silent", lambda tmp: read_audio(wav(tmp, np.zeros((1, 4000), np.float32))), AudioReadError, r"a\.wav is silent"),
    (
        "wav-clipped",
        lambda tmp: read_audio(wav(tmp, np.sign(tone()) * 1.0), on_clip="error"),
        AudioReadError,
        r"a\.wav is clipped",
    ),
    (
        "speech-folder-missing",
        lambda tmp: SpeakerFolderDataset(tmp / "nowhere"),
        FileNotFoundError,
        r"speaker folder not found: .*nowhere",
    ),
    (
        "speech-speaker-without-audio",
        lambda tmp: (speakers(tmp, {"alice": ["1.wav"]}) / "bob").mkdir() or SpeakerFolderDataset(tmp / "spk"),
        ValueError,
        r"speaker folder .*spk/bob holds no",
    ),
    (
        "speech-trial-bad-line",
        lambda tmp: VerificationTrials(write_bytes(tmp, "trials.txt", b"2 a.wav\n"), root=tmp),
        ValueError,
        r"trials\.txt:\d+: expected 'label enrol test'",
    ),
    (
        "speech-trial-missing-file",
        lambda tmp: VerificationTrials(write_bytes(tmp, "trials.txt", b"1 a.wav b.wav\n"), root=tmp),
        FileNotFoundError,
        r"trials\.txt:1: trial names a missing audio file .*a\.wav",
    ),
    (
        "speech-noisy-without-clean",
        lambda tmp: (
            (tmp / "noisy").mkdir(),
            (tmp / "clean").mkdir(),
            wav(tmp / "noisy", tone(), name="x.wav"),
            NoisyCleanDataset(tmp / "noisy", tmp / "clean"),
        ),
        FileNotFoundError,
        r"noisy/x\.wav has no counterpart .*clean/x\.wav",
    ),
    # command line and configs
    (
        "cli-unknown-recipe",
        cli("fit", "--config", "no-such-recipe"),
        CliError,
        r"--config 'no-such-recipe': no such file, and no recipe",
    ),
    ("cli-unknown-command", cli("frobnicate"), CliError, r"unknown command 'frobnicate'"),
    ("cli-empty-yaml", config(""), CliError, r"--config .*c\.yaml: the file is empty"),
    ("cli-comments-only-yaml", config("# nothing here\n"), CliError, r"--config .*c\.yaml: the file is empty"),
    ("cli-list-yaml", config("- 1\n- 2\n"), CliError, r"--config .*c\.yaml: expected a mapping .* got a YAML list"),
    ("cli-bad-yaml", config("trainer: [max_epochs: 1\n"), CliError, r"--config .*c\.yaml: not valid YAML \(line 2, column 1"),
    ("cli-tab-yaml", config("trainer:\n\tmax_epochs: 1\n"), CliError, r"--config .*c\.yaml: not valid YAML \(line 2"),
    (
        "cli-binary-yaml",
        lambda tmp: cli("fit", "--config", str(write_bytes(tmp, "c.yaml", b"\xff\xfe\x00bad")))(tmp),
        CliError,
        r"--config .*c\.yaml: cannot be read as text",
    ),
    (
        "cli-unknown-key",
        config(tiny_with("bogus_key: 3\n")),
        CliError,
        r"--bogus_key: `chanformer fit` has no such option \(config .*c\.yaml\)",
    ),
    ("cli-unknown-option", cli("fit", "--config", TINY, "--frobnicate=1"), CliError, r"unrecognized arguments: --frobnicate=1"),
    (
        "cli-unknown-model-arg",
        cli("fit", "--config", TINY, "--model.init_args.frobnicate=3"),
        CliError,
        r"--model\.init_args\.frobnicate: ClassificationTask has no such argument \(config .*tiny-classify\.yaml\)",
    ),
    (
        "cli-unknown-class",
        cli("fit", "--config", TINY, "--model.class_path=chanformer.tasks.Nope"),
        CliError,
        r"--model\.class_path: chanformer\.tasks\.Nope",
    ),
    (
        "cli-wrong-type-trainer",
        cli("fit", "--config", TINY, "--trainer.max_epochs=abc"),
        CliError,
        r"--trainer\.max_epochs: expected int \(given abc\)",
    ),
    (
        "cli-wrong-type-data",
        cli("fit", "--config", TINY, "--data.init_args.batch_size=big"),
        CliError,
        r"--data\.init_args\.batch_size: expected int \(given big\)",
    ),
    (
        "cli-negative-max-epochs",
        cli("fit", "--config", TINY, "--trainer.max_epochs=-3"),
        CliError,
        r"--trainer\.max_epochs=-3 \(config .*\): expected a positive number, or -1",
    ),
    (
        "cli-negative-max-steps",
        cli("fit", "--config", TINY, "--trainer.max_steps=-2"),
        CliError,
        r"--trainer\.max_steps=-2 .*expected a positive number",
    ),
    (
        "cli-negative-min-epochs",
        cli("fit", "--config", TINY, "--trainer.min_epochs=-1"),
        CliError,
        r"--trainer\.min_epochs=-1 .*expected 0 or more",
    ),
    (
        "cli-unknown-encoder",
        cli("fit", "--config", TINY, "--model.init_args.encoder=softz"),
        CliError,
        r"unknown encoder name 'softz'",
    ),
    (
        "cli-missing-data-root",
        cli("fit", "--config", TINY, "--data.init_args.root={tmp}/no-data"),
        CliError,
        r"root='.*no-data': no such folder",
    ),
    (
        "cli-unknown-dataset",
        cli("fit", "--config", TINY, "--data.init_args.name=NoSuchArchive"),
        CliError,
        r"dataset 'NoSuchArchive' \(TRAIN\) not found",
    ),
    (
        "cli-bad-batch-size",
        cli("fit", "--config", TINY, "--data.init_args.batch_size=0"),
        CliError,
        r"batch_size must be >= 1, got 0",
    ),
    # --ckpt_path checkpoints (a checkpoint of the tiny config is made once per module)
    (
        "ckpt-text-file",
        lambda tmp: cli("test", "--config", TINY, f"--ckpt_path={write_bytes(tmp, 'n.ckpt', b'hello')}")(tmp),
        CliError,
        r"--ckpt_path .*n\.ckpt: not a PyTorch checkpoint",
    ),
    (
        "ckpt-missing",
        cli("test", "--config", TINY, "--ckpt_path={tmp}/gone.ckpt"),
        CliError,
        r"--ckpt_path .*gone\.ckpt: no such file",
    ),
    (
        "ckpt-url",
        cli("test", "--config", TINY, "--ckpt_path=https://example.invalid/m.ckpt"),
        CliError,
        r"--ckpt_path 'https://example\.invalid/m\.ckpt': remote",
    ),
    (
        "ckpt-not-a-dict",
        lambda tmp: (torch.save([1, 2], tmp / "l.ckpt"), cli("test", "--config", TINY, f"--ckpt_path={tmp / 'l.ckpt'}")(tmp)),
        CliError,
        r"--ckpt_path .*l\.ckpt: not a Lightning checkpoint",
    ),
    (
        "ckpt-truncated",
        lambda tmp: cli("test", "--config", TINY, f"--ckpt_path={_cut_checkpoint(tmp)}")(tmp),
        CliError,
        r"--ckpt_path .*cut\.ckpt: not a readable PyTorch checkpoint",
    ),
    (
        "ckpt-other-encoder-size",
        lambda tmp: cli("test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--model.init_args.encoder_kwargs.d_model=32")(
            tmp
        ),
        CliError,
        r"--ckpt_path .*last\.ckpt holds ClassificationTask\(encoder='softs_test'\) but the config's model is "
        r".*encoder_kwargs\.d_model 16 vs 32.*--ckpt_overrides_config=true",
    ),
    (
        "ckpt-other-encoder",
        lambda tmp: cli("test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--model.init_args.encoder=softs_small")(tmp),
        CliError,
        r"--ckpt_path .*last\.ckpt holds ClassificationTask\(encoder='softs_test'\) "
        r"but the config's model is ClassificationTask\(encoder='softs_small'\)",
    ),
    (
        "ckpt-other-head-option",
        lambda tmp: cli("test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--model.init_args.head_dropout=0.5")(tmp),
        CliError,
        r"--ckpt_path .*last\.ckpt .*head_dropout 0\.0 vs 0\.5",
    ),
    (
        "ckpt-other-task-class",
        lambda tmp: cli(
            "test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--model.class_path=chanformer.tasks.ForecastingTask"
        )(tmp),
        CliError,
        r"--ckpt_path .*last\.ckpt holds ClassificationTask"
        r".*class chanformer\.tasks\.ClassificationTask vs chanformer\.tasks\.ForecastingTask",
    ),
    (
        "ckpt-tensors-do-not-fit",
        lambda tmp: cli(
            "test", "--config", TINY, f"--ckpt_path={_without_hparams(tmp)}", "--model.init_args.encoder_kwargs.d_model=32"
        )(tmp),
        CliError,
        r"--ckpt_path .*nohp\.ckpt: its tensors do not fit the config's model ClassificationTask\('softs_test'\): "
        r"shapes \(checkpoint vs model\): encoder\.\S+ \(16, ",
    ),
    # pretrained folders
    (
        "pretrained-no-config",
        pretrained(lambda f: (f / "config.json").unlink()),
        FileNotFoundError,
        r"enc/config\.json is missing",
    ),
    (
        "pretrained-no-weights",
        pretrained(lambda f: (f / "model.safetensors").unlink()),
        FileNotFoundError,
        r"enc/model\.safetensors is missing",
    ),
    ("pretrained-not-a-folder", lambda tmp: load_pretrained(tmp / "nothing"), FileNotFoundError, r"/nothing\b"),
    (
        "pretrained-corrupt-safetensors",
        pretrained(lambda f: (f / "model.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")),
        PretrainedFolderError,
        r"cannot read .*enc/model\.safetensors",
    ),
    (
        "pretrained-truncated-safetensors",
        pretrained(lambda f: _cut(f / "model.safetensors", 0.5)),
        PretrainedFolderError,
        r"cannot read .*enc/model\.safetensors",
    ),
    (
        "pretrained-config-not-json",
        pretrained(lambda f: (f / "config.json").write_text("{model: ")),
        PretrainedFolderError,
        r"enc/config\.json is not valid JSON",
    ),
    (
        "pretrained-config-a-list",
        pretrained(lambda f: (f / "config.json").write_text("[1, 2]")),
        PretrainedFolderError,
        r"enc/config\.json: expected a JSON object with a 'model'",
    ),
    (
        "pretrained-config-no-model",
        pretrained(edit_config(lambda c: c.pop("model"))),
        PretrainedFolderError,
        r"enc/config\.json: expected a JSON object with a 'model'",
    ),
    (
        "pretrained-config-weights-mismatch",
        pretrained(other_weights),
        PretrainedMismatchError,
        r"enc/model\.safetensors does not match the model in .*enc/config\.json: shapes \(weights vs config\) \[.*\(12,",
    ),
    (
        "pretrained-config-says-wider",
        pretrained(edit_config(lambda c: c["model"]["kwargs"].update(d_model=16))),
        PretrainedMismatchError,
        r"enc/model\.safetensors does not match the model in .*enc/config\.json: "
        r"shapes \(weights vs config\) \[.*\(8, .* vs \(16, ",
    ),
    (
        "pretrained-missing-tensor",
        pretrained(drop_key),
        PretrainedMismatchError,
        r"enc/model\.safetensors does not match .*missing \['",
    ),
    (
        "pretrained-newer-format",
        pretrained(edit_config(lambda c: c.update(format_version=99))),
        PretrainedFolderError,
        r"enc/config\.json: format_version 99 is newer",
    ),
    (
        "pretrained-format-not-int",
        pretrained(edit_config(lambda c: c.update(format_version="2"))),
        PretrainedFolderError,
        r"enc/config\.json: format_version must be an integer",
    ),
    (
        "pretrained-unknown-kind",
        pretrained(edit_config(lambda c: c["model"].update(kind="teleporter"))),
        PretrainedFolderError,
        r"enc/config\.json: cannot build .*'teleporter'",
    ),
    (
        "pretrained-vocab-corrupt",
        pretrained(lambda f: (f / "vocab.json").write_text("{not json")),
        PretrainedFolderError,
        r"enc/vocab\.json: not a channel vocabulary",
    ),
    (
        "pretrained-vocab-wrong-shape",
        pretrained(lambda f: (f / "vocab.json").write_text("[1, 2, 3]")),
        PretrainedFolderError,
        r"enc/vocab\.json: not a channel vocabulary",
    ),
    # models and batches
    (
        "model-sample-1d",
        lambda tmp: ChannelSample(torch.zeros(16), torch.tensor([0])),
        ValueError,
        r"ChannelSample\.values must be \[C, \*S\]",
    ),
    (
        "model-sample-ids-shape",
        lambda tmp: ChannelSample(torch.zeros(2, 16), torch.tensor([0, 1, 2])),
        ValueError,
        r"ChannelSample\.channel_ids must have shape \[C\]=\[2\]",
    ),
    (
        "model-sample-duplicate-ids",
        lambda tmp: ChannelSample(torch.zeros(2, 16), torch.tensor([1, 1])),
        ValueError,
        r"ChannelSample\.channel_ids has duplicates",
    ),
    ("model-batch-2d", lambda tmp: batch(torch.zeros(2, 16)), ValueError, r"ChannelBatch\.values must be \[B, C, \*S\]"),
    (
        "model-mask-float",
        lambda tmp: batch(torch.zeros(2, 3, 16), mask=torch.ones(2, 3)),
        TypeError,
        r"ChannelBatch\.mask must be torch\.bool, got torch\.float32",
    ),
    (
        "model-ids-int32",
        lambda tmp: ChannelBatch(
            torch.zeros(1, 3, 16), torch.arange(3, dtype=torch.int32)[None], torch.ones(1, 3, dtype=torch.bool)
        ),
        TypeError,
        r"ChannelBatch\.channel_ids must be torch\.long",
    ),
    (
        "model-wrong-length",
        encode(lambda: batch(torch.zeros(2, 3, 50))),
        ValueError,
        r"SOFTS expects T=seq_len=16 time steps, got values of shape \(2, 3, 50\)",
    ),
    (
        "model-ids-out-of-table",
        encode(lambda: batch(torch.zeros(1, 3, 16), ids=[[0, 1, 7]])),
        ChannelIdError,
        r"channel id\(s\) \[7\] are outside its channel table of 3 rows",
    ),
    (
        "model-negative-id",
        encode(lambda: batch(torch.zeros(1, 3, 16), ids=[[0, -2, 1]])),
        ChannelIdError,
        r"channel id\(s\) \[-2\]",
    ),
    (
        "model-empty-sample",
        encode(lambda: batch(torch.zeros(2, 3, 16), mask=torch.tensor([[True, True, False], [False, False, False]]))),
        EmptySampleError,
        r"sample\(s\) \[1\] of the batch have no present channel",
    ),
    ("model-not-a-batch", encode(lambda: torch.zeros(2, 3, 16)), TypeError, r"SOFTS takes a ChannelBatch, got Tensor"),
    (
        "model-lengths-past-end",
        lambda tmp: ChannelBatch(
            torch.zeros(1, 3, 16), torch.arange(3)[None], torch.ones(1, 3, dtype=torch.bool), lengths=torch.tensor([20])
        ),
        ValueError,
        r"ChannelBatch\.lengths must lie in \[1, 16\]",
    ),
    ("model-collate-empty", lambda tmp: ChannelBatch.collate([]), ValueError, r"collate\(\) got an empty list"),
]


# -- helpers the matrix uses -------------------------------------------------------------------
def _cut(path: Path, frac: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])
    return path


_CKPT: dict[str, Path] = {}


def _checkpoint() -> Path:
    """A ``last.ckpt`` of the tiny config (one short fit per test session)."""
    if "last" not in _CKPT:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="chanformer-ckpt-"))
        atexit.register(shutil.rmtree, root, True)
        code = cli("fit", "--config", TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                   "--trainer.limit_val_batches=1", "--test_after_fit=false",
                   f"--model.init_args.export_dir={root / 'export'}")(root)  # fmt: skip
        assert code == 0
        _CKPT["last"] = next(root.rglob("last.ckpt"))
    return _CKPT["last"]


def _cut_checkpoint(tmp: Path) -> Path:
    out = tmp / "cut.ckpt"
    out.write_bytes(_checkpoint().read_bytes()[:3000])
    return out


def _without_hparams(tmp: Path) -> Path:
    state = torch.load(_checkpoint(), weights_only=True)
    state.pop("hyper_parameters")
    torch.save(state, tmp / "nohp.ckpt")
    return tmp / "nohp.ckpt"


@pytest.mark.parametrize(("run", "error", "match"), [pytest.param(r, e, m, id=cid) for cid, r, e, m in CASES])
def test_bad_input_is_refused_by_name(tmp_path, run, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match) as info:
            run(tmp_path)
    assert str(info.value).strip() and "\n" not in str(info.value).strip(), "one line, not empty"


def test_matrix_size_and_families():
    from tests import test_bad_inputs

    families = {cid.split("-")[0] for cid, *_ in CASES}
    assert {"wav", "speech", "cli", "ckpt", "pretrained", "model"} <= families
    assert len(CASES) + len(test_bad_inputs.CASES) >= 120


# -- what the CLI does instead of refusing -----------------------------------------------------
def test_ckpt_overrides_config_builds_the_checkpoint_model_with_a_warning(tmp_path, capsys):
    code = main(["test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--model.init_args.encoder_kwargs.d_model=32",
                 "--ckpt_overrides_config=true", "--trainer.limit_test_batches=1",
                 f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert "chanformer: warning: --ckpt_path" in err and "encoder_kwargs.d_model 16 vs 32" in err


def test_same_config_checkpoint_is_tested_without_a_word(tmp_path, capsys):
    args = ["test", "--config", TINY, f"--ckpt_path={_checkpoint()}", "--trainer.limit_test_batches=1"]
    assert main([*args, f"--trainer.default_root_dir={tmp_path}"]) == 0
    assert "chanformer: warning" not in capsys.readouterr().err


def test_max_epochs_minus_one_warns_that_it_trains_until_stopped(tmp_path, capsys):
    from chanformer.cli.lightning_cli import ChanformerCLI

    class Probe(ChanformerCLI):
        def instantiate_classes(self) -> None:  # stop right after the check
            raise SystemExit(0)

    import lightning as L

    from chanformer.tasks import ChannelTask

    def probe(*extra: str) -> str:
        with pytest.raises(SystemExit):
            Probe(ChannelTask, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                  args=["fit", "--config", TINY, *extra], auto_configure_optimizers=False)  # fmt: skip
        return capsys.readouterr().err

    err = probe("--trainer.max_epochs=-1")
    assert "chanformer: warning: --trainer.max_epochs=-1 (config" in err and "trains until it is stopped" in err
    assert "trains until" not in probe("--trainer.max_epochs=-1", "--trainer.max_steps=5")  # bounded: no warning


def test_nonfinite_batch_value_is_traced_to_file_and_line(tmp_path):
    import lightning as L

    from chanformer.datasets.base import ChannelDataModule
    from chanformer.datasets.timeseries.datasets import UEADataset
    from chanformer.datasets.timeseries.sources import uea_path
    from chanformer.spec import DataSpec
    from chanformer.tasks import ClassificationTask

    ds = UEADataset(uea_path("BasicMotions", "train"))
    ds._values[13][2, 5] = math.nan  # what a reader that let a NaN through would hand over
    dm = ChannelDataModule(ds, ds, vocab=ds.vocab, batch_size=8)
    spec = DataSpec(vocab=ds.vocab, num_classes=4, n_times=100)
    task = ClassificationTask(encoder="softs_test", encoder_kwargs={"d_model": 8, "num_channels": 6}, data_spec=spec)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match=r"val batch 1: non-finite values .* in sample 5, channel series/dim_2; it is sample 13 "
                       r"of the val dataset: .*BasicMotions_TRAIN\.ts, line \d+ \(case 13\)"):  # fmt: skip
        trainer.fit(task, dm)
    # a shuffled training batch is traced too (the sampler replays), and a Subset is followed
    from torch.utils.data import Subset

    sub = Subset(ds, list(range(10, 30)))
    dm = ChannelDataModule(sub, None, vocab=ds.vocab, batch_size=8)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                        limit_val_batches=0)  # fmt: skip
    with pytest.raises(ValueError, match=r"train batch \d+: .*it is sample 3 of the train dataset: .*line \d+ \(case 13\)"):
        trainer.fit(task, dm)


def test_provenance_without_file_names_the_dataset_and_index():
    from torch.utils.data import ConcatDataset, Dataset

    from chanformer.provenance import describe_sample

    class Plain(Dataset):
        root = "/data/plain"

        def __len__(self) -> int:
            return 4

    assert describe_sample(Plain(), 2) == "sample 2 of Plain of /data/plain (it records no file per sample)"
    assert describe_sample(ConcatDataset([Plain(), Plain()]), 5).startswith("sample 1 of Plain")
