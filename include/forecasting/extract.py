"""Extract: read the history window ending at month M from the source into a raw snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from forecasting import paths
from forecasting.config import Config
from forecasting.db import make_engine
from forecasting.months import month_end, month_start

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    path: Path
    rows: int
    first_month: str | None
    last_month: str | None


def window_start(config: Config, month: pd.Period) -> pd.Period | None:
    """First month a run of M reads, or None to read all history."""
    n = config.source.history_months
    return None if n is None else month - (n - 1)


def window_query(config: Config, dialect: sa.Dialect, has_start: bool) -> sa.TextClause:
    """SELECT * over the window; identifiers are quoted by the dialect, values are bound."""
    src = config.source
    quote = dialect.identifier_preparer.quote
    if src.table:
        relation = quote(src.table)
        if src.database.schema:
            relation = f"{quote(src.database.schema)}.{relation}"
    else:
        relation = f"({src.query.strip().rstrip(';')}\n) AS source_query"  # \n: a trailing -- comment keeps ")"
    time = quote(src.time_column)
    window = f"{time} < :window_end" + (f" AND {time} >= :window_start" if has_start else "")
    # Rows without a time are kept, so that validation reports them rather than extract hiding them.
    where = f"({window}) OR {time} IS NULL"
    params = [sa.bindparam("window_end", type_=sa.Date)]
    if has_start:
        params.append(sa.bindparam("window_start", type_=sa.Date))
    return sa.text(f"SELECT * FROM {relation} WHERE {where}").bindparams(*params)


def read_window(config: Config, month: pd.Period) -> pd.DataFrame:
    """Rows with a time in [start of window, end of M), the time column normalised to month starts."""
    start = window_start(config, month)
    engine = make_engine(config.source.database)
    # Dates, not datetimes: SQLite compares ISO strings, and "2024-03-01" < "2024-03-01 00:00:00".
    params = {"window_end": month_end(month).date()}
    if start is not None:
        params["window_start"] = month_start(start).date()
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(window_query(config, engine.dialect, start is not None), conn,
                                      params=params)
    finally:
        engine.dispose()
    time = config.source.time_column
    if time in frame.columns:
        # Unparseable times become NaT so that validation reports them instead of extract crashing.
        # ISO 8601 in any precision ("2024-03-01", "2024-03-15 10:00:00"), as SQL databases write it.
        stamps = pd.to_datetime(frame[time], errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
        frame[time] = stamps.dt.to_period("M").dt.to_timestamp()
    return frame


def extract(config: Config, month: pd.Period) -> Snapshot:
    """Write the raw snapshot for M (replacing an earlier one of the same month)."""
    frame = read_window(config, month)
    path = paths.snapshot(config, month)
    paths.write_parquet_atomically(frame, path)
    time = config.source.time_column
    months = frame[time].dropna() if time in frame.columns else pd.Series(dtype="datetime64[ns]")
    snapshot = Snapshot(
        path=path,
        rows=len(frame),
        first_month=None if months.empty else f"{months.min():%Y-%m}",
        last_month=None if months.empty else f"{months.max():%Y-%m}",
    )
    log.info("Extracted %d rows (%s..%s) for %s into %s", snapshot.rows, snapshot.first_month,
             snapshot.last_month, month, path)
    return snapshot
