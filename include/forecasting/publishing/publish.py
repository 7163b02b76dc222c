"""Publish: write a run's forecasts to the predictions table in one transaction.

The table is the product's public interface (docs/publishing.md). Its key is
(run_month, entity columns..., horizon): re-publishing month M deletes M's rows and inserts the
new ones in the same transaction, so readers see the old month or the new one, never a mix and
never duplicates. ``<table>_latest`` shows, per entity and forecast month, the forecast made
from the most recent data; ``<table>_runs`` records which model made each month's forecasts
and how it scored on its holdout.

A publish that cannot reach its database (PostgreSQL restarting: "connection refused", "the
database system is starting up", a connection dropped mid-publish) tries again with backoff for
``FORECAST_PUBLISH_CONNECT_RETRY`` seconds (default ``CONNECT_RETRY_SECONDS``; 0: no retry).
That is safe because a publish replaces month M in one transaction: one cut before its commit
changed nothing, one cut during its commit is replaced by the same rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, hide_password
from forecasting.core.db import make_engine
from forecasting.core.months import month_start
from forecasting.publishing import revisions, tables

log = logging.getLogger(__name__)

CONNECT_RETRY_SECONDS = 300.0
"""How long a publish keeps trying to reach its database; FORECAST_PUBLISH_CONNECT_RETRY overrides it."""
CONNECT_RETRY_ENV = "FORECAST_PUBLISH_CONNECT_RETRY"
_FIRST_WAIT, _LONGEST_WAIT = 1.0, 30.0  # seconds between tries: doubling from the first to the longest
# SQLSTATEs of a server that is going away or not there yet: connection exceptions (class 08),
# admin_shutdown, crash_shutdown, cannot_connect_now.
_CONNECTION_SQLSTATES = ("57P01", "57P02", "57P03")
_UNREACHABLE = (
    "connection refused",
    "server closed the connection",
    "connection is closed",
    "could not receive data",
)


def is_connection_error(err: BaseException) -> bool:
    """A failure to reach the database or keep a connection to it (not a refusal of the request)."""
    if not isinstance(err, sa.exc.DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    state = getattr(err.orig, "sqlstate", None) or ""
    if state.startswith("08") or state in _CONNECTION_SQLSTATES:
        return True
    message = str(err.orig).lower()
    return isinstance(err, sa.exc.OperationalError) and any(text in message for text in _UNREACHABLE)


def predictions_tables(config: Config, key_dtypes: dict[str, object]) -> tuple[sa.Table, sa.Table]:
    """The forecasts table and its runs table, typed after the source's entity columns."""
    declared = tables.for_config(config, key_dtypes)
    return declared.forecasts, declared.runs


def ensure_schema(conn: sa.Connection, config: Config, key_dtypes: dict[str, object]):
    """Create the tables, indexes and views if missing (safe to call on every run)."""
    declared = tables.for_config(config, key_dtypes)
    forecasts, runs = declared.forecasts, declared.runs
    tables.create(conn, forecasts, runs, declared.drivers)
    revisions.ensure_views(conn, forecasts, config.source.entity_columns)
    view_ref, select = tables.latest_view_sql(forecasts, config.source.entity_columns, conn.dialect)
    # The interval columns, demand_class and history_months came after the first release.
    later = [forecasts.c.p10, forecasts.c.p90, forecasts.c.demand_class, forecasts.c.history_months]
    added = tables.add_missing_columns(conn, forecasts, later)
    view = tables.relation_name(forecasts.name, tables.LATEST)
    exists = view in sa.inspect(conn).get_view_names(schema=forecasts.schema)
    if exists and added:  # the view lists its columns: make it show the new ones
        conn.execute(sa.text(f"DROP VIEW {view_ref}"))
    if added or not exists:
        conn.execute(sa.text(f"CREATE VIEW {view_ref} AS {select}"))
    return forecasts, runs


@dataclass
class PublishResult:
    table: str
    url: str
    rows: int
    replaced: int
    drivers: int = 0
    level_rows: int | None = None  # rows written to <table>_levels (None: no hierarchy)


def insert_rows(conn: sa.Connection, table: sa.Table, records: list[dict]) -> None:
    """Bulk insert in the caller's transaction: COPY on PostgreSQL, else multi-row INSERTs."""
    if conn.dialect.name == "postgresql":
        from forecasting.publishing.postgres import copy_rows

        copy_rows(conn, table, records)
    elif records:
        conn.execute(table.insert(), records)


