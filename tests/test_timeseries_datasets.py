from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import UnknownChannelError, series_vocab
from chanformer.datasets import (
    ChannelStats,
    ForecastingDataModule,
    ForecastingDataset,
    TsFormatError,
    UEADataModule,
    UEADataset,
    XarrayDataset,
    load_macrodata,
    load_uea,
    read_ts,
    read_ts_header,
    save_zarr,
    split_borders,
    stratified_split,
    time_features,
    uea_path,
)

pytest.importorskip("aeon")

HEADER = "@problemName Tiny\n@timeStamps false\n@missing true\n@univariate false\n@dimensions 2\n"


def write(tmp_path, text, name="tiny_TRAIN.ts"):
    p = tmp_path / name
    p.write_text(text)
    return p


def tiny_ts(tmp_path):
    body = (
        "# a comment\n"
        + HEADER
        + "@equalLength false\n@classLabel true a b\n@data\n"
        + "1,2,?,4:5,6,7,8:a\n"
        + "1,2,3:?,?,?:b\n"
        + "\n"
        + "?,2:3,4:a\n"
    )
    return write(tmp_path, body)


# -- .ts parsing ------------------------------------------------------------------------------
def test_basicmotions_real_files():
    for split in ("train", "test"):
        d = read_ts(uea_path("BasicMotions", split))
        assert len(d) == 40 and d.n_channels == 6
        assert all(s.shape == (6, 100) and s.dtype == np.float32 for s in d.series)
        assert d.classes == ["Standing", "Running", "Walking", "Badminton"]
        assert np.bincount(d.class_indices()).tolist() == [10, 10, 10, 10]
        assert not any(np.isnan(s).any() for s in d.series)


def test_japanesevowels_real_files_variable_length():
    tr, te = read_ts(uea_path("JapaneseVowels", "train")), read_ts(uea_path("JapaneseVowels", "test"))
    assert (len(tr), len(te)) == (270, 370)
    assert tr.n_channels == te.n_channels == 12
    assert tr.classes == [str(i) for i in range(1, 10)]
    lengths = np.concatenate([tr.lengths, te.lengths])
    assert lengths.min() == 7 and lengths.max() == 29
    h = read_ts_header(uea_path("JapaneseVowels", "train"))
    assert h.n_dims == 12 and h.equal_length is False and h.series_length is None

    ds = UEADataset(te, length=29, pad="edge")
    i = int(np.argmin(te.lengths))
    x, t = ds[i].values, int(te.lengths[i])
    assert x.shape == (12, 29)
    assert torch.equal(x[:, :t], torch.from_numpy(te.series[i]))
    assert torch.equal(x[:, t:], x[:, t - 1 : t].expand(-1, 29 - t))
    assert ds.num_classes == 9 and ds[i].target.dtype == torch.long


def test_tiny_ts_missing_and_variable_length(tmp_path):
    d = read_ts(tiny_ts(tmp_path))
    assert d.lengths.tolist() == [4, 3, 2] and d.labels == ["a", "b", "a"]
    assert np.isnan(d.series[0][0, 2]) and np.isnan(d.series[1][1]).all()
    assert d.lines == [10, 11, 13]

    ds = UEADataset(d, length=4, fill_missing="interpolate", pad="zero")
    assert ds[0].values[0].tolist() == [1, 2, 3, 4]
    assert ds[1].values[1].tolist() == [0, 0, 0, 0]  # all-missing channel -> 0
    assert ds[2].values.tolist() == [[2, 2, 0, 0], [3, 4, 0, 0]]  # leading NaN takes the first value
    assert ds.targets.tolist() == [0, 1, 0]
    assert UEADataset(d, fill_missing="zero", pad="none")[1].values.shape == (2, 3)
    with pytest.raises(ValueError, match=r"case 0 \(line 10\), channel series/dim_0 has missing"):
        UEADataset(d, fill_missing="error")


def test_timestamped_ts(tmp_path):
    p = write(
        tmp_path,
        "@problemName T\n@timeStamps true\n@univariate true\n@classLabel true 1 2\n@data\n"
        "(2007-01-01 00:00:00,1.5),(2007-01-01 00:01:00,?):2\n",
    )
    d = read_ts(p)
    assert d.series[0].shape == (1, 2) and d.series[0][0, 0] == 1.5 and np.isnan(d.series[0][0, 1])
    assert d.labels == ["2"]


