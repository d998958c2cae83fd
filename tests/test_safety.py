"""Hostile input and faults (issue 14): no unpickled code from any checkpoint, ids that never
escape their folder, atomic writes with umask modes, named disk-full errors, a ``last.ckpt``
after every epoch, and bag extraction that survives a kill anywhere in a bag write."""

from __future__ import annotations

import errno
import http.server
import os
import pickle
import subprocess
import sys
import threading
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from chanformer.checkpoint import AtomicCheckpointIO, RemoteCheckpointError, load_checkpoint_file
from chanformer.cli.main import main
from chanformer.io import WriteError, atomic_directory, remove_stale_temporaries, safe_id, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "configs" / "tiny-classify.yaml")


# -- a malicious checkpoint and a local server for it ---------------------------------------------
class Payload:
    """Unpickling this object creates the folder ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


class Served(types.SimpleNamespace):
    url: str
    file: Path
    marker: Path
    hits: list[str]


@pytest.fixture
def evil(tmp_path: Path) -> Iterator[Served]:
    """A Lightning-looking checkpoint with a code payload, on disk and from http://127.0.0.1."""
    marker = tmp_path / "PAYLOAD-RAN"
    file = tmp_path / "evil.ckpt"
    torch.save({"epoch": 0, "global_step": 0, "state_dict": {"w": torch.zeros(2)}, "x": Payload(marker)}, file)
    body = file.read_bytes()
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(url=f"http://127.0.0.1:{server.server_address[1]}/model.ckpt", file=file, marker=marker, hits=hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_payload_and_the_server_are_real(evil: Served) -> None:
    """Control: the payload does run when unpickled, and the server does serve the file."""
    with urllib.request.urlopen(evil.url, timeout=10) as r:  # noqa: S310 - a local test server
        assert r.read() == evil.file.read_bytes()
    pickle.loads(pickle.dumps(Payload(evil.marker)))  # noqa: S301 - our own payload
    assert evil.marker.is_dir()
    evil.marker.rmdir()


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    return err[-1]


@pytest.mark.parametrize("command", ["fit", "test", "validate"])
def test_ckpt_path_url_is_refused_before_any_download(command: str, evil: Served, tmp_path: Path, capsys) -> None:
    code = main([command, "--config", TINY, f"--ckpt_path={evil.url}", f"--trainer.default_root_dir={tmp_path}"])
    line = _one_line_error(capsys)
    assert code == 2
    assert line.startswith("chanformer: error: --ckpt_path") and evil.url in line and "download" in line
    assert evil.hits == [] and not evil.marker.exists()


@pytest.mark.parametrize("command", ["fit", "test"])
def test_local_malicious_ckpt_is_refused(command: str, evil: Served, tmp_path: Path, capsys) -> None:
    code = main([command, "--config", TINY, f"--ckpt_path={evil.file}", f"--trainer.default_root_dir={tmp_path}",
                 f"--model.init_args.export_dir={tmp_path / 'export'}"])  # fmt: skip
    line = _one_line_error(capsys)
    assert code == 2 and not evil.marker.exists()
    assert f"--ckpt_path {evil.file}: refused" in line and "never unpickled" in line
    assert not (tmp_path / "export").exists()


def test_checkpoint_io_is_tensors_only_whatever_lightning_asks(evil: Served) -> None:
    io = AtomicCheckpointIO()
    with pytest.raises(ValueError, match="refused"):
        io.load_checkpoint(evil.file, weights_only=False)
    with pytest.raises(RemoteCheckpointError, match="--ckpt_path 'http://127.0.0.1"):
        io.load_checkpoint(evil.url, weights_only=False)
    for url in ("https://example.invalid/x.ckpt", "s3://bucket/x.ckpt", "hf://a/b", "file:///tmp/x.ckpt"):
        with pytest.raises(RemoteCheckpointError):
            io.load_checkpoint(url)
    assert evil.hits == [] and not evil.marker.exists()


def test_lightning_trainer_load_goes_through_the_guard(evil: Served, tmp_path: Path) -> None:
    """``trainer.fit(ckpt_path=..., weights_only=False)`` with our checkpoint IO still refuses."""
    import lightning as L

    trainer = L.Trainer(plugins=[AtomicCheckpointIO()], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="refused"):
        trainer.strategy.load_checkpoint(evil.file, weights_only=False)
    with pytest.raises(RemoteCheckpointError):
        trainer.strategy.load_checkpoint(evil.url, weights_only=False)
    assert evil.hits == [] and not evil.marker.exists()


def test_reference_convert_refuses_urls_and_code(evil: Served, tmp_path: Path, capsys) -> None:
    base = ["reference", "convert", "--converter", "softs", "--config", "{}", "--out", str(tmp_path / "out")]
    assert main([*base, "--weights", evil.url]) == 2
    line = _one_line_error(capsys)
    assert "--weights" in line and evil.url in line and "download" in line
    assert main([*base, "--weights", str(evil.file)]) == 2
    assert f"--weights {evil.file}: refused" in _one_line_error(capsys)
    assert evil.hits == [] and not evil.marker.exists() and not (tmp_path / "out").exists()


def test_speechbrain_loader_refuses_urls_and_code(evil: Served) -> None:
    from chanformer.hub.converters.ecapa_tdnn import load_speechbrain_checkpoint

    with pytest.raises(RemoteCheckpointError, match="SpeechBrain checkpoint 'http://127.0.0.1"):
        load_speechbrain_checkpoint(evil.url)
    with pytest.raises(ValueError, match=f"SpeechBrain checkpoint {evil.file}: refused"):
        load_speechbrain_checkpoint(evil.file)
    assert evil.hits == [] and not evil.marker.exists()


def test_non_checkpoints_get_named_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match=f"checkpoint {text}: not a PyTorch checkpoint"):
        load_checkpoint_file(text)
    good = tmp_path / "good.ckpt"
    torch.save({"w": torch.ones(1000)}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"checkpoint {cut}: not a readable PyTorch checkpoint, or a truncated one"):
        load_checkpoint_file(cut)
    with pytest.raises(FileNotFoundError, match="checkpoint .*missing.ckpt: no such file"):
        load_checkpoint_file(tmp_path / "missing.ckpt")
    assert torch.equal(load_checkpoint_file(good)["w"], torch.ones(1000))


