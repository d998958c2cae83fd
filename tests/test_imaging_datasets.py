"""Image readers (OME-TIFF, TIFF, PNG, OME-Zarr, GeoTIFF), normaliser, transforms, manifest dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import zarr

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import ChannelVocab, UnknownChannelError
from chanformer.datasets.imaging.datasets import (
    ChannelNormalizer,
    ImageAugment,
    ImageManifestDataset,
    channel_shuffle,
    random_channel_drop,
    random_flip_rot,
    tile_grid,
)
from chanformer.datasets.imaging.microscopy import ImageReadError, read_image, read_tile
from chanformer.datasets.imaging.satellite import sensor_vocab

CP = Path(__file__).resolve().parents[2] / "shared" / "data" / "microscopy-cellprofiler"


def _ome(path: Path, data: np.ndarray, names: list[str], **meta) -> Path:
    md = {"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.5, **meta}
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=md)
    return path


def _ngff(path: Path, data: np.ndarray, labels: list[str]) -> Path:
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.create_array("0", data=data, chunks=(1, 16, 16))
    g.create_array("1", data=data[:, ::2, ::2], chunks=(1, 16, 16))
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.2 * 2**i, 0.2 * 2**i]}]}
        for i in range(2)]}]  # fmt: skip
    g.attrs["omero"] = {"channels": [{"label": n} for n in labels]}
    return path


def _geotiff(path: Path, bands: int = 8) -> tuple[Path, np.ndarray]:
    data = (np.arange(bands)[:, None, None] * 1000 + np.arange(32 * 40).reshape(32, 40)).astype(np.uint16)
    geokeys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633)
    extratags = [(33550, "d", 3, (2.0, 2.0, 0.0), True), (33922, "d", 6, (0, 0, 0, 500000.0, 4e6, 0), True),
                 (34735, "H", len(geokeys), geokeys, True)]  # fmt: skip
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate", extratags=extratags)
    return path, data


# -- readers ------------------------------------------------------------------------------
def test_ome_tiff_roundtrip(tmp_path):
    data = np.random.default_rng(0).integers(0, 65535, (3, 40, 50), dtype=np.uint16)
    p = _ome(tmp_path / "a.ome.tif", data, ["DAPI", "GFP", "Actin"])
    da = read_image(p)
    assert da.dims == ("channel", "y", "x") and da.shape == (3, 40, 50)
    assert da["channel"].values.tolist() == ["stain/DAPI", "stain/GFP", "stain/Actin"]
    assert da.attrs["pixel_size_um"] == pytest.approx((0.5, 0.325)) and da.attrs["source"] == str(p)
    np.testing.assert_array_equal(da.values, data)
    sub = read_image(p, channels=["Actin", "stain/DAPI"])
    np.testing.assert_array_equal(sub.values, data[[2, 0]])
    with pytest.raises(ImageReadError, match=r"a\.ome\.tif.*'Cy5'") as e:
        read_image(p, channels=["Cy5"])
    assert e.value.channel == "Cy5"


def test_plain_tiff_and_png(tmp_path):
    data = np.arange(2 * 8 * 9, dtype=np.uint16).reshape(2, 8, 9)
    tifffile.imwrite(tmp_path / "m.tif", data, photometric="minisblack")
    da = read_image(tmp_path / "m.tif")
    assert da["channel"].values.tolist() == ["ch0", "ch1"]
    np.testing.assert_array_equal(da.values, data)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(data[0].astype(np.uint8)).save(tmp_path / "g.png")
    png = read_image(tmp_path / "g.png")
    assert png.shape == (1, 8, 9) and png["channel"].values.tolist() == ["ch0"]


def test_ome_zarr_levels(tmp_path):
    data = np.arange(2 * 32 * 48, dtype=np.uint16).reshape(2, 32, 48)
    p = _ngff(tmp_path / "img.zarr", data, ["DNA", "Tubulin"])
    da0, da1 = read_image(p), read_image(p, level=1)
    assert da0["channel"].values.tolist() == ["stain/DNA", "stain/Tubulin"]
    assert da0.shape == (2, 32, 48) and da1.shape == (2, 16, 24)
    assert da0.attrs["pixel_size_um"] == pytest.approx((0.2, 0.2)) and da1.attrs["pixel_size_um"] == pytest.approx((0.4, 0.4))
    np.testing.assert_array_equal(da1.values, data[:, ::2, ::2])
    np.testing.assert_array_equal(read_tile(da0, 8, 16, 16), data[:, 8:24, 16:32])
    with pytest.raises(ImageReadError, match="no multiscale level 2"):
        read_image(p, level=2)


def test_geotiff_worldview2(tmp_path):
    p, data = _geotiff(tmp_path / "wv.tif")
    da = read_image(p, sensor="worldview2")
    assert da["channel"].values.tolist() == sensor_vocab("wv2").keys
    assert da["wavelength_nm"].values.tolist() == [427, 478, 546, 608, 659, 724, 831, 908]
    assert da.attrs["pixel_size_m"] == (2.0, 2.0) and da.attrs["crs_epsg"] == 32633
    np.testing.assert_array_equal(da.values, data)
    s2 = read_image(_geotiff(tmp_path / "s2.tif", 4)[0], sensor="s2")
    assert s2["channel"].values.tolist() == ["s2/B02", "s2/B03", "s2/B04", "s2/B08"]
    l8 = read_image(_geotiff(tmp_path / "l8.tif", 3)[0], sensor="landsat9", bands=["B4", "band3", "B02"])
    assert l8["channel"].values.tolist() == ["l8/B4", "l8/B3", "l8/B2"]


def test_large_tiled_tiff_reads_only_tile(tmp_path, monkeypatch):
    y, x = np.mgrid[0:4096, 0:4096]
    data = ((y * 7 + x * 13) % 65536).astype(np.uint16)
    p = tmp_path / "big.tif"
    tifffile.imwrite(p, data, tile=(256, 256), photometric="minisblack")
    del y, x
    monkeypatch.setattr(tifffile.TiffFile, "asarray", lambda *a, **k: pytest.fail("whole image loaded"))
    da = read_image(p)
    tile = read_tile(da, 1000, 3000, 300)
    np.testing.assert_array_equal(tile[0], data[1000:1300, 3000:3300])
    df = pd.DataFrame({"path": [str(p)], "label": [1]})
    ds = ImageManifestDataset(df, ChannelVocab("v", ["ch0"]), tile=128, seed=0)
    s = ds[0]
    assert s.values.shape == (1, 128, 128) and s.values.dtype == torch.float32 and int(s.target) == 1


# -- errors ------------------------------------------------------------------------------
def test_errors(tmp_path):
    data = np.zeros((3, 8, 8), np.uint16)
    p = _ome(tmp_path / "e.ome.tif", data, ["A", "B", "C"])
    # channel count disagreeing with metadata (manifest names 2 for a 3-channel file)
    ds = ImageManifestDataset(pd.DataFrame({"path": [str(p)], "channels": ["A;B"]}), ChannelVocab())
    with pytest.raises(ImageReadError, match=r"e\.ome\.tif.*2 channels"):
        ds[0]
    z = _ngff(tmp_path / "bad.zarr", data, ["A", "B"])  # omero lists 2 channels for 3
    with pytest.raises(ImageReadError, match=r"bad\.zarr.*2 channels"):
        read_image(z)
    gp, _ = _geotiff(tmp_path / "g.tif", 5)
    with pytest.raises(ImageReadError, match=r"g\.tif: 5 bands"):
        read_image(gp, sensor="worldview2")
    with pytest.raises(ImageReadError, match=r"g\.tif: unknown band 'Purple'") as e:
        read_image(gp, sensor="worldview2", bands=["Coastal", "Blue", "Green", "Red", "Purple"])
    assert e.value.channel == "Purple"
    # 0-size image
    zg = zarr.open_group(str(tmp_path / "empty.zarr"), mode="w", zarr_format=2)
    zg.create_array("0", shape=(1, 0, 4), dtype="uint8")
    zg.attrs["multiscales"] = [{"axes": ["c", "y", "x"], "datasets": [{"path": "0"}]}]
    with pytest.raises(ImageReadError, match=r"empty\.zarr: 0-size"):
        read_image(tmp_path / "empty.zarr")
    # image smaller than the tile
    with pytest.raises(ImageReadError, match=r"e\.ome\.tif.*smaller than the requested 16x16"):
        read_tile(read_image(p), 0, 0, 16)
    small = ImageManifestDataset(pd.DataFrame({"path": [str(p)]}), ChannelVocab(), tile=9, grow_vocab=True)
    with pytest.raises(ImageReadError, match="smaller than the requested 9x9"):
        small[0]
    with pytest.raises(ValueError, match="smaller"):
        tile_grid((8, 8), 9)
    # corrupt Zarr chunk: lazy open works, reading the chunk names the store
    good = _ngff(tmp_path / "c.zarr", np.ones((1, 32, 32), np.uint16), ["A"])
    (good / "0" / "0.0.0").write_bytes(b"garbage" * 10)
    da = read_image(good)
    with pytest.raises(ImageReadError, match=r"c\.zarr: cannot read pixels"):
        da.values  # noqa: B018
    # unknown channel key in the vocabulary
    with pytest.raises(UnknownChannelError, match="stain/A"):
        ImageManifestDataset(pd.DataFrame({"path": [str(p)]}), ChannelVocab())[0]


# -- normaliser --------------------------------------------------------------------------
def test_normalizer_uint16_no_overflow_and_json(tmp_path):
    x = np.full((2, 64, 64), 65535, np.uint16)
    x[0, :32] = 65000
    x[1] = np.arange(64 * 64).reshape(64, 64) % 2 + 65534
    norm = ChannelNormalizer("meanstd").fit([(x, ["stain/A", "stain/B"])])
    mean_a, std_a = norm.stats["stain/A"]
    assert mean_a == pytest.approx(65267.5) and std_a == pytest.approx(267.5)
    assert norm.stats["stain/B"] == pytest.approx((65534.5, 0.5))
    out = norm(x, ["stain/A", "stain/B"])
    assert out.dtype == np.float32 and np.isfinite(out).all() and set(np.unique(out[1])) == {-1.0, 1.0}
    pct = ChannelNormalizer().fit([(x[:1], ["stain/A"]), (x[1:], ["stain/B"])])
    lo, rng = pct.stats["stain/A"]
    assert lo == 65000 and rng == pytest.approx(535)
    pct.save(tmp_path / "n" / "stats.json")
    back = ChannelNormalizer.load(tmp_path / "n" / "stats.json")
    assert back.stats == pct.stats and back.method == "percentile"
    np.testing.assert_array_equal(back(x[:1], ["stain/A"]), pct(x[:1], ["stain/A"]))
    with pytest.raises(UnknownChannelError, match="stain/C"):
        back(x[:1], ["stain/C"])


# -- transforms ---------------------------------------------------------------------------
def test_transforms_keep_identity():
    c = 5
    v = torch.arange(c, dtype=torch.float32)[:, None, None] * 100 + torch.arange(64.0).reshape(1, 8, 8)
    ids = torch.tensor([11, 12, 13, 14, 15])
    rng = np.random.default_rng(0)
    for _ in range(20):
        sv, sid, _ = channel_shuffle(v, ids, rng)
        dv, did, _ = random_channel_drop(sv, sid, 0.7, rng)
        fv = random_flip_rot(dv, rng)
        assert len(did) >= 1
        for k, cid in enumerate(did.tolist()):
            orig = cid - 11
            assert torch.equal(torch.sort(fv[k].flatten()).values, v[orig].flatten())  # same pixels
            assert float(fv[k].min()) == orig * 100
    aug = ImageAugment(channel_drop=0.5, shuffle=True, seed=1)
    s = aug(ChannelSample(v, ids))
    assert all(float(s.values[k].min()) == (i - 11) * 100 for k, i in enumerate(s.channel_ids.tolist()))
    grid = tile_grid((10, 12), 4, 3)
    assert grid[0] == (0, 0) and grid[-1] == (6, 8) and (6, 3) in grid


# -- real CellProfiler example sets ------------------------------------------------------
def _cellprofiler_manifest() -> pd.DataFrame:
    rows = []
    for f in sorted((CP / "ExampleHuman" / "images").glob("*.tif")):
        rows.append(("human", f, {"d0": "DNA", "d1": "PH3", "d2": "CellBody"}[f.stem[-2:]]))
    for f in sorted((CP / "ExampleFly" / "images").glob("*.TIF")):
        rows.append((f"fly_{f.stem.split('_')[1]}", f, f"fly_{f.stem[-1]}"))
    for f in sorted((CP / "ExampleColocalization" / "images").glob("*.png")):
        rows.append((f"coloc_{f.stem[:3]}", f, {"G": "Cy3", "R": "Cy5"}[f.stem[-1]]))
    return pd.DataFrame(rows, columns=["image_id", "path", "channel"]).assign(path=lambda d: d.path.astype(str))


@pytest.mark.skipif(not CP.is_dir(), reason=f"CellProfiler example images not found at {CP}")
def test_cellprofiler_manifest(tmp_path):
    df = _cellprofiler_manifest()
    df.to_csv(tmp_path / "manifest.csv", index=False)
    vocab = ChannelVocab("stains")
    ds = ImageManifestDataset(tmp_path / "manifest.csv", vocab, grow_vocab=True)
    assert len(ds) == 1 + 3 + 2
    shapes = {ds.items[i]["id"]: ds.open(i)[0][0].shape[1:] for i in range(len(ds))}
    counts = {ds.items[i]["id"]: sum(d.sizes["channel"] for d in ds.open(i)[0]) for i in range(len(ds))}
    assert counts["human"] == 3 and shapes["human"] == (512, 512)
    assert all(counts[k] == 3 and shapes[k] == (1006, 1000) for k in counts if k.startswith("fly"))
    assert all(counts[k] == 2 and shapes[k] == (1040, 1392) for k in counts if k.startswith("coloc"))
    norm = ds.fit_normalizer(tmp_path / "norm.json", max_pixels=100_000)
    assert (tmp_path / "norm.json").exists() and "stain/Cy5" in norm.stats
    assert ds.fit_normalizer(tmp_path / "norm.json").stats == norm.stats  # loaded, not recomputed
    ds.tile = 256
    samples = [ds[i] for i in range(len(ds))]
    assert [s.values.shape[0] for s in samples] == [3, 3, 3, 3, 2, 2]
    batch = ChannelBatch.collate(samples)
    assert batch.values.shape == (6, 3, 256, 256) and batch.mask.sum().item() == 3 + 9 + 4
    assert torch.isfinite(batch.values).all() and len(vocab) == 3 + 3 + 2
