"""CAMELYON16 read from a generated miniature of its published layout: slides, labels, the
official split, ASAP lesion polygons -> tile tumour fractions, bags extracted with the WSI
pipeline, the datamodule and one epoch of the camelyon16-acmil recipe."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from chanformer.cli.lightning_cli import run_lightning_cli
from chanformer.cli.main import list_recipes, resolve_config
from chanformer.datasets.wsi.camelyon16 import (
    Camelyon16DataModule,
    Camelyon16MissingError,
    Camelyon16Slides,
    LesionAnnotations,
    read_asap_xml,
    tile_tumor_fraction,
)
from chanformer.datasets.wsi.slides import Slide, SlideReadError, read_labels, tile_slide
from chanformer.datasets.wsi.store import BagError, BagStore
from chanformer.pipelines.wsi_features import extract_features

_GEN = Path(__file__).parent / "data" / "camelyon16" / "generate.py"
_spec = importlib.util.spec_from_file_location("camelyon16_generate", _GEN)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

TILE = 64


@pytest.fixture(scope="module")
def c16_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("camelyon16"))


@pytest.fixture(scope="module")
def c16_store(c16_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bags of every slide, extracted without labels (the datamodule labels them from CAMELYON16)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("c16bags") / "bags.zarr"
        report = extract_features(Camelyon16Slides(c16_root).paths(), path, tile_size=TILE, batch_size=64, progress=False)
        assert len(report.written) == 10 and not report.failed
    finally:
        torch.set_num_threads(old)
    return path


def test_generator_writes_the_published_layout(c16_root: Path) -> None:
    names = sorted(p.relative_to(c16_root).as_posix() for p in c16_root.rglob("*") if p.is_file())
    assert "training/normal/normal_001.tif" in names and "training/tumor/tumor_003.tif" in names
    assert "testing/images/test_004.tif" in names and "training/lesion_annotations/tumor_001.xml" in names
    assert "testing/lesion_annotations.zip" in names and "testing/reference.csv" in names
    rows = (c16_root / "testing" / "reference.csv").read_text().splitlines()
    assert rows[:2] == ["test_001,Tumor,Macro,Primary", "test_002,Normal"]
    with tifffile.TiffFile(c16_root / "training" / "tumor" / "tumor_001.tif") as tf:
        assert tf.is_bigtiff and len(tf.pages) == 3 and tf.pages[0].is_tiled  # pyramid as pages, as ASAP writes it
    with Slide(c16_root / "training" / "tumor" / "tumor_001.tif") as s:
        assert s.shapes == [(512, 512), (256, 256), (128, 128)] and s.channels == 3


def test_slides_labels_and_official_split(c16_root: Path) -> None:
    train, test = Camelyon16Slides(c16_root, "train"), Camelyon16Slides(c16_root, "test")
    assert train.ids == [*gen.NORMAL, *gen.TUMOR] and test.ids == list(gen.TEST)
    assert [s.label for s in train] == [0, 0, 0, 1, 1, 1]
    assert test.labels == {"test_001": 1, "test_002": 0, "test_003": 1, "test_004": 0}
    assert test[0].reference == ("Macro", "Primary") and test[1].reference == () and test[0].class_name == "tumor"
    every = Camelyon16Slides(c16_root)
    assert len(every) == 10 and every.paths("test") == test.paths() and every.layout == "folders"
    assert Camelyon16Slides(c16_root, exclude=["test_004"]).ids[-1] == "test_003"


def test_asap_annotations(c16_root: Path) -> None:
    anns = read_asap_xml(c16_root / "training" / "lesion_annotations" / "tumor_001.xml")
    assert [(a.name, a.group, a.type) for a in anns] == [(g, g, "Polygon") for g in ("_0", "_1", "_2")]
    np.testing.assert_array_equal(anns[0].coords, np.array(gen.LESIONS["tumor_001"][0][3]))
    c = Camelyon16Slides(c16_root)
    lesions = c.annotations("tumor_001")
    assert len(lesions.tumor) == 2 and len(lesions.exclusion) == 1
    spline = c.annotations("tumor_003")
    assert len(spline.tumor) == 1 and [a.type for a in spline.other] == ["Dot"]
    zipped = c.annotations("test_001")  # read from testing/lesion_annotations.zip as distributed
    assert len(zipped.tumor) == 1 and len(zipped.exclusion) == 1
    assert c.annotation_file("test_001").endswith("lesion_annotations.zip:lesion_annotations/test_001.xml")
    assert c.annotations("normal_001").tumor == [] and c.annotations("test_002").tumor == []


def test_tile_tumour_fractions_on_the_tiling_grid(c16_root: Path) -> None:
    c = Camelyon16Slides(c16_root)
    for slide, expected in gen.EXPECTED_FRACTIONS.items():
        grid = tile_slide(c.slide(slide).path, TILE)
        frac = c.tumor_fraction(slide, grid)
        got = {(int(y), int(x)): float(f) for (y, x), f in zip(grid.coords, frac)}
        assert set(expected) <= set(got)  # the annotated tiles are tissue tiles
        for tile, value in got.items():
            assert value == pytest.approx(expected.get(tile, 0.0)), (slide, tile)
        labels = c.tile_labels(slide, grid)
        assert labels.sum() == sum(v >= 0.5 for v in expected.values())
    assert not c.tumor_fraction("normal_002", tile_slide(c.slide("normal_002").path, TILE)).any()


def test_fractions_match_the_drawn_lesions_at_any_level(c16_root: Path) -> None:
    mask = gen.tumour_mask("tumor_002").astype(np.float64)
    lesions = Camelyon16Slides(c16_root).annotations("tumor_002")
    for extent in (32, 64, 128):  # a tile of 64 px at level 1 covers 128 level-0 px
        ys, xs = np.mgrid[0 : gen.SIZE : extent, 0 : gen.SIZE : extent]
        coords = np.stack([ys.ravel(), xs.ravel()], 1)
        exact = mask.reshape(gen.SIZE // extent, extent, gen.SIZE // extent, extent).mean((1, 3)).ravel()
        np.testing.assert_allclose(lesions.tumor_fraction(coords, extent, samples=extent), exact, atol=1e-6)
        assert np.abs(lesions.tumor_fraction(coords, extent, samples=8) - exact).max() < 0.1
    # tiles away from every lesion cost nothing and are 0; overlapping polygons count once
    far = np.array([[10_000, 10_000]])
    assert tile_tumor_fraction(lesions.tumor, far, 64).tolist() == [0.0]
    square = np.array([[0, 0], [64, 0], [64, 64], [0, 64]], float)
    assert tile_tumor_fraction([square, square], np.array([[0, 0]]), 64).tolist() == [1.0]


def test_flat_layout_of_the_aws_copy(c16_root: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "annotations").mkdir()
    (flat / "evaluation").mkdir()
    for p in c16_root.rglob("*.tif"):
        shutil.copy(p, flat / "images" / p.name)
    for p in (c16_root / "training" / "lesion_annotations").glob("*.xml"):
        shutil.copy(p, flat / "annotations" / p.name)
    for slide in ("test_001", "test_003"):
        (flat / "annotations" / f"{slide}.xml").write_text(gen.asap_xml(slide))
    shutil.copy(c16_root / "testing" / "reference.csv", flat / "evaluation" / "reference.csv")
    c = Camelyon16Slides(flat)
    assert c.layout == "flat" and c.labels == Camelyon16Slides(c16_root).labels
    assert [s.split for s in c].count("test") == 4
    grid = tile_slide(c.slide("test_001").path, TILE)
    np.testing.assert_array_equal(c.tumor_fraction("test_001", grid),
                                  Camelyon16Slides(c16_root).tumor_fraction("test_001", grid))  # fmt: skip


def test_missing_parts_are_named(c16_root: Path, tmp_path: Path) -> None:
    with pytest.raises(Camelyon16MissingError, match=r"root folder not found.*training/normal/normal_NNN\.tif.*grand-challenge"):
        Camelyon16Slides(tmp_path / "nowhere")
    root = tmp_path / "partial"
    shutil.copytree(c16_root, root)
    (root / "testing" / "images" / "test_004.tif").unlink()
    with pytest.raises(Camelyon16MissingError, match="1 test slides of reference.csv have no image: test_004"):
        Camelyon16Slides(root)
    with pytest.warns(UserWarning, match="test_004; left out"):
        assert Camelyon16Slides(root, on_missing="skip").ids[-1] == "test_003"
    assert Camelyon16Slides(root, "train").ids[-1] == "tumor_003"  # the training split does not need the test files
    (root / "training" / "lesion_annotations" / "tumor_002.xml").unlink()
    with pytest.raises(Camelyon16MissingError, match="tumour slide tumor_002 has no lesion annotation"):
        Camelyon16Slides(root, "train").annotations("tumor_002")
    (root / "testing" / "reference.csv").unlink()
    with pytest.raises(Camelyon16MissingError, match=r"test labels not found: .*testing/reference\.csv"):
        Camelyon16Slides(root, "test")
    shutil.rmtree(root / "training" / "tumor")
    with pytest.raises(Camelyon16MissingError, match="training/tumor folder not found"):
        Camelyon16Slides(root, "train")


def test_bad_annotations_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<ASAP_Annotations><Annotations><Annotation Name="a" Type="Polygon" PartOfGroup="Stroma">'
                   '<Coordinates><Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="9" Y="0"/>'
                   '<Coordinate Order="2" X="9" Y="9"/></Coordinates></Annotation></Annotations></ASAP_Annotations>')  # fmt: skip
    with pytest.raises(ValueError, match=r"annotation 'a' is in group 'Stroma', neither tumour"):
        LesionAnnotations.from_annotations("s", read_asap_xml(bad), str(bad))
    assert len(LesionAnnotations.from_annotations("s", read_asap_xml(bad), tumor_groups=["Stroma"]).tumor) == 1
    bad.write_text('<ASAP_Annotations><Annotations><Annotation Name="a"><Coordinates><Coordinate Order="0" X="1,5" Y="0"/>'
                   "</Coordinates></Annotation></Annotations></ASAP_Annotations>")  # fmt: skip
    with pytest.raises(ValueError, match="bad.xml: annotation 'a' has a coordinate that is not a number"):
        read_asap_xml(bad)
    bad.write_text("<Annotations/>")
    with pytest.raises(ValueError, match="expected an <ASAP_Annotations> document"):
        read_asap_xml(bad)


def test_jpeg_slides_without_imagecodecs_are_named(tmp_path: Path) -> None:
    from tifffile import TIFF

    if 7 in TIFF.DECOMPRESSORS:
        pytest.skip("imagecodecs is installed: JPEG tiles decode")
    path = tmp_path / "tumor_009.tif"
    gen.write_slide(path, np.full((256, 256, 3), 200, np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tf:  # mark the tiles as JPEG, as the real slides are
        for page in tf.pages:
            page.tags["Compression"].overwrite(7)
    with pytest.raises(SlideReadError, match=r"tumor_009: .* JPEG-compressed.*pip install imagecodecs"):
        Slide(path)


def test_labels_feed_the_extraction_pipeline(c16_root: Path, tmp_path: Path) -> None:
    c = Camelyon16Slides(c16_root)
    assert read_labels(c.write_labels_csv(tmp_path / "labels.csv")) == c.labels  # `chanformer wsi extract --labels`


def test_datamodule_uses_the_official_split_and_labels(c16_root: Path, c16_store: Path) -> None:
    dm = Camelyon16DataModule(str(c16_root), str(c16_store), val_fraction=0.34)
    assert dm.splits["test"] == list(gen.TEST)
    assert sorted(dm.splits["train"] + dm.splits["val"]) == sorted([*gen.NORMAL, *gen.TUMOR])
    assert len(dm.splits["val"]) == 2 and dm.spec.class_names == ["normal", "tumor"] and dm.spec.feature_dim == 32
    test = dm.datasets["test"]
    assert test.labels.tolist() == [1, 0, 1, 0] and test[0].label == 1 and test[0].attrs["reference"] == ["Macro", "Primary"]
    # tile ground truth for a bag: its stored coordinates and tile size
    frac = dm.tile_fractions("tumor_001")
    grid = tile_slide(c16_root / "training" / "tumor" / "tumor_001.tif", TILE)
    np.testing.assert_array_equal(frac, dm.slides.tumor_fraction("tumor_001", grid))
    assert sorted(frac[frac > 0].tolist()) == [0.5, 1.0, 1.0, 1.0]


def test_store_problems_are_named(c16_root: Path, c16_store: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial.zarr"
    shutil.copytree(c16_store, partial)
    shutil.rmtree(partial / "bags" / "test_002")
    with pytest.raises(Camelyon16MissingError, match="1 CAMELYON16 slides have no complete bag: test_002"):
        Camelyon16DataModule(str(c16_root), str(partial))
    with pytest.warns(UserWarning, match="test_002; left out"):
        assert "test_002" not in Camelyon16DataModule(str(c16_root), str(partial), on_missing="skip").splits["test"]
    with pytest.raises(Camelyon16MissingError, match="bag store .* not found: extract it first"):
        Camelyon16DataModule(str(c16_root), str(tmp_path / "none.zarr"))
    wrong = tmp_path / "wrong.zarr"
    shutil.copytree(c16_store, wrong)
    store = BagStore(wrong)
    bag = store.read_bag("normal_001")
    store.write_bag("normal_001", bag.features.numpy(), bag.coords.numpy(), 1, tile_size=TILE)
    dm = Camelyon16DataModule(str(c16_root), str(wrong), val_fraction=0.0, normalize=False)
    with pytest.raises(BagError, match="slide normal_001: the bag in .* has label 1, CAMELYON16 says 0"):
        dm.datasets["train"][0]


def test_recipe_is_listed_and_trains_one_epoch(c16_root: Path, c16_store: Path, tmp_path: Path) -> None:
    assert "camelyon16-acmil" in list_recipes()
    cli = run_lightning_cli([
        "fit", "--config", resolve_config("camelyon16-acmil"), f"--data.init_args.root={c16_root}",
        f"--data.init_args.store={c16_store}", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        "--trainer.logger=false", "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp_path}", f"--model.init_args.export_dir={tmp_path / 'export'}",
    ])  # fmt: skip
    assert cli.trainer.global_step == 4  # 6 training slides, 1 of each class validates
    assert math.isfinite(float(cli.trainer.callback_metrics["test/loss"]))
    assert (tmp_path / "export" / "model.safetensors").is_file()
