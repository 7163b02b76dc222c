"""Revisions: how each run changed the forecasts of the months earlier runs forecast too.

The predictions table keeps every run's rows (its key starts with run_month), so a month M + 2
forecast by runs M, M + 1 and M + 2 has three rows. Two views over it (docs/drivers.md):

* ``<table>_revisions``: per entity, forecast month and run, its forecast beside the previous
  run's forecast of the same month, and the change;
* ``<table>_churn``: per run, over the forecasts an earlier run also made, how much the plan
  moved: ``churn`` = sum |change| / sum previous, and ``total_revision`` = the change of the
  total over the previous total (what forecast_monitoring alerts on, monitoring.max_total_revision).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from forecasting.core.names import CHURN, REVISIONS, relation_name


def _ref(dialect: sa.Dialect, schema: str | None, name: str) -> str:
    quote = dialect.identifier_preparer.quote
    return quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"


def revisions_select(forecasts: sa.Table, keys: Sequence[str], dialect: sa.Dialect) -> str:
    """The SELECT of ``<table>_revisions``."""
    quote = dialect.identifier_preparer.quote
    entity = ", ".join(quote(k) for k in keys)
    window = f"OVER (PARTITION BY {entity}, forecast_month ORDER BY run_month)"
    return (
        f"SELECT {entity}, forecast_month, run_month, horizon, prediction, model_version, "
        f"LAG(run_month) {window} AS previous_run_month, "
        f"LAG(prediction) {window} AS previous_prediction, "
        f"prediction - LAG(prediction) {window} AS change "
        f"FROM {dialect.identifier_preparer.format_table(forecasts)}"
    )


def churn_select(forecasts: sa.Table, keys: Sequence[str], dialect: sa.Dialect) -> str:
    """The SELECT of ``<table>_churn`` (over the revisions' rows that have a previous forecast)."""
    previous = "SUM(previous_prediction)"
    return (
        "SELECT run_month, COUNT(*) AS revised, "
        f"{previous} AS previous_total, SUM(prediction) AS total, SUM(ABS(change)) AS absolute_change, "
        f"CASE WHEN {previous} > 0 THEN SUM(ABS(change)) / {previous} END AS churn, "
        f"CASE WHEN {previous} > 0 THEN (SUM(prediction) - {previous}) / {previous} END AS total_revision "
        f"FROM ({revisions_select(forecasts, keys, dialect)}) revisions "
        "WHERE previous_prediction IS NOT NULL GROUP BY run_month"
    )


def view_names(table: str) -> tuple[str, str]:
    return relation_name(table, REVISIONS), relation_name(table, CHURN)


def ensure_views(conn: sa.Connection, forecasts: sa.Table, keys: Sequence[str]) -> None:
    """Create ``<table>_revisions`` and ``<table>_churn`` where missing (they read only the
    predictions table's key and prediction columns: no upgrade ever needs them remade)."""
    existing = set(sa.inspect(conn).get_view_names(schema=forecasts.schema))
    revisions, churn = view_names(forecasts.name)
    for name, select in (
        (revisions, revisions_select(forecasts, keys, conn.dialect)),
        (churn, churn_select(forecasts, keys, conn.dialect)),
    ):
        if name not in existing:
            conn.execute(sa.text(f"CREATE VIEW {_ref(conn.dialect, forecasts.schema, name)} AS {select}"))
