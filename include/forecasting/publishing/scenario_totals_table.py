"""``<table>_scenario_totals``: what the Forecasts view's Scenarios page shows of a month's
what-if scenarios, summed from ``<table>_scenarios`` by ``publish_scenarios`` in the transaction
that replaces the month's rows (forecasting.scenarios.totals), so that the page reads a few
hundred rows instead of the month's scan. Declared for ``forecasting.publishing.tables`` (which
holds every table of the predictions database)."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from forecasting.core.config import SCENARIO_NAME_LENGTH
from forecasting.core.names import SCENARIO_TOTALS, relation_name

# Its rows, one kind per part of the page.
MONTH, GROUP, MOVER = "month", "group", "mover"


def declare_scenario_totals(
    metadata: sa.MetaData, table: str, entity_types: Mapping[str, sa.types.TypeEngine]
) -> sa.Table:
    """``<table>_scenario_totals``, with the entity columns typed by ``entity_types`` (NULL
    where a row does not name them)."""
    name = relation_name(table, SCENARIO_TOTALS)
    return sa.Table(
        name,
        metadata,
        sa.Column("run_month", sa.Date, nullable=False, comment="as in <table>_scenarios"),
        sa.Column(
            "scenario",
            sa.String(SCENARIO_NAME_LENGTH),
            nullable=False,
            comment="the scenario (month rows: the base plan's too)",
        ),
        sa.Column(
            "part",
            sa.String(8),
            nullable=False,
            comment=f"{MONTH}: the scenario's total of a forecast month; {GROUP}: a group of a level, "
            f"among the scenario's largest moves; {MOVER}: an entity, among its largest moves",
        ),
        sa.Column(
            "level",
            sa.String(255),
            nullable=False,
            comment="the columns grouped by, comma-separated ('total' on month rows; movers: the entity "
            "columns)",
        ),
        sa.Column(
            "position",
            sa.Integer,
            nullable=False,
            comment="the row's place on the page: months in order, groups and movers the largest move first",
        ),
        *(
            sa.Column(k, kind, comment="the group's or the entity's (NULL where it does not name it)")
            for k, kind in entity_types.items()
        ),
        sa.Column("forecast_month", sa.Date, comment="month rows: the month forecast (else NULL)"),
        sa.Column(
            "forecasts",
            sa.Integer,
            nullable=False,
            comment="forecasts summed (movers: the months the scenario plans the entity)",
        ),
        sa.Column("planned", sa.Integer, comment="of those, the scenario plans (movers: NULL)"),
        sa.Column("total", sa.Float, comment="the scenario's sum of those forecasts"),
        sa.Column("base_total", sa.Float, comment="groups and movers: the base plan's sum of the same"),
        sa.Column(
            "difference",
            sa.Float,
            comment="groups and movers: total - base_total (movers: summed per forecast)",
        ),
        sa.Column(
            "run_id", sa.String(250), nullable=False, comment="the publication: as in <table>_scenarios"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_month", "scenario", "part", "level", "position", name=f"{name}_pkey"),
        info={
            "doc": "The Scenarios page's numbers per run month and scenario: totals per forecast month, the "
            "hierarchy's groups and the entities that move most (summed from `<table>_scenarios`)."
        },
    )
