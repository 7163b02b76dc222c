"""Publish: write a run's forecasts to the predictions table in one transaction.

The table is the product's public interface (docs/publishing.md). Its key is
(run_month, entity columns..., horizon): re-publishing month M deletes M's rows and inserts the
new ones in the same transaction, so readers see the old month or the new one, never a mix and
never duplicates. ``<table>_latest`` shows, per entity and forecast month, the forecast made
from the most recent data; ``<table>_runs`` records which model made each month's forecasts
and how it scored on its holdout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, hide_password
from forecasting.core.db import make_engine
from forecasting.core.months import month_start

log = logging.getLogger(__name__)


def sql_type(dtype) -> sa.types.TypeEngine:
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float()
    return sa.String(255)


def predictions_tables(config: Config, key_dtypes: dict[str, object]) -> tuple[sa.Table, sa.Table]:
    """The forecasts table and its runs table, typed after the source's entity columns."""
    metadata = sa.MetaData(schema=config.predictions.database.schema)
    name = config.predictions.table
    keys = config.source.entity_columns
    forecasts = sa.Table(
        name,
        metadata,
        sa.Column(
            "run_month", sa.Date, nullable=False, comment="logical month M whose data made the forecast"
        ),
        *(sa.Column(k, sql_type(key_dtypes[k]), nullable=False) for k in keys),
        sa.Column("forecast_month", sa.Date, nullable=False, comment="first day of the month forecast"),
        sa.Column("horizon", sa.Integer, nullable=False, comment="months ahead of run_month"),
        sa.Column("prediction", sa.Float, nullable=False),
        *interval_columns(),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_month", *keys, "horizon", name=f"{name}_pkey"),
        sa.Index(f"{name}_entity_month_idx", *keys, "forecast_month"),
        sa.Index(f"{name}_forecast_month_idx", "forecast_month"),
    )
    runs = sa.Table(
        f"{name}_runs",
        metadata,
        sa.Column("run_month", sa.Date, primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forecasts", sa.Integer, nullable=False),
        sa.Column("holdout_wape", sa.Float),
        sa.Column("best_baseline", sa.String(64)),
        sa.Column("best_baseline_wape", sa.Float),
    )
    return forecasts, runs


def interval_columns() -> list[sa.Column]:
    return [
        sa.Column("p10", sa.Float, comment="10th percentile: 1 month in 10 sells less (NULL: no interval)"),
        sa.Column("p90", sa.Float, comment="90th percentile: 1 month in 10 sells more (NULL: no interval)"),
    ]


def latest_view_sql(config: Config, table: sa.Table, dialect: sa.Dialect) -> tuple[str, str]:
    """(view name, SELECT): per entity and forecast month, the row with the newest run_month."""
    quote = dialect.identifier_preparer.quote
    keys = ", ".join(quote(k) for k in config.source.entity_columns)
    columns = ", ".join(quote(c.name) for c in table.columns)
    relation = quote(table.name) if table.schema is None else f"{quote(table.schema)}.{quote(table.name)}"
    view = f"{table.name}_latest"
    view_ref = quote(view) if table.schema is None else f"{quote(table.schema)}.{quote(view)}"
    select = (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER ("
        f"PARTITION BY {keys}, {quote('forecast_month')} ORDER BY {quote('run_month')} DESC) AS row_rank "
        f"FROM {relation}) ranked WHERE row_rank = 1"
    )
    return view_ref, select


def ensure_schema(conn: sa.Connection, config: Config, key_dtypes: dict[str, object]):
    """Create the tables, indexes and view if missing (safe to call on every run)."""
    forecasts, runs = predictions_tables(config, key_dtypes)
    forecasts.metadata.create_all(conn, checkfirst=True)
    view_ref, select = latest_view_sql(config, forecasts, conn.dialect)
    added = add_missing_columns(conn, forecasts, interval_columns())
    exists = f"{config.predictions.table}_latest" in sa.inspect(conn).get_view_names(schema=forecasts.schema)
    if exists and added:  # the view lists its columns: make it show the new ones
        conn.execute(sa.text(f"DROP VIEW {view_ref}"))
    if added or not exists:
        conn.execute(sa.text(f"CREATE VIEW {view_ref} AS {select}"))
    return forecasts, runs


def add_missing_columns(conn: sa.Connection, table: sa.Table, columns: list[sa.Column]) -> list[str]:
    """Add nullable ``columns`` that an existing ``table`` (made by an older release) lacks;
    returns their names. Earlier months' rows keep NULL in them."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name, schema=table.schema)}
    quote = conn.dialect.identifier_preparer.quote
    relation = quote(table.name) if table.schema is None else f"{quote(table.schema)}.{quote(table.name)}"
    added = []
    for column in columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {relation} ADD COLUMN {quote(column.name)} {kind}"))
            added.append(column.name)
    if added:
        log.info("Added columns %s to %s (made by an earlier release)", ", ".join(added), table.name)
    return added


@dataclass
class PublishResult:
    table: str
    url: str
    rows: int
    replaced: int


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
) -> PublishResult:
    """Replace month M's forecasts with ``forecasts`` in one transaction."""
    keys = config.source.entity_columns
    created_at = created_at or datetime.now(UTC)
    run_month = month_start(month).date()
    columns = [*keys, "forecast_month", "horizon", "prediction", "p10", "p90"]
    # NaN bounds (no calibrated interval) go in as NULL; forecasts without them, as NULLs too.
    frame = forecasts.reindex(columns=columns).astype({"p10": object, "p90": object})
    frame[["p10", "p90"]] = frame[["p10", "p90"]].where(frame[["p10", "p90"]].notna(), None)
    frame = frame.assign(
        run_month=run_month, model_version=model_version, run_id=run_id, created_at=created_at
    )
    records = frame.to_dict(orient="records")
    dtypes = {k: forecasts[k].dtype for k in keys}
    engine = make_engine(config.predictions.database)
    try:
        postgres = engine.dialect.name == "postgresql"
        if postgres:  # concurrent publishes, no endless waits: see forecasting.publishing.postgres
            from forecasting.publishing.postgres import prepare_publish, publish_transaction

            name, schema = config.predictions.table, config.predictions.database.schema
            table, runs = prepare_publish(
                engine, lambda conn: ensure_schema(conn, config, dtypes), name, schema, run_month
            )
        with publish_transaction(engine, name, schema, run_month) if postgres else engine.begin() as conn:
            if not postgres:
                table, runs = ensure_schema(conn, config, dtypes)
            replaced = conn.execute(sa.delete(table).where(table.c.run_month == run_month)).rowcount
            insert_rows(conn, table, records)
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
    log.info("Published %d forecasts for %s to %s (replaced %d)", len(records), month, table.name, replaced)
    return PublishResult(table=table.name, url=url, rows=len(records), replaced=replaced)
