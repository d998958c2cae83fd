"""Offline sources of time-series data; nothing here downloads.

aeon's bundled UEA/UCR archives, statsmodels' macrodata, aeon's Uschange, CSV/Parquet tables.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["load_macrodata", "load_uschange", "read_series_table", "uea_path"]

PathLike = str | os.PathLike[str]


def uea_path(name: str, split: str = "train", root: PathLike | None = None) -> Path:
    """Locate ``<name>_<SPLIT>.ts`` in ``root``, ``$CHANFORMER_UEA_DIR`` or aeon's bundled data.

    Never downloads; raises ``FileNotFoundError`` listing every path searched.
    """
    from chanformer.io import safe_id

    safe_id(name, "UEA/UCR dataset name")  # it becomes part of the paths searched
    split_u = split.upper()
    if split_u not in ("TRAIN", "TEST"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is not None and not Path(root).is_dir():  # a mistyped data path must not fall through to other copies
        raise FileNotFoundError(f"UEA/UCR root={str(root)!r}: no such folder (it should hold {name}_{split_u}.ts "
                                f"or {name}/{name}_{split_u}.ts)")  # fmt: skip
    dirs: list[Path] = [Path(p) for p in (root, os.environ.get("CHANFORMER_UEA_DIR")) if p]
    aeon_note = ""
    try:
        import aeon

        dirs.append(Path(aeon.__file__).parent / "datasets" / "data")
    except ImportError:
        aeon_note = " aeon is not installed; `pip install aeon` ships BasicMotions, JapaneseVowels, ..."
    tried = []
    for d in dirs:
        for cand in (d / name / f"{name}_{split_u}.ts", d / f"{name}_{split_u}.ts"):
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise FileNotFoundError(
        f"UEA/UCR dataset {name!r} ({split_u}) not found; searched: {', '.join(tried) or '(nothing)'}."
        f"{aeon_note} Nothing is downloaded: place {name}_{split_u}.ts under root= or $CHANFORMER_UEA_DIR"
        " (or `pip install aeon` for its bundled archives)."
    )


def read_series_table(path: PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet forecasting table; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"forecasting table not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as e:  # pandas/pyarrow raise many types for truncated or binary files
        raise ValueError(f"cannot read forecasting table {path} (corrupt or not CSV/Parquet): {e}") from e


def load_macrodata() -> pd.DataFrame:
    """Statsmodels' US macro data (1959Q1-2009Q3, 203 quarters): ``date`` + 12 series.

    ``year``/``quarter`` become the quarter-start ``date`` column (use ``freq="q"``).
    """
    try:
        from statsmodels.datasets import macrodata
    except ImportError:
        raise ImportError("load_macrodata() needs statsmodels (`pip install statsmodels`)") from None
    df = macrodata.load_pandas().data
    dates = pd.PeriodIndex.from_fields(
        year=df["year"].astype(int), quarter=df["quarter"].astype(int), freq="Q"
    )
    out = df.drop(columns=["year", "quarter"])
    out.insert(0, "date", dates.to_timestamp())
    return out


def load_uschange() -> pd.DataFrame:
    """Aeon's ``Uschange`` (quarterly US changes, 1970Q1-2016Q3): ``date`` + 5 series."""
    try:
        import aeon
    except ImportError:
        raise ImportError("load_uschange() needs aeon (`pip install aeon`)") from None
    path = Path(aeon.__file__).parent / "datasets" / "data" / "Uschange" / "Uschange.csv"
    df = read_series_table(path)
    quarters = df.pop("Quarter").astype(str).str.replace(" ", "")
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed") or c == ""])
    df.insert(0, "date", pd.PeriodIndex(quarters, freq="Q").to_timestamp())
    return df