# -- ids never become paths unchecked ----------------------------------------------------------------
BAD_IDS = ["", ".", "..", "../x", "../../x", "a/b", "a\\b", "/abs", "C:evil", "x\x00y", "tab\there", "\x7f", "x" * 256]


@pytest.mark.parametrize("value", BAD_IDS)
def test_safe_id_refuses(value: str) -> None:
    with pytest.raises(ValueError, match=r"^slide id "):
        safe_id(value, "slide id")


@pytest.mark.parametrize("value", ["slide_001", "TCGA-AB-1234.01", "patient é 7", "a..b", "x" * 255, "...a"])
def test_safe_id_accepts_plain_names(value: str) -> None:
    assert safe_id(value, "slide id") == value


def test_safe_id_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="speaker 3: must be a string"):
        safe_id(3, "speaker")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("slide", ["..", ".", "", "../../x", "a/b", "/abs/x", "x\x00", ".tmp-a-1", ".hidden"])
def test_bag_store_refuses_ids_that_are_not_plain_names(slide: str, tmp_path: Path) -> None:
    from chanformer.datasets.wsi.store import BagStore

    store = BagStore(tmp_path / "store" / "bags.zarr")
    store.init(encoder="x")
    store.write_bag("good", np.ones((2, 3)), np.zeros((2, 2)), 0)
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match=r"bag store .*bags.zarr: slide id"):
        store.write_bag(slide, np.ones((2, 3)), np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match=r"bag store .*bags.zarr: slide id"):
        store.read_bag(slide)
    assert _tree(tmp_path) == before and store.slides() == ["good"]