def test_regression_targets(tmp_path):
    p = write(tmp_path, "@problemName R\n@univariate true\n@targetLabel true\n@data\n1,2,3:0.5\n4,5,6:-2\n")
    ds = UEADataset(p)
    assert ds[1].target.dtype == torch.float32 and ds.targets.tolist() == [0.5, -2.0]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "@dimensions 2\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:a\n",
            r"line 5: row 2 has 1 dimensions, header declares 2 \(\+ the label: 3 ':'-separated fields",
        ),
        (
            "@dimensions 2\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:3,4:c\n",
            r"line 5: row 2: class label 'c' is not",
        ),
        ("@classLabel true a\n@data\n1,x:3,4:a\n", r"line 3: dimension 0: cannot parse value 'x'"),
        (
            "@dimensions 2\n@classLabel true a\n@data\n1,2:3,4:a\n1,2,3:3,4,5:a\n",
            r"line 7: row 2 has 3 values per dimension, header declares @seriesLength 2, row 1",
        ),
        ("@bogus 1\n@data\n1,2\n", r"line 1: unknown header tag @bogus"),
        ("@missing maybe\n@data\n1,2\n", r"line 1: @missing must be 'true' or 'false'"),
        ("@classLabel true\n@data\n1:a\n", r"line 1: @classLabel true must list"),
        ("1,2,3\n", r"line 1: expected an @tag"),
        ("@classLabel false\n", r"no @data line"),
    ],
)
def test_malformed_ts_errors(tmp_path, body, match):
    extra = "@equalLength true\n@seriesLength 2\n" if "values per dimension" in match else ""
    p = write(tmp_path, extra + body, name="bad.ts")
    with pytest.raises(TsFormatError, match=match) as e:
        read_ts(p)
    assert "bad.ts" in str(e.value)


def test_uea_path_missing_names_searched_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"NoSuchArchive.*searched:.*tmp.*pip install aeon"):
        uea_path("NoSuchArchive", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_ts(tmp_path / "absent.ts")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(
            st.lists(st.one_of(st.none(), st.floats(-1e3, 1e3, width=32)), min_size=1, max_size=6),
            min_size=2,
            max_size=2,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_ts_round_trip_property(tmp_path, cases):
    def fmt(v):
        return "?" if v is None else repr(v)

    rows = [":".join(",".join(fmt(v) for v in dim) for dim in case) + ":x" for case in cases]
    p = write(tmp_path, "@problemName P\n@dimensions 2\n@classLabel true x\n@data\n" + "\n".join(rows) + "\n")
    d = read_ts(p)
    for case, arr in zip(cases, d.series):
        t = max(len(dim) for dim in case)
        exp = np.full((2, t), np.nan, dtype=np.float32)
        for i, dim in enumerate(case):
            exp[i, : len(dim)] = [np.nan if v is None else v for v in dim]
        np.testing.assert_array_equal(arr, exp)


# -- UEA datasets / datamodule ------------------------------------------------------------------
def test_uea_normalisation_uses_train_stats_only():
    tr = load_uea("BasicMotions", "train", normalize="dataset")
    raw = np.concatenate(read_ts(uea_path("BasicMotions", "train")).series, axis=1)
    np.testing.assert_allclose(tr.stats.mean, raw.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.stats.std, raw.std(1), rtol=1e-5)
    te = load_uea("BasicMotions", "test", normalize="dataset", stats=tr.stats)
    te_raw = read_ts(uea_path("BasicMotions", "test")).series[3]
    np.testing.assert_allclose(te[3].values.numpy(), tr.stats.transform(te_raw), rtol=1e-5, atol=1e-5)
    with pytest.warns(UserWarning, match="TEST"):
        load_uea("BasicMotions", "test", normalize="dataset")
    vocab = series_vocab(["a"])
    with pytest.raises(UnknownChannelError, match="series/dim_0"):
        load_uea("BasicMotions", "train", vocab=vocab)


def test_stratified_split():
    labels = np.repeat(np.arange(3), [10, 5, 1])
    tr, va = stratified_split(labels, 0.2, seed=1)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(16))
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]
    assert np.array_equal(va, stratified_split(labels, 0.2, seed=1)[1])


def test_uea_datamodule_collates():
    dm = UEADataModule("BasicMotions", batch_size=8, seed=3)
    assert (dm.n_channels, dm.num_classes, dm.length) == (6, 4, 100)  # before setup
    assert dm.vocab.keys[0] == "series/dim_0" and dm.spec.num_classes == 4
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (32, 8, 40)
    assert set(dm.train_dataset.indices).isdisjoint(dm.val_dataset.indices)
    assert dm.val_dataset.stats is dm.train_dataset.stats is dm.test_dataset.stats
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, ChannelBatch) and batch.values.shape == (8, 6, 100)
    assert batch.target.dtype == torch.long and batch.mask.all()

    jv = UEADataModule("JapaneseVowels")
    assert jv.length == 29 and jv.n_channels == 12 and jv.num_classes == 9


