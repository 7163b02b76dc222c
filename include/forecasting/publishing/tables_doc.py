"""docs/tables.md, generated from the declarations in ``forecasting.publishing.tables``::

python -m forecasting.publishing.tables_doc > docs/tables.md
"""

from __future__ import annotations

import sqlalchemy as sa

from forecasting.core.names import CHURN, LATEST, LEVELS_LATEST, REVISIONS, TRACKING_SIGNAL, relation_name
from forecasting.publishing.tables import TRACKING_MONTHS, declare

VIEW_DOCS = {
    LATEST: "Per entity and forecast month, the forecast made from the most recent data: the row of "
    "`<table>` with the newest `run_month` (the same columns).",
    TRACKING_SIGNAL: "Per entity and horizon, over its last {months} scored months of `<table>_errors`: "
    "`months`, `first_month`, `last_month`, `cumulative_error`, `mean_absolute_error` and "
    "`tracking_signal` (the cumulative error over the mean absolute error).",
    REVISIONS: "Per entity, forecast month and run month, the forecast that run published (`prediction`, "
    "`horizon`, `model_version`) beside the previous run's forecast of the same month "
    "(`previous_run_month`, `previous_prediction`, NULL for its first) and `change`.",
    CHURN: "Per run month, over the forecasts an earlier run also made: `revised` rows, `previous_total`, "
    "`total`, `absolute_change`, `churn` (the sum of absolute changes over the previous total) and "
    "`total_revision` (the change of the total over the previous total).",
    LEVELS_LATEST: "Per level, group and forecast month, the forecast made from the most recent data: the "
    "row of `<table>_levels` with the newest `run_month` (the same columns).",
}
_DOC_ENTITY = "<entity>"
_DOC_LEVEL = "<level column>"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _describe_table(table: sa.Table, dialect: sa.Dialect) -> list[str]:
    keys = {c.name for c in table.primary_key.columns}
    lines = [f"## `{table.name}`", "", table.info["doc"], ""]
    lines += ["| column | type | null | key | comment |", "|---|---|---|---|---|"]
    for column in table.columns:
        if column.name == _DOC_ENTITY:
            kind = "BIGINT, FLOAT or VARCHAR(255), as in the source"
            name = "`<entity>` (each of `source.entity_columns`)"
        elif column.name == _DOC_LEVEL:
            kind = str(column.type.compile(dialect=dialect))
            name = "`<level column>` (each column `hierarchy.levels` groups by)"
        else:
            kind, name = str(column.type.compile(dialect=dialect)), f"`{column.name}`"
        null = "" if column.nullable else "NOT NULL"
        key = "PK" if column.name in keys else ""
        lines.append(f"| {name} | {kind} | {null} | {key} | {_cell(column.comment or '')} |")
    lines += [""]
    if table.primary_key.name and len(keys) > 1:
        columns = ", ".join(c.name for c in table.primary_key.columns)
        lines.append(f"Primary key `{table.primary_key.name}`: `({columns})`.")
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        lines.append(f"Index `{index.name}`: `({', '.join(c.name for c in index.columns)})`.")
    return [*lines, ""] if lines[-1] else lines


def describe() -> str:
    """docs/tables.md: every table of the predictions database, its columns, types and keys, and the views."""
    from sqlalchemy.dialects import postgresql

    tables = declare(
        "<table>", {_DOC_ENTITY: sa.String(255)}, plans=["plan_<covariate>"], level_columns=[_DOC_LEVEL]
    )
    lines = [
        "# Tables of the predictions database",
        "",
        "<!-- Generated from include/forecasting/publishing/tables.py (tables_doc.py) by",
        "     python -m forecasting.publishing.tables_doc > docs/tables.md (make tables-doc): do not edit. -->",
        "",
        "Every name starts with the predictions table's (config `predictions.table`, `forecasts` by "
        "default), written `<table>` here; `<entity>` stands for the entity columns (config "
        "`source.entity_columns`), in their order. Types as PostgreSQL shows them; SQLite gets the "
        "same columns, keys and indexes. The analyst role (`python -m forecasting.publishing.postgres "
        "grant-analyst`, deploy/postgres/init.sql) may read every table and view but the publish locks.",
        "",
    ]
    dialect = postgresql.dialect()
    for table in tables.metadata.tables.values():  # in the order declared
        lines += _describe_table(table, dialect)
    lines += ["# Views", ""]
    for suffix, text in VIEW_DOCS.items():
        lines += [f"## `{relation_name('<table>', suffix)}`", "", text.format(months=TRACKING_MONTHS), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(describe(), end="")