def test_bag_store_never_deletes_what_it_did_not_write(tmp_path: Path) -> None:
    from chanformer.datasets.wsi.store import BagError, BagStore

    store = BagStore(tmp_path / "bags.zarr")
    store.init(encoder="x")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (store.bags_dir / "linked").symlink_to(outside, target_is_directory=True)
    (store.bags_dir / "plain").mkdir()
    (store.bags_dir / "plain" / "notes.txt").write_text("keep me too")
    (store.bags_dir / "afile").write_text("a file")
    for name in ("linked", "plain", "afile"):
        with pytest.raises(BagError, match=f"slide {name}: .* is not a bag folder; the store does not delete it"):
            store.write_bag(name, np.ones((2, 3)), np.zeros((2, 2)), 0)
    # clean() removes its own leftovers only (.tmp-<slide>-<pid>, .old-<slide>-<pid>)
    for name in (".tmp-a-12", ".old-b-7", ".tmpx", ".tmp-", ".tmp-c-x", ".hidden"):
        (store.bags_dir / name).mkdir()
    assert sorted(store.clean()) == [".old-b-7", ".tmp-a-12"]
    assert sorted(p.name for p in store.bags_dir.iterdir()) == [".hidden", ".tmp-", ".tmp-c-x", ".tmpx", "afile",
                                                                 "linked", "plain", "zarr.json"]  # fmt: skip
    assert (outside / "data.txt").read_text() == "keep me" and (store.bags_dir / "plain" / "notes.txt").is_file()


@pytest.fixture(scope="module")
def few_slides(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    from chanformer.datasets.wsi.slides import make_synthetic_slides

    root = tmp_path_factory.mktemp("slides")
    info = make_synthetic_slides(root / "slides", n=3, seed=0, size=512, tile_size=64, levels=3)
    return root, info


def test_dot_named_slides_cannot_wipe_the_store(few_slides, tmp_path: Path) -> None:
    from chanformer.datasets.wsi.store import BagStore
    from chanformer.pipelines.wsi_features import extract_features

    _, info = few_slides
    src = Path(info[0]["path"])
    store = BagStore(tmp_path / "bags.zarr")
    extract_features([info[1]["path"]], store, tile_size=64, progress=False)
    before = _tree(tmp_path)
    hostile = []
    for name in ("...tif", "..tif", ".tif", ".x.tif"):  # ids '..', '.', '' and a hidden '.x'
        (tmp_path / "in").mkdir(exist_ok=True)
        hostile.append(tmp_path / "in" / name)
        hostile[-1].write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match=r"slide file .*\.\.\.tif: slide id '\.\.'"):
        extract_features(hostile, store, tile_size=64, progress=False)
    report = extract_features([*hostile, info[2]["path"]], store, tile_size=64, progress=False, on_error="skip")
    assert report.written == [info[2]["slide"]]
    assert sorted(report.failed) == sorted(map(str, hostile))
    assert "slide id '.'" in report.failed[str(hostile[1])] and "starts with '.'" in report.failed[str(hostile[3])]
    after = _tree(tmp_path)
    assert all(after[k] == v for k, v in before.items())  # nothing that existed was changed or deleted
    assert store.slides() == sorted([info[1]["slide"], info[2]["slide"]])


def test_speaker_and_dataset_names_are_checked(tmp_path: Path, monkeypatch) -> None:
    from chanformer.datasets.speech import synth
    from chanformer.datasets.speech.datasets import SpeakerFolderDataset
    from chanformer.datasets.speech.synth import generate_espeak_corpus
    from chanformer.datasets.timeseries.sources import uea_path

    (tmp_path / "root" / "alice").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"SpeakerFolderDataset\(.*root\): speaker '\.\./\.\./etc'"):
        SpeakerFolderDataset(tmp_path / "root", speakers=["alice", "../../etc"])
    monkeypatch.setattr(synth.shutil, "which", lambda _: "/bin/false")  # validation precedes any synthesis
    with pytest.raises(ValueError, match=r"generate_espeak_corpus\(.*\): voice '\.\.'"):
        generate_espeak_corpus(tmp_path / "corpus", [".."])
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "..").joinpath("corpus").exists()
    with pytest.raises(ValueError, match=r"UEA/UCR dataset name '\.\./x'"):
        uea_path("../x")


# -- last.ckpt after every epoch ------------------------------------------------------------------------
class _WorseEveryEpoch:
    """A tiny LightningModule whose monitored ``val/loss`` gets worse every epoch (never improves)."""

    @staticmethod
    def make():  # built lazily so importing this file does not import lightning's module classes
        import lightning as L

        class Model(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch, _):
                return self.layer(batch[0]).pow(2).mean()

            def validation_step(self, batch, _):
                self.log("val/loss", float(self.current_epoch))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.01)

        return Model()