# -- forecasting ------------------------------------------------------------------------------------
def hourly_frame(n, c=2, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, c)) * [1, 10][:c] + [0, 5][:c], columns=[f"s{i}" for i in range(c)])
    df.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h"))
    return df


def test_split_borders_tslib():
    assert split_borders(203, 24) == {"train": (0, 142), "val": (118, 163), "test": (139, 203)}
    b = split_borders(17420, 96, "ett_hour")
    assert b == {"train": (0, 8640), "val": (8640 - 96, 11520), "test": (11520 - 96, 14400)}
    assert split_borders(69680, 96, "ett_minute")["test"] == (46080 - 96, 57600)


def test_forecasting_windows_scaler_and_no_leakage():
    df = hourly_frame(1000)
    train = ForecastingDataset(df, split="train", seq_len=48, horizon=24, stride=1)
    test = ForecastingDataset(df, split="test", seq_len=48, horizon=24, stride=5)
    raw = df[["s0", "s1"]].to_numpy().T
    np.testing.assert_allclose(train.stats.mean, raw[:, :700].mean(1))
    np.testing.assert_allclose(train.stats.std, raw[:, :700].std(1))
    np.testing.assert_allclose(test.stats.mean, train.stats.mean)
    leaked = df.copy()
    leaked.loc[700:, "s0"] += 1e6  # changing val/test rows must not move the statistics
    leaked_stats = ForecastingDataset(leaked, split="test", seq_len=48).stats
    np.testing.assert_allclose(leaked_stats.mean, train.stats.mean)

    assert len(train) == 700 - 48 - 24 + 1
    assert test.borders == (800 - 48, 1000) and len(test) == (248 - 48 - 24) // 5 + 1
    s = test[len(test) - 1]
    assert s.values.shape == (2, 48) and s.target.shape == (2, 24) and s.covariates.shape == (4, 48)
    start = 752 + (len(test) - 1) * 5 + 48
    orig = test.inverse_transform(s.target)
    np.testing.assert_allclose(orig.numpy(), raw[:, start : start + 24], rtol=1e-4, atol=1e-4)
    batch = ChannelBatch.collate([test[i] for i in range(3)])
    assert batch.target.shape == (3, 2, 24) and batch.covariates.shape == (3, 4, 48)
    assert test.inverse_transform(np.zeros((3, 2, 24), np.float32)).shape == (3, 2, 24)


def test_time_features_known_dates():
    dates = pd.DatetimeIndex(["2016-07-01 00:00", "2016-07-03 23:45"])  # a Friday, a Sunday
    h = time_features(dates, "h")
    np.testing.assert_allclose(h[:, 0], [-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], rtol=1e-6)
    np.testing.assert_allclose(h[:, 1], [0.5, 0.5, 2 / 30 - 0.5, 184 / 365 - 0.5], rtol=1e-6)
    t = time_features(dates, "15min")
    assert t.shape == (5, 2) and t[0, 1] == pytest.approx(45 / 59 - 0.5)
    np.testing.assert_allclose(t[1:], h)
    np.testing.assert_allclose(time_features(dates, "d"), h[1:])
    assert time_features(dates, "q")[0].tolist() == pytest.approx([6 / 11 - 0.5] * 2)


