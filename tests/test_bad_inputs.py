"""Bad-input matrix for the data readers: every case must raise a named error (the expected type,
and a message naming the file, argument, line, channel or chunk), never a silently wrong result.

Plus property tests that corrupt real files (truncation at random offsets, random byte flips) and
accept only a named error or a correct result.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanformer.datasets.eeg.readers import EEGWindowDataset, TruncatedRecordingError, read_recording
from chanformer.datasets.imaging.datasets import ChannelNormalizer, ImageManifestDataset
from chanformer.datasets.imaging.microscopy import ImageReadError, read_image, read_tile
from chanformer.datasets.timeseries.datasets import ChannelStats, ForecastingDataset, UEADataset
from chanformer.datasets.timeseries.ts_format import TsFormatError, read_ts
from chanformer.datasets.wsi.slides import Slide, SlideReadError, tile_slide, write_pyramid

from .conftest import DATA

EEG = DATA / "eeg-formats"
EDF = EEG / "EDF" / "chtypes_edf.edf"
EDF_BIG = EEG / "EDF" / "test_reduced.edf"
BDF = EEG / "BDF" / "test_bdf_stim_channel.bdf"
BRAINVISION = EEG / "Brainvision"
UEA = DATA / "uea"
EYES = UEA / "EyesOpenShut_TEST.ts"

needs_eeg = pytest.mark.skipif(not EDF.is_file(), reason=f"{EEG} (shared real EEG files) is not present")
needs_uea = pytest.mark.skipif(not EYES.is_file(), reason=f"{UEA} (shared real UEA archives) is not present")
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- builders ----------------------------------------------------------------------------------
def ts_file(tmp: Path, body: str, header: str = "@problemName P\n@dimensions 2\n@classLabel true a b\n") -> Path:
    path = tmp / "bad.ts"
    path.write_text(header + "@data\n" + body)
    return path


def read_ts_case(header: str | None, body: str) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        return read_ts(ts_file(tmp, body) if header is None else ts_file(tmp, body, header))

    return run


EQ = "@problemName P\n@dimensions 2\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n"
UNI = "@problemName P\n@univariate true\n@classLabel true a b\n"
REG = "@problemName P\n@univariate true\n@targetLabel true\n"


def csv_file(tmp: Path, values: list[object], name: str = "table.csv") -> Path:
    n = 40
    col = np.arange(n, dtype=object)
    for i, v in enumerate(values):
        col[3 + i] = v
    df = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="h"), "a": col, "b": np.arange(n)})
    path = tmp / name
    df.to_csv(path, index=False)
    return path


def forecast(tmp: Path, values: list[object], **kw: object) -> object:
    return ForecastingDataset(csv_file(tmp, values), seq_len=4, horizon=2, **kw)  # type: ignore[arg-type]


def edf_cut(src: Path, keep: int | Callable[[int], int], name: str | None = None) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        dst = tmp / (name or src.name)
        data = src.read_bytes()
        n = keep(len(data)) if callable(keep) else keep
        dst.write_bytes(data[:n])
        return dst

    return make


def edf_records(src: Path, delta: int) -> Callable[[Path], Path]:
    """A copy whose header declares ``delta`` more data records than the file holds."""

    def make(tmp: Path) -> Path:
        data = bytearray(src.read_bytes())
        n = int(data[236:244].decode().strip()) + delta
        data[236:244] = f"{n:<8d}".encode()
        dst = tmp / f"more_{src.name}"
        dst.write_bytes(bytes(data))
        return dst

    return make


def tiff(tmp: Path, array: np.ndarray, name: str = "img.tif") -> Path:
    import tifffile

    path = tmp / name
    tifffile.imwrite(path, array)
    return path


def manifest(tmp: Path, array: np.ndarray, **kw: object) -> ImageManifestDataset:
    from chanformer.channels import ChannelVocab

    path = tiff(tmp, array, "pix.tif")
    (tmp / "m.csv").write_text(f"path,channels\n{path.name},DAPI;GFP\n")
    return ImageManifestDataset(tmp / "m.csv", ChannelVocab("img", []), grow_vocab=True, **kw)  # type: ignore[arg-type]


def ome_zarr(tmp: Path, fmt: int = 3, drop: tuple[tuple[int, ...], ...] = ((1, 0, 1),), name: str = "img.zarr") -> Path:
    import zarr

    path = tmp / name
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    arr = group.create_array("0", shape=(2, 64, 64), chunks=(1, 32, 32), dtype="uint16")
    arr[:] = np.random.default_rng(0).integers(1, 1000, (2, 64, 64))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    group.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0"}]}]
    for idx in drop:
        os.remove(path / "0" / arr.metadata.encode_chunk_key(idx))
    return path


def slide(tmp: Path, name: str = "s.tif", gray: bool = False, grey_rgb: bool = False, levels: int = 3) -> Path:
    import tifffile

    rng = np.random.default_rng(1)
    img = np.full((256, 256, 3), 240, np.uint8)
    img[64:192, 64:192] = (200, 120, 170) + rng.integers(-20, 20, (128, 128, 3))
    if grey_rgb:
        img = np.repeat(img[..., :1], 3, axis=-1)
    if not gray:
        return write_pyramid(tmp / name, img, levels=levels, tile=64)
    g = img[..., 0]
    path = tmp / name
    with tifffile.TiffWriter(path) as tif:
        tif.write(g, subifds=levels - 1, tile=(64, 64))
        for i in range(1, levels):
            tif.write(g[:: 2**i, :: 2**i], subfiletype=1, tile=(64, 64))
    return path


def cut_file(path: Path, frac: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * frac)])
    return out


def read_all_levels(path: Path) -> list[np.ndarray]:
    with Slide(path) as s:
        return [s.read_level(i) for i in range(s.n_levels)]


# -- the matrix --------------------------------------------------------------------------------
# (id, run(tmp_path), expected exception type, regex the message must match: it names the file
# or argument, and the place)
CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    # .ts values
    ("ts-inf", read_ts_case(None, "1,inf:3,4:a\n"), TsFormatError, r"bad\.ts, line 5: dimension 0, value 1: 'inf' is infinite"),
    ("ts-neg-inf", read_ts_case(None, "1,2:3,-inf:a\n"), TsFormatError, r"bad\.ts, line 5: dimension 1, value 1: '-inf' is inf"),
    ("ts-Infinity", read_ts_case(None, "1,2:3,4:a\n1,2:Infinity,4:b\n"), TsFormatError, r"bad\.ts, line 6: dimension 1, value 0"),
    (
        "ts-overflow-f32",
        read_ts_case(None, "1,2:3,1e39:a\n"),
        TsFormatError,
        r"bad\.ts, line 5: dimension 1, value 1: '1e39' overflows float32",
    ),
    (
        "ts-overflow-f64",
        read_ts_case(None, "1e400,2:3,4:a\n"),
        TsFormatError,
        r"bad\.ts, line 5: dimension 0, value 0: '1e400' overflows",
    ),
    ("ts-negative-overflow", read_ts_case(None, "-3.5e38,2:3,4:a\n"), TsFormatError, r"bad\.ts, line 5: dimension 0.*overflows"),
    ("ts-many-inf", read_ts_case(UNI, "inf,inf,1:a\n"), TsFormatError, r"bad\.ts, line 5: dimension 0, value 0.*\(2 such values"),
    (
        "ts-timestamped-inf",
        read_ts_case(
            "@problemName T\n@timeStamps true\n@univariate true\n@classLabel true a\n",
            "(2007-01-01 00:00:00,1.5),(2007-01-01 00:01:00,inf):a\n",
        ),
        TsFormatError,
        r"bad\.ts, line 6: dimension 0, value 1: 'inf' is infinite",
    ),
    (
        "ts-target-inf",
        read_ts_case(REG, "1,2,3:0.5\n4,5,6:inf\n"),
        TsFormatError,
        r"bad\.ts, line 6: row 2 regression target, value 0: .inf. is infinite",
    ),
    (
        "ts-target-overflow",
        read_ts_case(REG, "1,2,3:1e39\n"),
        TsFormatError,
        r"bad\.ts, line 5: row 1 regression target.*overflows",
    ),
    ("ts-target-text", read_ts_case(REG, "1,2,3:x\n"), TsFormatError, r"bad\.ts, line 5: regression target 'x'"),
    (
        "ts-bad-number",
        read_ts_case(None, "1,2x:3,4:a\n"),
        TsFormatError,
        r"bad\.ts, line 5: dimension 0: cannot parse value '2x'",
    ),
    ("ts-empty-dimension", read_ts_case(None, "1,2::a\n"), TsFormatError, r"bad\.ts, line 5: dimension 1 is empty"),
    # .ts rows and header
    (
        "ts-truncated-row",
        read_ts_case(None, "1,2:3,4:a\n1,2:3\n"),
        TsFormatError,
        r"bad\.ts, line 6: row 2 has 1 dimensions, header declares 2 "
        r"\(\+ the label: 3 ':'-separated fields expected, found 2; truncated",
    ),
    (
        "ts-truncated-row-inferred-dims",
        read_ts_case(UNI.replace("@univariate true\n", ""), "1,2:3,4:a\n1,2:3\n"),
        TsFormatError,
        r"bad\.ts, line 5: row 2 has 1 dimensions, row 1 has 2",
    ),
    ("ts-row-without-label", read_ts_case(UNI, "1,2,3\n"), TsFormatError, r"bad\.ts, line 5: row 1 has no ':'-separated label"),
    (
        "ts-too-many-dims",
        read_ts_case(None, "1,2:3,4:5,6:a\n"),
        TsFormatError,
        r"bad\.ts, line 5: row 1 has 3 dimensions, header declares 2",
    ),
    (
        "ts-undeclared-label",
        read_ts_case(None, "1,2:3,4:c\n"),
        TsFormatError,
        r"bad\.ts, line 5: row 1: class label 'c' is not declared",
    ),
    (
        "ts-rows-differ-equal-length",
        read_ts_case(EQ, "1,2,3:4,5,6:a\n1,2,3,4:4,5,6,7:b\n"),
        TsFormatError,
        r"bad\.ts, line 8: row 2 has 4 values per dimension, header declares @seriesLength 3, row 1 \(line 7\) has 3",
    ),
    (
        "ts-dims-differ-equal-length",
        read_ts_case(EQ, "1,2,3:4,5:a\n"),
        TsFormatError,
        r"bad\.ts, line 7: row 1: dimension 1 has 2 values, dimension 0 has 3 \(@equalLength true",
    ),
    (
        "ts-classlabel-no-value",
        read_ts_case("@classLabel\n", "1:a\n"),
        TsFormatError,
        r"bad\.ts, line 1: @classlabel must be 'true' or 'false'",
    ),
    (
        "ts-classlabel-false-with-labels",
        read_ts_case("@classLabel false 0 1\n", "1,2\n"),
        TsFormatError,
        r"bad\.ts, line 1: @classLabel false must not list labels",
    ),
    (
        "ts-classlabel-duplicate",
        read_ts_case("@classLabel true a a\n", "1:a\n"),
        TsFormatError,
        r"bad\.ts, line 1: @classLabel lists duplicate",
    ),
    (
        "ts-dimensions-zero",
        read_ts_case("@dimensions 0\n", "1\n"),
        TsFormatError,
        r"bad\.ts, line 1: @dimensions must be positive",
    ),
    (
        "ts-dimensions-text",
        read_ts_case("@dimensions two\n", "1\n"),
        TsFormatError,
        r"bad\.ts, line 1: @dimensions must be an integer",
    ),
    ("ts-unknown-tag", read_ts_case("@colour red\n", "1\n"), TsFormatError, r"bad\.ts, line 1: unknown header tag @colour"),
    ("ts-no-cases", read_ts_case(None, ""), TsFormatError, r"bad\.ts: no cases after @data"),
    ("ts-no-data-tag", lambda tmp: read_ts(_write(tmp / "bad.ts", "@problemName P\n")), TsFormatError, r"bad\.ts: no @data line"),
    (
        "ts-binary",
        lambda tmp: read_ts(_write(tmp / "bad.ts", b"@data\n\xff\xfe\x00")),
        TsFormatError,
        r"bad\.ts: not a UTF-8 text file",
    ),
    ("ts-missing-file", lambda tmp: read_ts(tmp / "absent.ts"), FileNotFoundError, r"absent\.ts"),
    # time-series datasets
    (
        "uea-classlabel-false",
        lambda tmp: UEADataset(ts_file(tmp, "1,2\n", "@univariate true\n@classLabel false\n")),
        ValueError,
        r"bad\.ts has no labels \(@classLabel false",
    ),
    ("uea-datamodule-classlabel-false", lambda tmp: _uea_datamodule(tmp), ValueError, r"X_TRAIN\.ts: @classLabel is not true"),
    (
        "uea-in-memory-inf",
        lambda tmp: _uea_in_memory_inf(tmp),
        ValueError,
        r"bad\.ts: case 1 \(line 6\), channel series/dim_1, step 0: value inf is infinite",
    ),
    (
        "uea-stats-overflow",
        lambda tmp: UEADataset(
            ts_file(tmp, "1e30,2:3,4:a\n"), normalize="dataset", stats=ChannelStats(np.zeros(2), np.array([1e-30, 1.0]))
        ),
        ValueError,
        r"bad\.ts: case 0 \(line 5\), channel series/dim_0, step 0: .*infinite after normalisation",
    ),
    (
        "uea-channel-names",
        lambda tmp: UEADataset(ts_file(tmp, "1,2:3,4:a\n"), channel_names=["x"]),
        ValueError,
        r"bad\.ts has 2 dimensions but channel_names lists 1",
    ),
    (
        "uea-stats-channels",
        lambda tmp: UEADataset(ts_file(tmp, "1,2:3,4:a\n"), normalize="dataset", stats=ChannelStats(np.zeros(3), np.ones(3))),
        ValueError,
        r"stats have 3 channels, .*bad\.ts has 2",
    ),
    (
        "stats-nan-std",
        lambda tmp: ChannelStats(np.zeros(2), np.array([1.0, np.nan])),
        ValueError,
        r"channel 1 \(mean 0, std nan\)",
    ),
    ("stats-zero-std", lambda tmp: ChannelStats(np.zeros(2), np.array([0.0, 1.0])), ValueError, r"channel 0 \(mean 0, std 0\)"),
    (
        "stats-inf-mean-json",
        lambda tmp: ChannelStats.from_json({"mean": [np.inf], "std": [1.0]}),
        ValueError,
        r"channel 0 \(mean inf",
    ),
    # CSV forecasting tables
    (
        "csv-inf",
        lambda tmp: forecast(tmp, ["inf"]),
        ValueError,
        r"table\.csv: value inf in column 'a' at row 3 \(date=2020-01-01 03:00",
    ),
    ("csv-neg-inf", lambda tmp: forecast(tmp, [1, "-inf"]), ValueError, r"table\.csv: value -inf in column 'a' at row 4"),
    (
        "csv-overflow",
        lambda tmp: forecast(tmp, ["1e39"]),
        ValueError,
        r"table\.csv: value 1e\+39 in column 'a' at row 3 .*overflows float32",
    ),
    ("csv-nan", lambda tmp: forecast(tmp, [""]), ValueError, r"table\.csv: NaN in column 'a' at row 3"),
    ("csv-text", lambda tmp: forecast(tmp, ["abc"]), ValueError, r"table\.csv: non-numeric column\(s\) \['a'\]"),
    (
        "csv-no-date",
        lambda tmp: ForecastingDataset(csv_file(tmp, []), date_col="when"),
        ValueError,
        r"table\.csv has no 'when' column",
    ),
    (
        "csv-absent-column",
        lambda tmp: ForecastingDataset(csv_file(tmp, []), columns=["zz"]),
        ValueError,
        r"table\.csv has no column\(s\) \['zz'\]",
    ),
    (
        "csv-too-short",
        lambda tmp: ForecastingDataset(csv_file(tmp, []), seq_len=96, horizon=96),
        ValueError,
        r"table\.csv has 40 rows",
    ),
    (
        "csv-binary",
        lambda tmp: ForecastingDataset(_write(tmp / "t.parquet", b"PAR1\x00garbage")),
        ValueError,
        r"cannot read forecasting table .*t\.parquet",
    ),
    ("csv-missing", lambda tmp: ForecastingDataset(tmp / "none.csv"), FileNotFoundError, r"none\.csv"),
    (
        "csv-scaled-overflow",
        lambda tmp: forecast(tmp, [], stats=ChannelStats(np.zeros(2), np.array([1e-300, 1.0]))),
        ValueError,
        r"table\.csv: column 'a', row \d+: scaled value .* does not fit float32",
    ),
    # EEG
    (
        "edf-cut-one-record",
        lambda tmp: read_recording(edf_cut(EDF, lambda n: n - 1)(tmp)),
        TruncatedRecordingError,
        r"chtypes_edf\.edf: truncated recording: the header declares 5 records x 1 s = 5 s .* 4 complete record\(s\) = 4 s",
    ),
    (
        "edf-cut-half",
        lambda tmp: read_recording(edf_cut(EDF_BIG, lambda n: n // 2)(tmp)),
        TruncatedRecordingError,
        r"test_reduced\.edf: truncated recording: the header declares 6 records x 1 s = 6 s .* = 2 s",
    ),
    (
        "edf-cut-after-header",
        lambda tmp: read_recording(edf_cut(EDF, 256 * 44 + 10)(tmp)),
        (TruncatedRecordingError, ValueError),
        r"chtypes_edf\.edf",
    ),
    (
        "edf-cut-in-header",
        lambda tmp: read_recording(edf_cut(EDF, 300)(tmp)),
        ValueError,
        r"cannot read EEG recording .*chtypes_edf\.edf",
    ),
    ("edf-empty", lambda tmp: read_recording(edf_cut(EDF, 0)(tmp)), ValueError, r"cannot read EEG recording .*chtypes_edf\.edf"),
    (
        "edf-declares-more-records",
        lambda tmp: read_recording(edf_records(EDF, 3)(tmp)),
        TruncatedRecordingError,
        r"more_chtypes_edf\.edf: truncated recording: the header declares 8 records x 1 s = 8 s .* 5 complete record\(s\) = 5 s",
    ),
    (
        "bdf-cut",
        lambda tmp: read_recording(edf_cut(BDF, lambda n: n - 1000)(tmp)),
        TruncatedRecordingError,
        r"test_bdf_stim_channel\.bdf: truncated recording: the header declares 10 records",
    ),
    (
        "edf-cut-dataset",
        lambda tmp: EEGWindowDataset([edf_cut(EDF, lambda n: n - 5)(tmp)], on_unknown="drop"),
        TruncatedRecordingError,
        r"chtypes_edf\.edf: truncated recording",
    ),
    ("eeg-missing", lambda tmp: read_recording(tmp / "none.edf"), FileNotFoundError, r"none\.edf"),
    (
        "eeg-events-past-end",
        lambda tmp: EEGWindowDataset([BDF], mode="events", label_map={"1": 0, "2": 1, "4": 2}, tmax=0.5, out_of_range="raise"),
        ValueError,
        r"test_bdf_stim_channel\.bdf: 1 of 9 event\(s\) have a window \[0, 0\.5\) s "
        r"outside the recording \(0 to 10 s\): '1' at 9\.58 s",
    ),
    (
        "eeg-events-before-start",
        lambda tmp: EEGWindowDataset([BDF], mode="events", label_map={"4": 0}, tmin=-5.0, tmax=0.5, out_of_range="raise"),
        ValueError,
        r"test_bdf_stim_channel\.bdf: 1 of 1 event\(s\) have a window \[-5, 0\.5\)",
    ),
    (
        "eeg-label-never-seen",
        lambda tmp: EEGWindowDataset([BDF], mode="events", label_map={"99": 0}),
        ValueError,
        r"label_map key\(s\) \['99'\] occur in no recording \(.*test_bdf_stim_channel\.bdf",
    ),
    (
        "eeg-out-of-range-arg",
        lambda tmp: EEGWindowDataset([BDF], out_of_range="ignore"),
        ValueError,  # type: ignore[arg-type]
        r"out_of_range must be 'warn' or 'raise', got 'ignore'",
    ),
    ("eeg-events-no-label-map", lambda tmp: EEGWindowDataset([BDF], mode="events"), ValueError, r"label_map"),
    ("eeg-bad-window", lambda tmp: EEGWindowDataset([BDF], window_s=0.0011), ValueError, r"window_s=0\.0011 s is 0\.55 samples"),
    # imaging: dtypes, non-finite pixels, normaliser statistics
    (
        "tiff-complex64",
        lambda tmp: read_image(tiff(tmp, np.full((2, 8, 8), 1 + 2j, np.complex64))),
        ImageReadError,
        r"img\.tif: complex-valued pixels \(dtype complex64\)",
    ),
    (
        "tiff-complex128",
        lambda tmp: read_image(tiff(tmp, np.full((8, 8), 1j, np.complex128))),
        ImageReadError,
        r"img\.tif: complex-valued pixels \(dtype complex128\)",
    ),
    (
        "tiff-complex-manifest",
        lambda tmp: manifest(tmp, np.full((2, 8, 8), 1j, np.complex64))[0],
        ImageReadError,
        r"pix\.tif: complex-valued",
    ),
    (
        "tiff-nan-pixel",
        lambda tmp: manifest(tmp, _with(np.ones((2, 8, 8), np.float32), (1, 2, 3), np.nan))[0],
        ImageReadError,
        r"pix\.tif \(image 0\): non-finite \(NaN/inf\) pixels in channel\(s\) stain/GFP \(1 pixel\(s\)\)",
    ),
    (
        "tiff-inf-pixel",
        lambda tmp: manifest(tmp, _with(np.ones((2, 8, 8), np.float32), (0, 0, 0), np.inf))[0],
        ImageReadError,
        r"pix\.tif \(image 0\): non-finite .* stain/DAPI",
    ),
    ("tiff-nan-normalised", lambda tmp: _normalised_nan(tmp), ImageReadError, r"pix\.tif \(image 0\): non-finite .* stain/GFP"),
    (
        "tiff-f64-overflow",
        lambda tmp: manifest(tmp, _with(np.ones((2, 8, 8)), (1, 0, 0), 1e300))[0],
        ImageReadError,
        r"image 0.*channel stain/GFP: pixel values overflow float32",
    ),
    (
        "normaliser-nan-input",
        lambda tmp: _fitted()(np.full((1, 2, 2), np.nan), ["stain/A"], source="x.tif"),
        ValueError,
        r"x\.tif: non-finite \(NaN/inf\) pixels in channel\(s\) stain/A \(4 pixel",
    ),
    (
        "normaliser-nan-stats",
        lambda tmp: ChannelNormalizer(stats={"stain/A": (0.0, float("nan"))}),
        ValueError,
        r"non-finite statistics .* for channel\(s\) stain/A",
    ),
    (
        "normaliser-file-inf",
        lambda tmp: ChannelNormalizer.load(_write(tmp / "n.json", '{"stats": {"stain/B": [Infinity, 1]}}')),
        ValueError,
        r"normaliser file .*n\.json: .*stain/B",
    ),
    (
        "normaliser-file-json",
        lambda tmp: ChannelNormalizer.load(_write(tmp / "n.json", "{")),
        ValueError,
        r"normaliser file .*n\.json is not valid JSON",
    ),
    (
        "normaliser-fill-arg",
        lambda tmp: ChannelNormalizer(fill_nonfinite=float("nan")),
        ValueError,
        r"fill_nonfinite must be a finite number",
    ),
    (
        "normaliser-complex",
        lambda tmp: _fitted()(np.ones((1, 2, 2), np.complex64), ["stain/A"], source="c.tif"),
        ValueError,
        r"c\.tif: complex values",
    ),
    # imaging: OME-Zarr chunks and files
    (
        "zarr-v3-missing-chunk",
        lambda tmp: read_image(ome_zarr(tmp)).values,
        ImageReadError,
        r"img\.zarr: array '0' \(level 0, chunk grid \(2, 2, 2\)\) has no stored chunk at chunk index \(1, 0, 1\)",
    ),
    (
        "zarr-v2-missing-chunk",
        lambda tmp: read_image(ome_zarr(tmp, fmt=2)).values,
        ImageReadError,
        r"img\.zarr: array '0' .* chunk index \(1, 0, 1\)",
    ),
    (
        "zarr-missing-chunks-listed",
        lambda tmp: read_image(ome_zarr(tmp, drop=((0, 0, 0), (1, 1, 1)))).values,
        ImageReadError,
        r"img\.zarr: .* chunk index \(0, 0, 0\), \(1, 1, 1\); zarr would read them as the fill value 0",
    ),
    (
        "zarr-missing-chunk-tile",
        lambda tmp: read_tile(read_image(ome_zarr(tmp)), 0, 40, 16),
        ImageReadError,
        r"img\.zarr: .*\(1, 0, 1\)",
    ),
    (
        "zarr-missing-chunk-channel",
        lambda tmp: read_image(ome_zarr(tmp), channels=["ch1"]).values,
        ImageReadError,
        r"img\.zarr: .*\(1, 0, 1\)",
    ),
    ("zarr-missing-chunk-manifest", lambda tmp: _zarr_manifest(tmp)[0], ImageReadError, r"img\.zarr: .*chunk index \(1, 0, 1\)"),
    (
        "zarr-bad-missing-arg",
        lambda tmp: read_image(ome_zarr(tmp), missing_chunks="zero"),
        ValueError,
        r"missing_chunks must be 'error' or 'fill'",
    ),
    ("zarr-not-ngff", lambda tmp: read_image(_plain_zarr(tmp)), ImageReadError, r"plain\.zarr: no 'multiscales' metadata"),
    (
        "zarr-no-level",
        lambda tmp: read_image(ome_zarr(tmp, drop=()), level=2),
        ImageReadError,
        r"img\.zarr: no multiscale level 2",
    ),
    (
        "tiff-truncated",
        lambda tmp: read_image(cut_file(tiff(tmp, np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)), 0.6)).values,
        ImageReadError,
        r"cut_img\.tif",
    ),
    ("tiff-not-tiff", lambda tmp: read_image(_write(tmp / "txt.tif", "hello")), ImageReadError, r"txt\.tif: not a readable TIFF"),
    (
        "tiff-zero-size",
        lambda tmp: read_image(tiff(tmp, np.zeros((0, 8), np.uint8))),
        ImageReadError,
        r"img\.tif: image axes .* lack Y/X",
    ),
    (
        "png-corrupt",
        lambda tmp: read_image(_write(tmp / "x.png", b"\x89PNG\r\n\x1a\nbroken")),
        ImageReadError,
        r"x\.png: cannot read image",
    ),
    ("image-missing", lambda tmp: read_image(tmp / "none.tif"), FileNotFoundError, r"none\.tif"),
    ("manifest-channel-count", lambda tmp: _manifest_names(tmp, "A;B;C"), ImageReadError, r"pix\.tif: manifest names 3 channels"),
    # more edge rows
    (
        "ts-timestamped-overflow",
        read_ts_case(
            "@problemName T\n@timeStamps true\n@univariate true\n@classLabel true a\n", "(2007-01-01 00:00:00,-1e39):a\n"
        ),
        TsFormatError,
        r"bad\.ts, line 6: dimension 0, value 0: '-1e39' overflows float32",
    ),
    (
        "csv-negative-overflow",
        lambda tmp: forecast(tmp, ["-1e39"]),
        ValueError,
        r"table\.csv: value -1e\+39 in column 'a' at row 3",
    ),
    (
        "bdf-cut-in-header",
        lambda tmp: read_recording(edf_cut(BDF, 100)(tmp)),
        ValueError,
        r"cannot read EEG recording .*test_bdf_stim_channel\.bdf",
    ),
    # whole-slide images
    (
        "wsi-cut-30",
        lambda tmp: Slide(cut_file(slide(tmp), 0.3)),
        SlideReadError,
        r"slide cut_s: .*cut_s\.tif is truncated: .*file ends at byte",
    ),
    ("wsi-cut-90", lambda tmp: read_all_levels(cut_file(slide(tmp), 0.9)), SlideReadError, r"slide cut_s: .*is truncated"),
    ("wsi-cut-99", lambda tmp: read_all_levels(cut_file(slide(tmp), 0.995)), SlideReadError, r"slide cut_s: .*is truncated"),
    (
        "wsi-grayscale",
        lambda tmp: tile_slide(slide(tmp, "g.tif", gray=True), 64),
        SlideReadError,
        r"slide g: .*g\.tif is a grayscale pyramid \(1 sample per pixel\)",
    ),
    (
        "wsi-grey-as-rgb",
        lambda tmp: tile_slide(slide(tmp, "grey.tif", grey_rgb=True), 64),
        SlideReadError,
        r"slide grey: .*has no colour \(R = G = B",
    ),
    ("wsi-flat", lambda tmp: Slide(slide(tmp, "flat.tif", levels=1)), SlideReadError, r"slide flat: .*not pyramidal"),
    ("wsi-missing", lambda tmp: Slide(tmp / "none.tif"), FileNotFoundError, r"slide none"),
    ("wsi-bad-tile-size", lambda tmp: tile_slide(slide(tmp), 0), ValueError, r"tile_size=0"),
]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _with(a: np.ndarray, idx: tuple[int, ...], value: float) -> np.ndarray:
    a = a.copy()
    a[idx] = value
    return a


def _uea_datamodule(tmp: Path) -> object:
    from chanformer.datasets.timeseries.datamodules import UEADataModule

    for split in ("TRAIN", "TEST"):
        _write(tmp / f"X_{split}.ts", "@problemName X\n@univariate true\n@classLabel false\n@data\n1,2,3\n")
    return UEADataModule("X", root=str(tmp))


def _uea_in_memory_inf(tmp: Path) -> object:
    data = read_ts(ts_file(tmp, "1,2:3,4:a\n1,2:3,4:b\n"))
    data.series[1][1, 0] = np.inf
    return UEADataset(data)


def _fitted() -> ChannelNormalizer:
    return ChannelNormalizer("meanstd").fit([(np.arange(8.0).reshape(1, 2, 4), ["stain/A"])])


def _normalised_nan(tmp: Path) -> object:
    ds = manifest(tmp, _with(np.ones((2, 8, 8), np.float32) + np.arange(8), (1, 0, 0), np.nan))
    ds.normalizer = ChannelNormalizer("meanstd", stats={"stain/DAPI": (0.0, 1.0), "stain/GFP": (0.0, 1.0)})
    return ds[0]


def _zarr_manifest(tmp: Path) -> ImageManifestDataset:
    from chanformer.channels import ChannelVocab

    ome_zarr(tmp)
    (tmp / "m.csv").write_text("path\nimg.zarr\n")
    return ImageManifestDataset(tmp / "m.csv", ChannelVocab("img", []), grow_vocab=True)


def _plain_zarr(tmp: Path) -> Path:
    import zarr

    zarr.open_group(str(tmp / "plain.zarr"), mode="w")
    return tmp / "plain.zarr"


def _manifest_names(tmp: Path, names: str) -> object:
    from chanformer.channels import ChannelVocab

    tiff(tmp, np.ones((2, 8, 8), np.uint8), "pix.tif")
    (tmp / "m.csv").write_text(f"path,channels\npix.tif,{names}\n")
    return ImageManifestDataset(tmp / "m.csv", ChannelVocab("img", []), grow_vocab=True)[0]


def _needs(case_id: str) -> list[pytest.MarkDecorator]:
    if case_id.startswith(("edf", "bdf", "eeg")):
        return [needs_eeg]
    return []


@pytest.mark.parametrize(
    ("run", "error", "match"),
    [pytest.param(run, err, match, id=cid, marks=_needs(cid)) for cid, run, err, match in CASES],
)
def test_bad_input_is_refused_by_name(tmp_path, run, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile/mne chatter; the assertion is on the error
        with pytest.raises(error, match=match) as info:
            run(tmp_path)
    assert str(info.value).strip(), "the error message is empty"


def test_matrix_size():
    assert len(CASES) >= 100


# -- reported, not refused ---------------------------------------------------------------------
@needs_eeg
def test_events_past_the_end_are_counted_and_reported():
    with pytest.warns(UserWarning, match=r"test_bdf_stim_channel\.bdf: 1 of 9 event\(s\) .*'1' at 9\.58 s; they were left out"):
        ds = EEGWindowDataset([BDF], mode="events", label_map={"1": 0, "2": 1, "4": 2}, tmax=0.5)
    assert ds.out_of_range_counts == {str(BDF): 1} and len(ds) == 8


@needs_eeg
def test_annotations_outside_the_data_are_reported(tmp_path):
    folder = tmp_path / "bv"
    shutil.copytree(BRAINVISION, folder)
    with open(folder / "test_NO.vmrk", "a") as f:
        f.write("Mk2=Stimulus,S  1,500,1,0\nMk3=Stimulus,S  2,99999,1,0\nMk4=Stimulus,S  2,88888,1,0\n")
    with pytest.warns(
        UserWarning, match=r"test_NO\.vhdr: 2 annotation\(s\) outside the data were dropped \(recording: 0\.4476 s\)"
    ):
        raw = read_recording(folder / "test_NO.vhdr")
    assert list(raw.annotations.description) == ["Stimulus/S  1"]


@needs_uea
def test_series_length_slip_is_read_as_the_data_say():
    with pytest.warns(UserWarning, match=r"EyesOpenShut_TEST\.ts, line 5: header declares @seriesLength 127 but all 42 rows "
                                         r"\(lines 8-49\) hold 128 values per dimension"):  # fmt: skip
        data = read_ts(EYES)
    assert {s.shape for s in data.series} == {(14, 128)} and data.header.series_length == 128


@needs_uea
def test_eyes_open_shut_datamodule_uses_all_128_values():
    from chanformer.datasets.timeseries.datamodules import UEADataModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = UEADataModule("EyesOpenShut", root=str(UEA))
        assert dm.length == 128 and dm.n_channels == 14
        dm.setup("fit")
    assert dm.train_dataset[0].values.shape == (14, 128)


def test_missing_chunks_can_be_filled_on_purpose(tmp_path):
    da = read_image(ome_zarr(tmp_path), missing_chunks="fill")
    values = da.values
    assert (values[1, :32, 32:] == 0).all() and (values[0] > 0).all()
    full = read_image(ome_zarr(tmp_path, drop=(), name="full.zarr"))
    np.testing.assert_array_equal(full.isel(y=slice(0, 32)).values, read_image(tmp_path / "full.zarr").values[:, :32])


def test_nonfinite_pixels_filled_on_purpose(tmp_path):
    ds = manifest(tmp_path, _with(np.ones((2, 8, 8), np.float32), (1, 2, 3), np.nan), fill_nonfinite=-1.0)
    values = ds[0].values.numpy()
    assert values[1, 2, 3] == -1.0 and np.isfinite(values).all()
    norm = ChannelNormalizer("meanstd", stats={"stain/A": (1.0, 2.0)}, fill_nonfinite=0.0)
    np.testing.assert_array_equal(norm(np.array([[[np.nan, 5.0]]]), ["stain/A"]), [[[0.0, 2.0]]])
    assert ChannelNormalizer.from_json(norm.to_json()).fill_nonfinite == 0.0


def test_constant_channel_statistics_are_reported():
    with pytest.warns(UserWarning, match=r"channel\(s\) stain/FLAT are constant"):
        norm = ChannelNormalizer("meanstd").fit(
            [(np.stack([np.ones((4, 4)), np.arange(16.0).reshape(4, 4)]), ["stain/FLAT", "stain/B"])]
        )
    assert np.isfinite(norm(np.ones((2, 4, 4)), ["stain/FLAT", "stain/B"])).all()


# -- property tests on real files --------------------------------------------------------------
@pytest.fixture(scope="module")
def small_eyes(tmp_path_factory) -> Path:
    """The header and first 6 cases of the real EyesOpenShut TEST file (keeps examples fast)."""
    if not EYES.is_file():
        pytest.skip(f"{EYES} is not present")
    lines = EYES.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    path = tmp_path_factory.mktemp("eyes") / "eyes.ts"
    path.write_text("".join(lines[: start + 6]))
    return path


def _read_quiet(path: Path):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_ts(path)


@PROPERTY
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_real_ts_is_refused_or_a_prefix(tmp_path, small_eyes, cut):
    full = _read_quiet(small_eyes)
    data = small_eyes.read_bytes()
    path = tmp_path / "cut.ts"
    path.write_bytes(data[: int(len(data) * cut)])
    try:
        got = _read_quiet(path)
    except TsFormatError as e:
        assert "cut.ts" in str(e)
        return
    assert 1 <= len(got) <= len(full)
    for a, b in zip(got.series, full.series):
        np.testing.assert_array_equal(a, b)
    assert got.labels == full.labels[: len(got)]


@PROPERTY
@given(flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_byte_flipped_real_ts_is_refused_or_sane(tmp_path, small_eyes, flips):
    data = bytearray(small_eyes.read_bytes())
    for where, xor in flips:
        data[int(len(data) * where)] ^= xor
    path = tmp_path / "flipped.ts"
    path.write_bytes(bytes(data))
    try:
        got = _read_quiet(path)
    except TsFormatError as e:
        assert "flipped.ts" in str(e)
        return
    assert {s.shape for s in got.series} == {(14, got.series[0].shape[1])}
    assert all(not np.isinf(s).any() for s in got.series)
    assert got.labels is not None and set(got.labels) <= set(got.classes)


def _window_dataset(path: Path) -> EEGWindowDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EEGWindowDataset([path], on_unknown="drop", bad_channels="drop", window_s=1.0)


@needs_eeg
@PROPERTY
@given(cut=st.integers(0, EDF.stat().st_size - 1 if EDF.is_file() else 1))
def test_truncated_real_edf_is_always_refused(tmp_path, cut):
    path = tmp_path / "cut.edf"
    path.write_bytes(EDF.read_bytes()[:cut])
    with pytest.raises(ValueError, match=r"cut\.edf"):
        _window_dataset(path)


@needs_eeg
@PROPERTY
@given(flips=st.lists(st.tuples(st.integers(0, EDF.stat().st_size - 1 if EDF.is_file() else 1), st.integers(1, 255)),
                      min_size=1, max_size=3))  # fmt: skip
def test_byte_flipped_real_edf_is_refused_or_finite(tmp_path, flips):
    data = bytearray(EDF.read_bytes())
    for where, xor in flips:
        data[where] ^= xor
    path = tmp_path / "flipped.edf"
    path.write_bytes(bytes(data))
    try:
        ds = _window_dataset(path)
    except (ValueError, KeyError) as e:
        assert "flipped.edf" in str(e)
        return
    values = np.concatenate([v for v in ds.values])
    assert np.isfinite(values).all() and values.shape[-1] == round(ds.sfreq)


@PROPERTY
@given(
    drop=st.sets(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1)), max_size=3),
    y=st.integers(0, 48),
    x=st.integers(0, 48),
)
def test_zarr_missing_chunks_refused_exactly_when_touched(tmp_path, drop, y, x):
    name = f"z{len(list(tmp_path.iterdir()))}.zarr"
    da = read_image(ome_zarr(tmp_path, drop=tuple(sorted(drop)), name=name))
    touched = {(c, cy, cx) for c in (0, 1) for cy in {y // 32, (y + 15) // 32} for cx in {x // 32, (x + 15) // 32}}
    if touched & drop:
        with pytest.raises(ImageReadError, match=rf"{name}: array '0' .*chunk index"):
            read_tile(da, y, x, 16)
    else:
        ref = np.random.default_rng(0).integers(1, 1000, (2, 64, 64))
        np.testing.assert_array_equal(read_tile(da, y, x, 16), ref[:, y : y + 16, x : x + 16])


@pytest.fixture(scope="module")
def real_slide(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    path = slide(tmp_path_factory.mktemp("slide"), "ref.tif")
    return path, read_all_levels(path)


@PROPERTY
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_slide_is_refused_by_name(tmp_path, real_slide, cut):
    src, _ = real_slide
    data = src.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: int(len(data) * cut)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SlideReadError, match=r"slide cut: "):
            read_all_levels(path)


@PROPERTY
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_tiff_image_is_refused_by_name(tmp_path, cut):
    ref = np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)
    src = tiff(tmp_path, ref, "ref.tif")
    data = src.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: int(len(data) * cut)])
    try:
        values = read_image(path).values
    except ImageReadError as e:
        assert "cut.tif" in str(e)
        return
    np.testing.assert_array_equal(values, ref)  # only a cut in trailing metadata may still read whole