def publish(
    forecasts: pd.DataFrame,
    config: Config,
    month: pd.Period,
    *,
    model_version: str,
    run_id: str,
    evaluation: dict | None = None,
    created_at: datetime | None = None,
    drivers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> PublishResult:
    """Replace month M's forecasts with ``forecasts`` in one transaction (trying again while
    the database cannot be reached, for FORECAST_PUBLISH_CONNECT_RETRY seconds), and M's rows
    of ``<table>_drivers`` with ``drivers`` (forecasting.modeling.drivers.long_form; None: the
    forecaster has none, a baseline's) in the same transaction; with ``levels`` (the
    hierarchy's reconciled levels), M's rows of ``<table>_levels`` too."""
    from forecasting.publishing.postgres import seconds_from_env

    deadline = time.monotonic() + seconds_from_env(
        CONNECT_RETRY_ENV, CONNECT_RETRY_SECONDS, zero_allowed=True
    )
    wait = _FIRST_WAIT
    while True:
        try:
            return _publish_once(
                forecasts,
                config,
                month,
                model_version=model_version,
                run_id=run_id,
                evaluation=evaluation,
                created_at=created_at,
                drivers=drivers,
                levels=levels,
            )
        except sa.exc.DBAPIError as err:
            left = deadline - time.monotonic()
            if not is_connection_error(err) or left <= 0:
                raise
            pause = min(wait, left)  # the last try at the deadline
            reason = str(err.orig).strip().splitlines() or [type(err.orig).__name__]
            log.warning(
                "Publishing %s: the predictions database cannot be reached (%s); trying again in %.3g s "
                "(for %.3g s more, %s)",
                month,
                reason[0],
                pause,
                left,
                CONNECT_RETRY_ENV,
            )
            time.sleep(pause)
            wait = min(2 * wait, _LONGEST_WAIT)


def forecast_records(forecasts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The forecasts' columns of the table, as the database takes them: NaN bounds (no calibrated
    interval) as NULL, and forecasts without them (or without a demand class or months of
    history) NULLs too; months of history as whole ints (COPY refuses "2.0" for an INTEGER)."""
    nullable = ["p10", "p90", "demand_class", "history_months"]
    columns = [*keys, "forecast_month", "horizon", "prediction", *nullable]
    frame = forecasts.reindex(columns=columns).astype(dict.fromkeys(nullable, object))
    frame[nullable] = frame[nullable].where(frame[nullable].notna(), None)
    months = [None if v is None else int(v) for v in frame["history_months"]]
    frame["history_months"] = pd.Series(months, index=frame.index, dtype=object)
    return frame


def _publish_once(
    forecasts: pd.DataFrame,
    config: Config,
    month: pd.Period,
    *,
    model_version: str,
    run_id: str,
    evaluation: dict | None,
    created_at: datetime | None,
    drivers: pd.DataFrame | None = None,
    levels: pd.DataFrame | None = None,
) -> PublishResult:
    from forecasting.publishing.levels import ensure_levels_schema, level_records

    keys = config.source.entity_columns
    created_at = created_at or datetime.now(UTC)
    run_month = month_start(month).date()
    records = (
        forecast_records(forecasts, keys)
        .assign(run_month=run_month, model_version=model_version, run_id=run_id, created_at=created_at)
        .to_dict(orient="records")
    )
    dtypes = {k: forecasts[k].dtype for k in keys}
    explained = _driver_records(drivers, keys, run_month, model_version)
    drivers_table = tables.for_config(config, dtypes).drivers

    def create(conn: sa.Connection) -> tuple[sa.Table, sa.Table]:
        made = ensure_schema(conn, config, dtypes)
        if levels is not None:
            ensure_levels_schema(conn, config)
        return made

    level_rows = None
    engine = make_engine(config.predictions.database)
    try:
        postgres = engine.dialect.name == "postgresql"
        if postgres:  # concurrent publishes, no endless waits: see forecasting.publishing.postgres
            from forecasting.publishing.postgres import prepare_publish, publish_transaction

            name, schema = config.predictions.table, config.predictions.database.schema
            table, runs = prepare_publish(engine, create, name, schema, run_month)
        with publish_transaction(engine, name, schema, run_month) if postgres else engine.begin() as conn:
            if not postgres:
                table, runs = create(conn)
            replaced = conn.execute(sa.delete(table).where(table.c.run_month == run_month)).rowcount
            insert_rows(conn, table, records)
            # M's earlier drivers go too: they explained forecasts no longer published.
            conn.execute(sa.delete(drivers_table).where(drivers_table.c.run_month == run_month))
            insert_rows(conn, drivers_table, explained)
            if levels is not None:  # the hierarchy's levels, which add up to these forecasts
                level_table = tables.for_config(config).levels  # created with the others, above
                conn.execute(sa.delete(level_table).where(level_table.c.run_month == run_month))
                level = level_records(
                    config,
                    levels,
                    run_month,
                    model_version=model_version,
                    run_id=run_id,
                    created_at=created_at,
                )
                insert_rows(conn, level_table, level)
                level_rows = len(level)
            conn.execute(sa.delete(runs).where(runs.c.run_month == run_month))
            evaluation = evaluation or {}
            # The holdout WAPE of the forecaster that made the rows (the gate's choice), if decided.
            decision = evaluation.get("decision") or {}
            wape = decision["wape"] if "wape" in decision else evaluation.get("model", {}).get("wape")
            conn.execute(
                sa.insert(runs).values(
                    run_month=run_month,
                    model_version=model_version,
                    run_id=run_id,
                    created_at=created_at,
                    forecasts=len(records),
                    holdout_wape=wape,
                    best_baseline=evaluation.get("best_baseline"),
                    best_baseline_wape=evaluation.get("baselines", {})
                    .get(evaluation.get("best_baseline"), {})
                    .get("wape"),
                )
            )
        url = hide_password(engine.url.render_as_string(hide_password=True))
    finally:
        engine.dispose()
    log.info(
        "Published %d forecasts (%d driver rows) for %s to %s (replaced %d)",
        len(records),
        len(explained),
        month,
        table.name,
        replaced,
    )
    return PublishResult(
        table=table.name,
        url=url,
        rows=len(records),
        replaced=replaced,
        drivers=len(explained),
        level_rows=level_rows,
    )


def _driver_records(
    drivers: pd.DataFrame | None, keys: list[str], run_month: object, model_version: str
) -> list[dict]:
    if drivers is None or drivers.empty:
        return []
    columns = [*keys, "forecast_month", "horizon", "family", "contribution", "share", "explained"]
    # NaN as NULL: a share of a zero forecast is none; a contribution of NaN is refused (NOT NULL).
    frame = drivers[columns].astype({"share": object, "contribution": object})
    frame[["share", "contribution"]] = frame[["share", "contribution"]].where(
        frame[["share", "contribution"]].notna(), None
    )
    return frame.assign(run_month=run_month, model_version=model_version).to_dict(orient="records")