def test_forecasting_files_and_errors(tmp_path):
    df = hourly_frame(300)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    a = ForecastingDataset(tmp_path / "a.csv", split="val", seq_len=12, horizon=6)
    b = ForecastingDataset(tmp_path / "a.parquet", split="val", seq_len=12, horizon=6)
    assert torch.allclose(a[0].values, b[0].values) and a.channel_keys == ["series/s0", "series/s1"]

    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ForecastingDataset(tmp_path / "nope.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="bad.parquet"):
        ForecastingDataset(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no 'date' column"):
        ForecastingDataset(df.drop(columns="date"))
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['name'\]"):
        ForecastingDataset(df.assign(name="x"), seq_len=12, horizon=6)
    nan = df.copy()
    nan.loc[17, "s1"] = np.nan
    with pytest.raises(ValueError, match=r"NaN in column 's1' at row 17"):
        ForecastingDataset(nan, seq_len=12, horizon=6)
    with pytest.raises(ValueError, match=r"has 300 rows.*needs at least 1184 rows"):
        ForecastingDataset(df, seq_len=96, horizon=120)
    with pytest.raises(ValueError, match="at least 14400 rows"):
        ForecastingDataset(df, split_scheme="ett_hour", seq_len=12, horizon=6)


def test_macrodata_and_datamodule():
    df = load_macrodata()
    assert df.shape == (203, 13) and df["date"].iloc[1] == pd.Timestamp("1959-04-01")
    dm = ForecastingDataModule("macrodata", seq_len=24, horizon=8, batch_size=4)
    assert (dm.n_channels, dm.seq_len, dm.horizon, dm.n_covariates) == (12, 24, 8, 1)
    spec = dm.spec
    assert spec.horizon == 8 and len(spec.channel_mean) == 12
    dm.setup("fit")
    assert spec.channel_mean[0] == pytest.approx(df["realgdp"].iloc[:142].mean())
    b = next(iter(dm.val_dataloader()))
    assert b.values.shape == (4, 12, 24) and b.target.shape == (4, 12, 8)


# -- xarray / zarr --------------------------------------------------------------------------------
def test_xarray_zarr_round_trip(tmp_path):
    vocab = series_vocab(["a", "b", "c"])
    rng = np.random.default_rng(0)
    samples = [
        ChannelSample(
            torch.from_numpy(rng.normal(size=(c, 16)).astype(np.float32)), torch.tensor(ids), target=y
        )
        for c, ids, y in [(3, [0, 1, 2], torch.tensor(1)), (2, [2, 0], torch.tensor(0))]
    ]
    path = save_zarr(samples, tmp_path / "s.zarr", vocab=vocab)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # no temporary leftovers
    ds = XarrayDataset(path, vocab=vocab, target="target")
    assert len(ds) == 2 and ds.channel_keys == ["series/a", "series/b", "series/c"]
    s1 = ds[1]
    order = s1.channel_ids.tolist()
    assert sorted(order) == [0, 2] and s1.target.dtype == torch.long and int(s1.target) == 0
    for j, cid in enumerate(order):
        assert torch.equal(s1.values[j], samples[1].values[[2, 0].index(cid)])
    batch = ChannelBatch.collate([ds[0], ds[1]])
    assert batch.mask.tolist() == [[True, True, True], [True, True, False]]

    with pytest.raises(FileExistsError):
        save_zarr(samples, path, vocab=vocab)
    save_zarr(samples[:1], path, vocab=vocab, overwrite=True)
    assert len(XarrayDataset(path, vocab=vocab)) == 1 and len(list(tmp_path.iterdir())) == 1


def test_xarray_dataarray_and_unknown_channels(tmp_path):
    da = xr.DataArray(
        np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3),
        dims=("channel", "time", "sample"),
        coords={"channel": ["series/a", "series/zz"], "label": ("sample", [0, 1, 1])},
    )
    with pytest.raises(UnknownChannelError, match="series/zz"):
        XarrayDataset(da, vocab=series_vocab(["a"]))
    vocab = series_vocab(["a", "zz"])
    ds = XarrayDataset(da, vocab=vocab, target="label")
    assert ds[2].values.shape == (2, 5) and torch.equal(ds[2].values, torch.from_numpy(da.values[:, :, 2]))
    assert ds.targets.tolist() == [0, 1, 1]
    path = save_zarr(da.rename("values"), tmp_path / "da.zarr")
    again = XarrayDataset(path, vocab=vocab, target="label")
    assert torch.equal(again[1].values, ds[1].values)
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        XarrayDataset(tmp_path / "missing.zarr", vocab=vocab)
    assert ChannelStats.fit([np.ones((2, 4))]).std.tolist() == [1.0, 1.0]


def test_uea_holdout_scores_on_a_part_of_train_and_leaves_the_default_split_alone():
    from chanformer.datasets import UEADataModule

    plain = UEADataModule("BasicMotions", val_fraction=0.2, seed=3)
    plain.setup("fit")
    default = UEADataModule("BasicMotions", val_fraction=0.2, seed=3, holdout_fraction=0.0)
    default.setup("fit")
    assert np.array_equal(plain.train_dataset.indices, default.train_dataset.indices)
    assert len(plain.test_dataset) == 40  # the official TEST
    held = UEADataModule("BasicMotions", val_fraction=0.2, seed=3, holdout_fraction=0.3, holdout_seed=1)
    held.setup("fit")
    parts = [set(d.indices.tolist()) for d in (held.train_dataset, held.val_dataset, held.test_dataset)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert set.union(*parts) == set(range(40))  # every TRAIN case, none of TEST
    assert held.test_dataset.data is held._data["train"] and len(held.test_dataset) == 12  # 3 of 10 per class
    assert sorted(np.bincount(held.test_dataset.targets.numpy())) == [3, 3, 3, 3]
    # the held-out cases do not move with the training seed
    other = UEADataModule("BasicMotions", val_fraction=0.2, seed=4, holdout_fraction=0.3, holdout_seed=1)
    other.setup("fit")
    assert np.array_equal(other.test_dataset.indices, held.test_dataset.indices)
    with pytest.raises(ValueError, match="holdout_fraction"):
        UEADataModule("BasicMotions", holdout_fraction=1.0)
