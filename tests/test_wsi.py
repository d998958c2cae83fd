"""Whole-slide pipeline on generated pyramidal TIFFs: tiling, resumable Zarr bags, MIL, heatmaps."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
import torch
from sklearn.metrics import roc_auc_score

from chanformer.batch import BagBatch
from chanformer.datasets.wsi.bags import BagDataModule, BagDataset
from chanformer.datasets.wsi.slides import Slide, SlideReadError, make_synthetic_slides, read_labels, tile_slide, write_pyramid
from chanformer.datasets.wsi.store import BagError, BagStore
from chanformer.pipelines.wsi_features import extract_features
from chanformer.pipelines.wsi_heatmap import attention_maps, attention_mass_on
from chanformer.tasks import MILTask

N_SLIDES, N_TRAIN, TILE = 24, 16, 64


@pytest.fixture(scope="module")
def threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsi")
    info = make_synthetic_slides(root / "slides", n=N_SLIDES, seed=0, size=1024, tile_size=TILE, levels=3)
    return root, info


@pytest.fixture(scope="module")
def store(slides, threads):
    root, _ = slides
    labels = read_labels(root / "slides" / "labels.csv")
    path = root / "bags.zarr"
    stop_after = 5

    class Killed(RuntimeError):
        pass

    done: list[str] = []

    def kill(slide: str) -> None:
        done.append(slide)
        if len(done) == stop_after:
            raise Killed(slide)

    with pytest.raises(Killed):
        extract_features([root / "slides"], path, labels=labels, tile_size=TILE, batch_size=32, progress=False,
                         on_slide_done=kill)
    s = BagStore(path)
    assert s.slides() == done
    # a write killed half-way leaves only a temporary group, which never counts as a bag
    (s.bags_dir / ".tmp-slide_099-1").mkdir()
    report = extract_features([root / "slides"], path, labels=labels, tile_size=TILE, batch_size=32, progress=False)
    return s, report, done


def test_slide_levels_and_tissue_tiles(slides):
    _, info = slides
    with Slide(info[0]["path"]) as s:
        assert s.shapes == [(1024, 1024), (512, 512), (256, 256)]
        assert s.read_region(0, 1000, 1000, 64, 64).shape == (64, 64, 3)  # partly outside: padded white
        grid = tile_slide(s, TILE)
    assert 0.1 < len(grid) / (1024 // TILE) ** 2 < 0.7  # background tiles are excluded
    assert (grid.tissue_fraction >= 0.5).all()
    assert [0, 0] not in grid.coords.tolist()  # the corners are glass
    for d in info:
        if d["label"]:
            coords = {tuple(c) for c in tile_slide(d["path"], TILE).coords.tolist()}
            assert {tuple(c) for c in d["informative"]} <= coords


def test_extraction_resumes_without_duplicates(slides, store):
    root, info = slides
    s, report, first = store
    assert s.slides() == sorted(d["slide"] for d in info)
    assert sorted(report.skipped) == sorted(first) and len(report.written) == N_SLIDES - len(first)
    assert not [p for p in s.bags_dir.iterdir() if p.name.startswith(".")]  # leftovers cleaned
    assert s.attrs["encoder"] == "tile-stats" and s.attrs["feature_dim"] == 32
    bag = s.read_bag(info[0]["slide"])
    assert bag.features.shape == (len(tile_slide(info[0]["path"], TILE)), 32) and bag.label == info[0]["label"]
    import zarr

    assert zarr.open_group(str(s.bags_dir / info[0]["slide"]), mode="r")["features"].dtype == np.float16
    assert len({tuple(c) for c in bag.coords.tolist()}) == len(bag.coords)
    assert report.tiles_per_s > 50
    # same store, another encoder -> refused
    with pytest.raises(ValueError, match="other settings"):
        extract_features([root / "slides"], s.path, encoder_kwargs={"seed": 1}, tile_size=TILE, progress=False)


def _train(model: str, dm: BagDataModule, epochs: int, seed: int = 0) -> MILTask:
    torch.manual_seed(seed)
    kw = {"acmil": {"embed_dim": 64, "attn_dim": 64, "n_token": 3, "n_masked_patch": 5, "mask_drop": 0.6},
          "abmil": {"embed_dim": 64, "attn_dim": 64}, "mean": {"embed_dim": 64}}[model]  # fmt: skip
    task = MILTask(model, kw, data_spec=dm.spec)
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    train = dm.datasets["train"]
    for _ in range(epochs):
        task.train()
        for i in torch.randperm(len(train), generator=g).tolist():
            loss, _, _ = task.compute(BagBatch.collate([train[i]]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return task.eval()


def _test_auroc(task: MILTask, dm: BagDataModule) -> float:
    batch = BagBatch.collate(dm.datasets["test"].bags)  # padded mini-batch of bags of different sizes
    with torch.no_grad():
        probs = torch.softmax(task.slide_logits(task(batch)), -1)[:, 1]
    return float(roc_auc_score(batch.target.numpy(), probs.numpy()))


@pytest.fixture(scope="module")
def datamodule(slides, store):
    root, info = slides
    names = [d["slide"] for d in info]
    split = root / "split.json"
    split.write_text(json.dumps({"train": names[:N_TRAIN], "test": names[N_TRAIN:]}))
    return BagDataModule(str(store[0].path), split_file=str(split))


def test_acmil_beats_bag_mean_and_attends_to_informative_tiles(slides, datamodule, threads):
    _, info = slides
    dm = datamodule
    auroc = {m: _test_auroc(_train(m, dm, 25), dm) for m in ("mean", "abmil")}
    acmil = _train("acmil", dm, 25)
    auroc["acmil"] = _test_auroc(acmil, dm)
    print("test AUROC", auroc)
    assert auroc["acmil"] >= 0.95
    assert auroc["acmil"] >= auroc["mean"] + 0.1
    # attention mass of the slide head on the informative tiles vs their share of the tiles
    informative = {d["slide"]: d["informative"] for d in info}
    mass, share = [], []
    for bag in dm.datasets["test"].bags:
        if bag.label == 1:
            a = attention_maps(acmil.model, bag.features)
            assert set(a) == {"branch_0", "branch_1", "branch_2", "slide"}
            mass.append(attention_mass_on(a["slide"], bag.coords, informative[bag.slide]))
            share.append(len(informative[bag.slide]) / len(bag.features))
    print("attention mass", np.mean(mass), "tile share", np.mean(share))
    assert np.mean(mass) > 8 * np.mean(share)


def test_padding_does_not_change_outputs(datamodule):
    task = MILTask("acmil", {"embed_dim": 16, "attn_dim": 16}, data_spec=datamodule.spec).eval()
    bags = datamodule.datasets["test"].bags[:3]
    batch = BagBatch.collate(bags)
    with torch.no_grad():
        together = task.slide_logits(task(batch))
        alone = torch.cat([task.slide_logits(task(BagBatch.collate([b]))) for b in bags])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_cli_fit_then_heatmaps(slides, store, tmp_path, threads):
    from chanformer.cli.main import main

    root, info = slides
    out = tmp_path / "run"
    rc = main(["fit", "--config", "wsi-acmil", f"--data.init_args.store={store[0].path}", "--trainer.max_epochs=2",
               f"--trainer.default_root_dir={out}", "--trainer.enable_progress_bar=false",
               f"--model.init_args.export_dir={out / 'pretrained'}"])  # fmt: skip
    assert rc == 0 and (out / "pretrained" / "model.safetensors").is_file()
    pos = next(d["slide"] for d in info if d["label"])
    assert main(["wsi", "heatmap", "--model", str(out / "pretrained"), "--store", str(store[0].path),
                 "--out", str(tmp_path / "heat"), "--slides", pos]) == 0  # fmt: skip
    from PIL import Image

    pngs = sorted(p.name for p in (tmp_path / "heat").iterdir())
    assert pngs == [f"{pos}.branch_{k}.png" for k in range(3)] + [f"{pos}.slide.png"]
    assert Image.open(tmp_path / "heat" / f"{pos}.slide.png").size == (256, 256)


def test_cli_tile_and_extract(slides, tmp_path, threads):
    from chanformer.cli.main import main

    root, info = slides
    one = tmp_path / "one"
    one.mkdir()
    os.symlink(info[0]["path"], one / "slide_000.tif")
    assert main(["wsi", "tile", str(one), "--out", str(tmp_path / "tiles"), "--tile-size", "64"]) == 0
    grid = json.loads((tmp_path / "tiles" / "slide_000.tiles.json").read_text())
    assert grid["coords"] == tile_slide(info[0]["path"], TILE).coords.tolist()
    args = ["wsi", "extract", str(one), "--tiles", str(tmp_path / "tiles"), "--store", str(tmp_path / "b.zarr"),
            "--tile-size", "64", "--labels", str(root / "slides" / "labels.csv")]  # fmt: skip
    assert main(args) == 0 and main(args) == 0  # the second run finds the bag complete
    assert BagStore(tmp_path / "b.zarr").slides() == ["slide_000"]


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_slides_are_named(tmp_path, slides):
    _, info = slides
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((128, 128, 3), np.uint8), photometric="rgb")
    with pytest.raises(SlideReadError, match="slide flat: .*not pyramidal"):
        Slide(flat)
    data = open(info[0]["path"], "rb").read()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideReadError, match="slide cut: "):
        with Slide(cut) as s:
            s.read_level(0)
    blank = write_pyramid(tmp_path / "blank.tif", np.full((256, 256, 3), 240, np.uint8), levels=2, tile=64)
    with pytest.raises(SlideReadError, match="slide blank: no tissue"):
        tile_slide(blank, 64)
    with pytest.raises(FileNotFoundError, match="slide missing"):
        Slide(tmp_path / "missing.tif")


def test_bad_bags_are_named(tmp_path, slides):
    _, info = slides
    store = BagStore(tmp_path / "s.zarr")
    store.init(encoder="x")
    with pytest.raises(BagError, match="slide a: features must be a non-empty"):
        store.write_bag("a", np.zeros((0, 4)), np.zeros((0, 2)), 0)
    with pytest.raises(BagError, match="slide a: the encoder produced NaN"):
        store.write_bag("a", np.full((3, 4), np.nan), np.zeros((3, 2)), 0)
    store.write_bag("a", np.ones((3, 4)), np.zeros((3, 2)), 0)
    store.write_bag("b", np.ones((2, 5)), np.zeros((2, 2)), 1)
    with pytest.raises(BagError, match="slide b: 5 features per tile, but slide a has 4"):
        BagDataset(store)

    class NaNEncoder(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 4), float("nan"))

    with pytest.raises(BagError, match=f"slide {info[0]['slide']}: the encoder produced NaN"):
        extract_features([info[0]["path"]], tmp_path / "n.zarr", NaNEncoder(), tile_size=TILE, progress=False)
    assert BagStore(tmp_path / "n.zarr").slides() == []
    batch = BagBatch.collate([store.read_bag("a")])
    batch.features[0, 1] = float("nan")
    with pytest.raises(ValueError, match="slide a, tile 1"):
        batch.check_finite()
    with pytest.raises(ValueError, match="in_dim"):
        MILTask("acmil", num_classes=2)


@pytest.mark.slow
def test_comparison_over_seeds(tmp_path):
    """Larger run behind the numbers in docs/wsi.md: 3 slide sets x 3 training seeds."""
    torch.set_num_threads(1)
    results: dict[str, list[float]] = {"acmil": [], "abmil": [], "mean": []}
    for data_seed in range(3):
        root = tmp_path / f"d{data_seed}"
        info = make_synthetic_slides(root / "slides", n=48, seed=data_seed)
        extract_features([root / "slides"], root / "bags.zarr", labels=read_labels(root / "slides" / "labels.csv"),
                         tile_size=TILE, progress=False)  # fmt: skip
        names = [d["slide"] for d in info]
        (root / "split.json").write_text(json.dumps({"train": names[:32], "test": names[32:]}))
        dm = BagDataModule(str(root / "bags.zarr"), split_file=str(root / "split.json"))
        for seed in range(3):
            for m in results:
                results[m].append(_test_auroc(_train(m, dm, 30, seed), dm))
    summary = {m: (float(np.mean(v)), float(np.std(v))) for m, v in results.items()}
    print("AUROC mean/std", summary)
    assert summary["acmil"][0] > summary["mean"][0]