def _loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)


@pytest.mark.parametrize("how", ["ours", "plain-upgraded", "link", "val-every-2"])
def test_last_ckpt_holds_the_latest_epoch(how: str, tmp_path: Path) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

    from chanformer.callbacks import ModelCheckpoint, upgrade_checkpoint_callbacks

    kw = {"dirpath": tmp_path, "monitor": "val/loss", "mode": "min", "save_last": "link" if how == "link" else True}
    cb = LightningModelCheckpoint(**kw) if how == "plain-upgraded" else ModelCheckpoint(**kw)
    if how == "plain-upgraded":
        assert upgrade_checkpoint_callbacks([cb]) == 1 and isinstance(cb, ModelCheckpoint)
    trainer = L.Trainer(max_epochs=3, callbacks=[cb], plugins=[AtomicCheckpointIO()], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        check_val_every_n_epoch=2 if how == "val-every-2" else 1)  # fmt: skip
    trainer.fit(_WorseEveryEpoch.make(), _loader(), _loader())
    last = tmp_path / "last.ckpt"
    assert load_checkpoint_file(last)["epoch"] == 2
    assert not last.is_symlink()
    best = load_checkpoint_file(cb.best_model_path)
    assert best["epoch"] == (1 if how == "val-every-2" else 0)  # the metric never improved after its first value
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # resuming from it runs exactly the one remaining epoch (2 batches per epoch)
    again = L.Trainer(max_epochs=4, callbacks=[ModelCheckpoint(**kw)], plugins=[AtomicCheckpointIO()], logger=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                      check_val_every_n_epoch=2 if how == "val-every-2" else 1)  # fmt: skip
    again.fit(_WorseEveryEpoch.make(), _loader(), _loader(), ckpt_path=last)
    assert again.global_step == 8 and load_checkpoint_file(last)["epoch"] == 3


def test_recipes_use_the_every_epoch_checkpoint() -> None:
    from chanformer.cli.main import recipe_dir

    for path in recipe_dir().glob("*.yaml"):
        text = path.read_text()
        assert "lightning.pytorch.callbacks.ModelCheckpoint" not in text, path.name
        if "save_last" in text:
            assert "chanformer.callbacks.ModelCheckpoint" in text, path.name


# -- killed bag writes ------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no ``except Exception`` handler sees it."""


