"""Offline sources of time-series data; nothing here downloads.

aeon's bundled UEA/UCR archives, statsmodels' macrodata, aeon's Uschange, CSV/Parquet tables.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = [
    "UEA_ARCHIVE_FOLDERS",
    "UEAMissingError",
    "list_uea_archives",
    "load_macrodata",
    "load_uschange",
    "read_series_table",
    "uea_path",
]

PathLike = str | os.PathLike[str]


#: Sub-folders of the official UEA/UCR downloads: ``Multivariate2018_ts.zip`` unpacks to
#: ``Multivariate_ts/<Name>/<Name>_TRAIN.ts``, ``Univariate2018_ts.zip`` to ``Univariate_ts/...``.
UEA_ARCHIVE_FOLDERS: dict[str, str] = {"Multivariate_ts": "multivariate", "Univariate_ts": "univariate"}
UEA_URL = "https://www.timeseriesclassification.com/dataset.php (Multivariate2018_ts.zip, Univariate2018_ts.zip)"


class UEAMissingError(FileNotFoundError):
    """A UEA/UCR archive (``<Name>_TRAIN.ts`` / ``_TEST.ts``) or its root folder is missing."""


def _uea_candidates(d: Path, name: str, split_u: str) -> list[Path]:
    file = f"{name}_{split_u}.ts"
    return [d / name / file, d / file, *(d / sub / name / file for sub in UEA_ARCHIVE_FOLDERS)]


def uea_path(name: str, split: str = "train", root: PathLike | None = None) -> Path:
    """Locate ``<name>_<SPLIT>.ts`` in ``root``, ``$CHANFORMER_UEA_DIR`` or aeon's bundled data.

    In each folder ``d`` the layouts tried are ``d/<name>/<name>_TRAIN.ts`` (one archive's folder),
    ``d/<name>_TRAIN.ts`` (flat) and the official downloads' ``d/Multivariate_ts/<name>/...``
    and ``d/Univariate_ts/<name>/...``. Never downloads; raises :class:`UEAMissingError` listing
    every path searched.
    """
    from chanformer.io import safe_id

    safe_id(name, "UEA/UCR dataset name")  # it becomes part of the paths searched
    split_u = split.upper()
    if split_u not in ("TRAIN", "TEST"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is not None and not Path(root).is_dir():  # a mistyped data path must not fall through to other copies
        raise UEAMissingError(f"UEA/UCR root={str(root)!r}: no such folder (it should hold {name}_{split_u}.ts, "
                              f"{name}/{name}_{split_u}.ts or Multivariate_ts/{name}/{name}_{split_u}.ts; "
                              f"archives from {UEA_URL})")  # fmt: skip
    dirs: list[Path] = [Path(p) for p in (root, os.environ.get("CHANFORMER_UEA_DIR")) if p]
    aeon_note = ""
    try:
        import aeon

        dirs.append(Path(aeon.__file__).parent / "datasets" / "data")
    except ImportError:
        aeon_note = " aeon is not installed; `pip install aeon` ships BasicMotions, JapaneseVowels, ..."
    tried = []
    for d in dirs:
        for cand in _uea_candidates(d, name, split_u):
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise UEAMissingError(
        f"UEA/UCR dataset {name!r} ({split_u}) not found; searched: {', '.join(tried) or '(nothing)'}."
        f"{aeon_note} Nothing is downloaded: place {name}_{split_u}.ts under root= or $CHANFORMER_UEA_DIR"
        f" (or `pip install aeon` for its bundled archives); the full archives are at {UEA_URL}."
    )


def list_uea_archives(root: PathLike) -> dict[str, str]:
    """Archives under ``root`` that have both ``_TRAIN.ts`` and ``_TEST.ts``: name -> kind.

    The kind is ``"multivariate"`` / ``"univariate"`` for archives inside ``Multivariate_ts/`` /
    ``Univariate_ts/``, else ``""`` (flat or per-archive folders, whose kind the file name does
    not tell). Sorted by name; an archive in several places is listed once, with the first kind.
    """
    root = Path(root)
    if not root.is_dir():
        raise UEAMissingError(f"UEA/UCR root={str(root)!r}: no such folder; archives from {UEA_URL}")
    found: dict[str, str] = {}
    places = [(root / sub, kind) for sub, kind in UEA_ARCHIVE_FOLDERS.items()] + [(root, "")]
    for base, kind in places:
        if not base.is_dir():
            continue
        for train in sorted([*base.glob("*_TRAIN.ts"), *base.glob("*/*_TRAIN.ts")]):
            name = train.name[: -len("_TRAIN.ts")]
            if train.parent != base and train.parent.name != name:
                continue
            if (train.parent / f"{name}_TEST.ts").is_file():
                found.setdefault(name, kind)
    return dict(sorted(found.items()))


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
