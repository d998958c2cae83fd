"""Write a miniature Time-Series-Library dataset folder (the ``all_six_datasets`` layout + Solar).

Same folder and file names, header rows, column names, date formats and first timestamps as the
published tables; fewer series and rows where the split allows it:

* ``ETT-small/ETTh1.csv``, ``ETTh2.csv``: the full 17420 hourly rows from ``2016-07-01 00:00:00``
  (the 12/4/4-month split needs 14400), 7 columns ``HUFL HULL MUFL MULL LUFL LULL OT``;
* ``ETT-small/ETTm1.csv``, ``ETTm2.csv``: 57700 rows every 15 minutes (the split needs 57600);
* ``electricity/electricity.csv`` (``date,0,1,2,OT``), ``traffic/traffic.csv`` (``date,0,..,4,OT``),
  hourly from ``2016-07-01 02:00:00``; ``weather/weather.csv`` with all 21 of its column names,
  every 10 minutes from ``2020-01-01 00:10:00``; ``exchange_rate/exchange_rate.csv``
  (``date,0,..,6,OT``, dates written ``1990/1/1 0:00`` as in the original);
* ``Solar/solar_AL.txt``: 137 comma-separated columns, no header, no dates.

Each value is ``(row + 1) * 1e-3 + column`` plus a sine, so tests can tell rows and columns apart.
Run ``python tests/data/tslib/generate.py OUT``; the tests call :func:`generate` into ``tmp_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
WEATHER_COLUMNS = [
    "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)", "VPdef (mbar)",
    "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)", "wd (deg)", "rain (mm)",
    "raining (s)", "SWDR (W/m\u00b2)", "PAR (\u00b5mol/m\u00b2/s)", "max. PAR (\u00b5mol/m\u00b2/s)", "Tlog (degC)", "OT",
]  # fmt: skip
#: name -> (relative path, rows written, column names (None: Solar, no header), first date, freq)
TABLES: dict[str, tuple[str, int, list[str], str, str]] = {
    "ETTh1": ("ETT-small/ETTh1.csv", 17420, ETT_COLUMNS, "2016-07-01 00:00:00", "h"),
    "ETTh2": ("ETT-small/ETTh2.csv", 17420, ETT_COLUMNS, "2016-07-01 00:00:00", "h"),
    "ETTm1": ("ETT-small/ETTm1.csv", 57700, ETT_COLUMNS, "2016-07-01 00:00:00", "15min"),
    "ETTm2": ("ETT-small/ETTm2.csv", 57700, ETT_COLUMNS, "2016-07-01 00:00:00", "15min"),
    "electricity": ("electricity/electricity.csv", 500, ["0", "1", "2", "OT"], "2016-07-01 02:00:00", "h"),
    "weather": ("weather/weather.csv", 600, WEATHER_COLUMNS, "2020-01-01 00:10:00", "10min"),
    "traffic": ("traffic/traffic.csv", 450, ["0", "1", "2", "3", "4", "OT"], "2016-07-01 02:00:00", "h"),
    "exchange_rate": ("exchange_rate/exchange_rate.csv", 400, [*map(str, range(7)), "OT"], "1990-01-01", "D"),
}
SOLAR = ("Solar/solar_AL.txt", 700, 137)


def values(n_rows: int, n_cols: int) -> np.ndarray:
    """The miniature's values ``[n_rows, n_cols]``: distinct per row and column."""
    r = np.arange(n_rows, dtype=np.float64)[:, None]
    c = np.arange(n_cols, dtype=np.float64)[None, :]
    return np.round((r + 1) * 1e-3 + c + np.sin(2 * np.pi * r / 24 + c), 6)


def generate(out: str | Path) -> Path:
    """Write the miniature under ``out`` and return ``out``."""
    out = Path(out)
    for name, (rel, n, cols, start, freq) in TABLES.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        dates = pd.date_range(start, periods=n, freq=freq)
        if name == "exchange_rate":  # the original writes "1990/1/1 0:00"
            text = [f"{d.year}/{d.month}/{d.day} 0:00" for d in dates]
        else:
            text = list(dates.strftime("%Y-%m-%d %H:%M:%S"))
        frame = pd.DataFrame(values(n, len(cols)), columns=cols)
        frame.insert(0, "date", text)
        frame.to_csv(path, index=False, float_format="%.6g")
    rel, n, c = SOLAR
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values(n, c), delimiter=",", fmt="%.6g")
    return out


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else "tslib-miniature"))