def _same_store(a: Path, b: Path) -> None:
    from chanformer.datasets.wsi.store import BagStore

    sa, sb = BagStore(a), BagStore(b)
    assert sa.slides() == sb.slides() and sa.attrs == sb.attrs
    for name in sa.slides():
        x, y = sa.read_bag(name), sb.read_bag(name)
        assert torch.equal(x.features, y.features) and torch.equal(x.coords, y.coords) and x.attrs == y.attrs
    files_a = {k for k in _tree(a) if not k.endswith(".extract.lock")}
    files_b = {k for k in _tree(b) if not k.endswith(".extract.lock")}
    assert files_a == files_b
    assert not [p for p in sa.bags_dir.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def reference_store(few_slides, tmp_path_factory) -> Path:
    from chanformer.datasets.wsi.slides import read_labels
    from chanformer.pipelines.wsi_features import extract_features

    root, _ = few_slides
    path = tmp_path_factory.mktemp("ref") / "bags.zarr"
    extract_features([root / "slides"], path, labels=read_labels(root / "slides" / "labels.csv"), tile_size=64,
                     progress=False)  # fmt: skip
    return path


KILL_POINTS = ["open-group", "features-midway", "before-coords", "before-rename", "first-slide-open"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_inside_a_bag_write_then_rerun_completes_identically(point, few_slides, reference_store, tmp_path,
                                                                  monkeypatch) -> None:  # fmt: skip
    """A kill leaves whatever the write had reached on disk, under the dead process's id; the
    re-run deletes it and ends with the same store as an uninterrupted run."""
    from chanformer.datasets.wsi import store as bags
    from chanformer.datasets.wsi.slides import read_labels
    from chanformer.pipelines import wsi_features

    root, _ = few_slides
    labels = read_labels(root / "slides" / "labels.csv")
    path = tmp_path / "bags.zarr"
    victim = 0 if point == "first-slide-open" else 1  # which slide's write is killed
    state = {"slide": -1}
    real_open, real_write = bags._open_group, bags._write_array

    def open_group(p: Path, mode: str):
        if mode == "w":
            state["slide"] += 1
            if point in ("open-group", "first-slide-open") and state["slide"] == victim:
                raise _Killed
        return real_open(p, mode)

    def write_array(group, name: str, data: np.ndarray) -> None:
        if state["slide"] == victim and point == "features-midway" and name == "features":
            arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(max(1, len(data) // 2), data.shape[1]))
            arr[: len(data) // 2] = data[: len(data) // 2]
            raise _Killed
        if state["slide"] == victim and point == "before-coords" and name == "coords":
            raise _Killed
        real_write(group, name, data)

    dead = _dead_pid()

    class Os(types.ModuleType):
        def __getattr__(self, name: str):
            return getattr(os, name)

    fake_os = Os("os")
    fake_os.getpid = lambda: dead  # type: ignore[attr-defined]

    def replace(src, dst):
        if point == "before-rename" and state["slide"] == victim and Path(src).name.startswith(".tmp-"):
            raise _Killed
        os.replace(src, dst)

    fake_os.replace = replace  # type: ignore[attr-defined]
    with monkeypatch.context() as m:
        m.setattr(bags, "_open_group", open_group)
        m.setattr(bags, "_write_array", write_array)
        m.setattr(bags, "os", fake_os)
        m.setattr(bags, "shutil", types.SimpleNamespace(rmtree=lambda *a, **k: None))  # a kill cleans nothing up
        with pytest.raises(_Killed):
            wsi_features.extract_features([root / "slides"], path, labels=labels, tile_size=64, progress=False)
    store = bags.BagStore(path)
    leftovers = [p.name for p in store.bags_dir.iterdir() if p.name.startswith(".")]
    if point != "open-group" and point != "first-slide-open":
        assert leftovers == [f".tmp-slide_00{victim}-{dead}"]
    assert store.slides() == [f"slide_00{i}" for i in range(victim)]  # the half-written bag never counts
    report = wsi_features.extract_features([root / "slides"], path, labels=labels, tile_size=64, progress=False)
    assert len(report.written) == 3 - victim
    _same_store(path, reference_store)


def test_real_kill_inside_a_bag_write(few_slides, reference_store, tmp_path) -> None:
    """The same with a real process killed (``os._exit``) between the two arrays of a bag."""
    root, _ = few_slides
    path = tmp_path / "bags.zarr"
    script = f"""
import os
from chanformer.datasets.wsi import store as bags
from chanformer.datasets.wsi.slides import read_labels
real, seen = bags._write_array, []
def write_array(group, name, data):
    seen.append(name)
    if seen.count("features") == 2 and name == "coords":
        os._exit(9)
    real(group, name, data)
bags._write_array = write_array
from chanformer.pipelines.wsi_features import extract_features
extract_features([{str(root / 'slides')!r}], {str(path)!r}, labels=read_labels({str(root / 'slides' / 'labels.csv')!r}),
                      tile_size=64, progress=False)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 9, stderr[-2000:]
    from chanformer.datasets.wsi.slides import read_labels
    from chanformer.datasets.wsi.store import BagStore
    from chanformer.pipelines.wsi_features import extract_features

    store = BagStore(path)
    assert store.slides() == ["slide_000"]
    assert [p.name for p in store.bags_dir.iterdir() if p.name.startswith(".")] == [f".tmp-slide_001-{proc.pid}"]
    extract_features([root / "slides"], path, labels=read_labels(root / "slides" / "labels.csv"), tile_size=64,
                     progress=False)  # fmt: skip
    _same_store(path, reference_store)


def test_replacing_a_bag_killed_between_renames_loses_nothing_for_good(tmp_path: Path, monkeypatch) -> None:
    from chanformer.datasets.wsi import store as bags

    store = bags.BagStore(tmp_path / "bags.zarr")
    store.init(encoder="x")
    store.write_bag("a", np.ones((2, 3)), np.zeros((2, 2)), 0)
    calls = []

    def replace(src, dst):
        calls.append(Path(src).name)
        if len(calls) == 2:
            raise _Killed  # after the old bag moved aside, before the new one moved in
        os.replace(src, dst)

    class Os(types.ModuleType):
        def __getattr__(self, name: str):
            return getattr(os, name)

    fake = Os("os")
    fake.replace = replace  # type: ignore[attr-defined]
    with monkeypatch.context() as m:
        m.setattr(bags, "os", fake)
        m.setattr(bags, "shutil", types.SimpleNamespace(rmtree=lambda *a, **k: None))
        with pytest.raises(_Killed):
            store.write_bag("a", np.full((2, 3), 2.0), np.zeros((2, 2)), 0)
    assert store.slides() == []  # no complete bag "a": the next extraction writes it again
    assert sorted(store.clean()) == sorted([f".old-a-{os.getpid()}", f".tmp-a-{os.getpid()}"])
    store.write_bag("a", np.full((2, 3), 2.0), np.zeros((2, 2)), 0)
    assert store.read_bag("a").features.unique().tolist() == [2.0]


def test_second_extraction_into_a_locked_store_is_refused(few_slides, tmp_path: Path) -> None:
    from chanformer.datasets.wsi.store import BagError, BagStore
    from chanformer.pipelines.wsi_features import extract_features

    root, _ = few_slides
    store = BagStore(tmp_path / "bags.zarr")
    store.init(encoder="tile-stats", encoder_config={"width": 26, "seed": 0}, tile_size=64, level=0)
    with store.lock():
        with pytest.raises(BagError, match=r"bag store .*bags.zarr: another extraction is writing to it"):
            extract_features([root / "slides"], store, tile_size=64, progress=False)
    assert extract_features([root / "slides"], store, tile_size=64, progress=False).written


# -- bad slides in a multi-slide extraction ---------------------------------------------------------------
def test_cli_extract_skips_bad_slides_and_exits_1(few_slides, tmp_path: Path, capsys) -> None:
    from chanformer.datasets.wsi.slides import write_pyramid
    from chanformer.datasets.wsi.store import BagStore

    _, info = few_slides
    folder = tmp_path / "in"
    folder.mkdir()
    write_pyramid(folder / "a_blank.tif", np.full((256, 256, 3), 240, np.uint8), levels=2, tile=64)
    data = Path(info[0]["path"]).read_bytes()
    (folder / "b_cut.tif").write_bytes(data[: len(data) // 3])
    for d in info:
        os.symlink(d["path"], folder / Path(d["path"]).name)
    store = tmp_path / "bags.zarr"
    code = main(["wsi", "extract", str(folder), "--store", str(store), "--tile-size", "64"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"skipped {folder / 'a_blank.tif'}: slide a_blank: " in err
    assert f"skipped {folder / 'b_cut.tif'}: slide b_cut:" in err
    assert "2 of 5 slides failed and were skipped (a_blank.tif, b_cut.tif)" in err.strip().splitlines()[-1]
    assert BagStore(store).slides() == [d["slide"] for d in info]
    # tiling reports the same way
    assert main(["wsi", "tile", str(folder), "--out", str(tmp_path / "tiles"), "--tile-size", "64"]) == 1
    assert sorted(p.name for p in (tmp_path / "tiles").glob("*.json")) == [f"{d['slide']}.tiles.json" for d in info]


# -- stale temporaries, modes, disk full ------------------------------------------------------------------
def test_stale_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    from chanformer.encoders import create_encoder
    from chanformer.hub import save_pretrained

    dead = _dead_pid()
    export = tmp_path / "export"
    stale = [tmp_path / f".export.tmp-{dead}-0123abcd", tmp_path / ".export.tmp-89abcdef",  # older pid-less name
             tmp_path / f".export.old-{dead}-0123abcd"]  # fmt: skip
    alive = tmp_path / f".export.tmp-{os.getpid()}-0123abcd"  # a writer that still runs is left alone
    others = [tmp_path / ".export.tmp-notmine", tmp_path / ".other.tmp-1-0123abcd", tmp_path / "keep"]
    for p in [*stale, alive, *others]:
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"half")
    save_pretrained(create_encoder("softs_test", num_channels=3), export)
    assert not any(p.exists() for p in stale)
    assert alive.exists() and all(p.exists() for p in others)
    # files: a killed checkpoint write leaves .last.ckpt.tmp-<pid>-<hex>; the next save removes it
    ckpt_tmp = tmp_path / f".last.ckpt.tmp-{dead}-00ff00ff"
    ckpt_tmp.write_bytes(b"half")
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, tmp_path / "last.ckpt")
    assert not ckpt_tmp.exists()
    assert remove_stale_temporaries(tmp_path / "last.ckpt") == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_every_export_and_checkpoint_file_gets_0666_minus_umask(umask: int, tmp_path: Path) -> None:
    from chanformer.channels import ChannelVocab
    from chanformer.encoders import create_encoder
    from chanformer.hub import save_pretrained

    old = os.umask(umask)
    try:
        enc = create_encoder("softs_test", num_channels=3)
        enc.vocab = ChannelVocab("t", ["a", "b", "c"])
        save_pretrained(enc, tmp_path / "export")
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, tmp_path / "ck" / "last.ckpt")
        write_text_atomic(tmp_path / "note.json", "{}")
        with atomic_directory(tmp_path / "dir") as d:
            d.mkdir()
            import tempfile

            fd, _ = tempfile.mkstemp(dir=d)  # a library writing 0600 files inside
            os.close(fd)
    finally:
        os.umask(old)
    files = [*sorted((tmp_path / "export").iterdir()), tmp_path / "ck" / "last.ckpt", tmp_path / "note.json",
             *(tmp_path / "dir").iterdir()]  # fmt: skip
    assert {p.name for p in (tmp_path / "export").iterdir()} >= {"config.json", "model.safetensors", "vocab.json"}
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, (p.name, oct(p.stat().st_mode))
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o777 & ~umask


def _full_disk_writer(limit: int):
    """``os.fdopen`` whose files raise ENOSPC once ``limit`` bytes were written."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        f = real(fd, *args, **kwargs)
        written = [0]
        write = f.write

        def limited(data):
            if written[0] + len(data) > limit:
                write(bytes(data)[: max(0, limit - written[0])])
                raise OSError(errno.ENOSPC, "No space left on device")
            written[0] += len(data)
            return write(data)

        f.write = limited
        return f

    return fdopen


def test_disk_full_during_a_checkpoint_keeps_the_old_one(tmp_path: Path, monkeypatch) -> None:
    import chanformer.io as cio

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(10)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(cio.os, "fdopen", _full_disk_writer(4096))
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device") as e:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(100_000)}, path)
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(WriteError, match="note.json: No space left on device"):
        write_text_atomic(tmp_path / "note.json", "x" * 10_000)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("error", ["oserror", "safetensors-message"])
def test_disk_full_during_an_export_keeps_the_old_one(error: str, tmp_path: Path, monkeypatch) -> None:
    import chanformer.hub.pretrained as pretrained
    from chanformer.encoders import create_encoder
    from chanformer.hub import save_pretrained

    export = tmp_path / "export"
    save_pretrained(create_encoder("softs_test", num_channels=3), export)
    before = _tree(export)
    real = pretrained.save_file

    def save_file(tensors, filename, *args, **kwargs):
        real(tensors, filename, *args, **kwargs)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])  # half-written...
        if error == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(pretrained, "save_file", save_file)
    with pytest.raises(WriteError, match=f"cannot write {export}: No space left on device .*left unchanged"):
        save_pretrained(create_encoder("softs_test", num_channels=4), export)
    assert _tree(export) == before and sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_cli_reports_a_failed_write_in_one_line(few_slides, tmp_path: Path, monkeypatch, capsys) -> None:
    import chanformer.io as cio

    _, info = few_slides
    monkeypatch.setattr(cio.os, "fdopen", _full_disk_writer(10))
    code = main(["wsi", "tile", info[0]["path"], "--out", str(tmp_path / "t"), "--tile-size", "64"])
    monkeypatch.undo()
    line = _one_line_error(capsys)
    target = tmp_path / "t" / f"{info[0]['slide']}.tiles.json"
    assert code == 2 and line == (f"chanformer: error: cannot write {target}: No space left on device (disk full?); "
                                  f"{target} was left unchanged")  # fmt: skip
    assert list((tmp_path / "t").iterdir()) == []
