"""What-if scenarios, published: ``publish_scenarios`` replaces M's rows of ``<table>_scenarios``
and their sums the Scenarios page shows, ``<table>_scenario_totals`` (forecasting.scenarios.totals),
in one transaction (re-running M replaces them, never duplicates them); a month re-published by
a baseline or a blend has its earlier scenario rows withdrawn; and which months a run of the
forecast_scenarios DAG forecasts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, hide_password
from forecasting.core.db import make_engine
from forecasting.core.months import month_of, month_start
from forecasting.core.names import SCENARIO_TOTALS, relation_name
from forecasting.monitoring.accuracy import (
    create_missing,
    months_to_score,
    plain,
    published_months,
    write_transaction,
)
from forecasting.publishing import tables
from forecasting.publishing.publish import insert_rows
from forecasting.scenarios.totals import summary_rows

log = logging.getLogger(__name__)


def table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.SCENARIOS)


@dataclass
class ScenariosPublished:
    table: str
    url: str
    rows: int
    replaced: int
    scenarios: list[str]


def publish_scenarios(
    frame: pd.DataFrame,
    config: Config,
    month: pd.Period,
    *,
    model_version: str,
    run_id: str,
    created_at: datetime | None = None,
) -> ScenariosPublished:
    """Replace M's rows of ``<table>_scenarios`` with ``frame`` (``forecast_scenarios``' rows)
    in one transaction; the table is created, or given the plan columns it lacks, first."""
    keys = config.source.entity_columns
    run_month = month_start(month_of(month)).date()
    planned = [c for c in frame.columns if str(c).startswith("plan_")]
    declared = tables.for_config(config, {k: frame[k].dtype for k in keys}, planned)
    table, totals = declared.scenarios, declared.scenario_totals
    publication = (run_id, created_at or datetime.now(UTC))
    out = frame.assign(
        run_month=run_month, model_version=model_version, run_id=run_id, created_at=publication[1]
    )
    columns = [c.name for c in table.columns]
    records = [
        {c: plain(record.get(c)) for c in columns}
        for record in out.reindex(columns=columns).to_dict(orient="records")
    ]
    for record in records:
        record["overridden"] = bool(record["overridden"])
    engine = make_engine(config.predictions.database)
    try:

        def create(conn: sa.Connection) -> None:
            tables.create(conn, table, totals)
            # a config that plans more covariates
            tables.add_missing_columns(conn, table, [table.c[name] for name in planned])

        create_missing(engine, create)
        with write_transaction(engine, table, totals) as conn:
            replaced = conn.execute(sa.delete(table).where(table.c.run_month == run_month)).rowcount
            insert_rows(conn, table, records)
            conn.execute(sa.delete(totals).where(totals.c.run_month == run_month))
            summed = summary_rows(conn, table, config, run_month, publication)
            insert_rows(conn, totals, [{c.name: row.get(c.name) for c in totals.columns} for row in summed])
        url = hide_password(engine.url.render_as_string(hide_password=True))
    finally:
        engine.dispose()
    names = list(dict.fromkeys(frame["scenario"])) if len(frame) else []
    log.info(
        "Published %d scenario forecasts (%s) for %s to %s (replaced %d)",
        len(records),
        ", ".join(names),
        month,
        table.name,
        replaced,
    )
    return ScenariosPublished(
        table=table.name, url=url, rows=len(records), replaced=replaced, scenarios=names
    )


def withdraw_scenarios(config: Config, month: pd.Period) -> dict[str, int]:
    """Delete M's rows of ``<table>_scenarios`` and ``<table>_scenario_totals`` (one
    transaction), when M's published forecasts are no longer the model's whose scenarios they
    are: rows per model_version deleted."""
    engine = make_engine(config.predictions.database)
    schema = config.predictions.database.schema
    totals_name = relation_name(config.predictions.table, SCENARIO_TOTALS)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table_name(config), schema=schema):
                return {}
            # none in a database published before it
            with_totals = sa.inspect(conn).has_table(totals_name, schema=schema)
        metadata = sa.MetaData(schema=schema)
        table = sa.Table(table_name(config), metadata, autoload_with=engine)
        summed = [sa.Table(totals_name, metadata, autoload_with=engine)] if with_totals else []
        run_month = month_start(month_of(month)).date()
        with write_transaction(engine, table, *summed) as conn:
            by_version = conn.execute(
                sa.select(table.c.model_version, sa.func.count())
                .where(table.c.run_month == run_month)
                .group_by(table.c.model_version)
            ).all()
            for each in (table, *summed):
                conn.execute(sa.delete(each).where(each.c.run_month == run_month))
    finally:
        engine.dispose()
    return {str(version): int(count) for version, count in by_version}


def months_to_forecast(config: Config, requested: str | None, event_extras: list[dict]) -> list[dict]:
    """What a forecast_scenarios run forecasts: [{"month": "YYYY-MM", "attempt": ...}, ...]: the
    month asked for, else the months the triggering Asset events published (each with its
    attempt), else the newest month published (``monitoring.months_to_score``, without the later
    months a backfill re-scores: a scenario is about the month's own forecasts)."""
    return months_to_score(requested, event_extras, published_months(config), horizon=0)
