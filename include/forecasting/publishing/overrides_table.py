"""``<table>_overrides`` (planners' adjustments, the audit trail) and ``<table>_override_outcomes``
(what each run did with them), declared for ``forecasting.publishing.tables``, which holds every
table of the predictions database. How they are written and applied: ``forecasting.publishing.
overrides`` and ``forecasting.publishing.apply_overrides`` (docs/publishing.md#overrides).

The overrides table is only ever appended to: a change or a withdrawal is a new row with the
same ``override_id`` and the next ``version``, and the newest version of an id is the one in
force. Its CHECK constraints refuse a malformed row whoever writes it (the planner role's SQL,
the CLI, the Forecasts view's form).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from forecasting.core.names import OVERRIDE_OUTCOMES, OVERRIDES, relation_name

ABSOLUTE, PERCENT, DELTA = "absolute", "percent", "delta"
KINDS = (ABSOLUTE, PERCENT, DELTA)
ACTIVE, WITHDRAWN = "active", "withdrawn"
STATUSES = (ACTIVE, WITHDRAWN)
APPLIED, REFUSED = "applied", "refused"
ID_LENGTH = 64


def _one_of(column: sa.Column, values: Sequence[str]) -> sa.ColumnElement[bool]:
    return column.in_(list(values))


def declare_overrides(
    metadata: sa.MetaData, table: str, keys: Sequence[str], entity_types: dict[str, sa.types.TypeEngine]
) -> sa.Table:
    """``<table>_overrides``: an entity's (its entity columns set, ``level`` NULL) or a
    hierarchy level's group's (``level`` and ``level_key`` set, the entity columns NULL)."""
    name = relation_name(table, OVERRIDES)
    entities = [
        sa.Column(k, entity_types[k], comment="an entity override's entity (NULL for a level's)")
        for k in keys
    ]
    level = sa.Column(
        "level",
        sa.String(255),
        comment="a level override's level, as in <table>_levels ('total', 'region', 'region,category'); "
        "NULL: an entity's",
    )
    level_key = sa.Column(
        "level_key", sa.String(1000), comment="the level's group, as in <table>_levels ('North', 'total')"
    )
    version = sa.Column(
        "version",
        sa.Integer,
        nullable=False,
        comment="1 when made; each change or withdrawal is a new row with the next version",
    )
    status = sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="active, or withdrawn (this version withdraws the override)",
    )
    first, last = (
        sa.Column("first_month", sa.Date, nullable=False, comment="first forecast month it adjusts"),
        sa.Column(
            "last_month", sa.Date, nullable=False, comment="last forecast month it adjusts (inclusive)"
        ),
    )
    kind = sa.Column(
        "kind",
        sa.String(16),
        nullable=False,
        comment="absolute (set to value), percent (scale by 1 + value/100) or delta (add value)",
    )
    value = sa.Column(
        "value",
        sa.Float,
        nullable=False,
        comment="units (absolute: >= 0; delta) or percent (>= -100); a level's is its group's total",
    )
    reason = sa.Column("reason", sa.Text, nullable=False, comment="why: a promotion, a store closing ...")
    made = sa.Table(
        name,
        metadata,
        sa.Column(
            "override_id",
            sa.String(ID_LENGTH),
            nullable=False,
            comment="the override, the same across its versions",
        ),
        version,
        status,
        *entities,
        level,
        level_key,
        first,
        last,
        kind,
        value,
        reason,
        sa.Column("created_by", sa.String(250), nullable=False, comment="who recorded this version"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
            comment="when this version was recorded",
        ),
        sa.Column(
            "expires_on",
            sa.Date,
            comment="runs scheduled on or after it (the run of month M: on M + 1's first day) skip it",
        ),
        sa.PrimaryKeyConstraint("override_id", "version", name=f"{name}_pkey"),
        info={
            "doc": "Planners' overrides (docs/publishing.md#overrides), never updated in place: a change or a "
            "withdrawal is a new version of the same `override_id`, the newest version is in force."
        },
    )
    _add_checks(made, keys)
    return made


def _add_checks(table: sa.Table, keys: Sequence[str]) -> None:
    """The CHECK constraints that refuse a malformed override, whoever writes it."""
    c = table.c
    entity_set = sa.and_(*(c[k].isnot(None) for k in keys))
    entity_unset = sa.and_(*(c[k].is_(None) for k in keys))
    checks = {
        "version": c.version >= 1,
        "status": _one_of(c.status, STATUSES),
        "kind": _one_of(c.kind, KINDS),
        "months": c.first_month <= c.last_month,
        "value": sa.or_(c.kind != ABSOLUTE, c.value >= 0) & sa.or_(c.kind != PERCENT, c.value >= -100),
        "reason": sa.func.length(sa.func.trim(c.reason)) > 0,
        "target": sa.or_(
            sa.and_(c.level.is_(None), c.level_key.is_(None), entity_set),
            sa.and_(c.level.isnot(None), c.level_key.isnot(None), entity_unset),
        ),
    }
    for what, check in checks.items():
        table.append_constraint(sa.CheckConstraint(check, name=f"{table.name}_{what}_check"))


def declare_outcomes(metadata: sa.MetaData, table: str) -> sa.Table:
    """``<table>_override_outcomes``: per run month, each override in force and what the run did."""
    name = relation_name(table, OVERRIDE_OUTCOMES)
    return sa.Table(
        name,
        metadata,
        sa.Column("run_month", sa.Date, nullable=False, comment="the run (month M) that published"),
        sa.Column("override_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, comment="the version in force at the publish"),
        sa.Column("outcome", sa.String(16), nullable=False, comment="applied or refused"),
        sa.Column("forecasts", sa.Integer, nullable=False, comment="the forecasts (rows) it adjusted"),
        sa.Column("message", sa.Text, nullable=False, comment="what it adjusted, or why it was refused"),
        sa.PrimaryKeyConstraint("run_month", "override_id", name=f"{name}_pkey"),
        info={
            "doc": "Per run month, every override in force at its publish: applied to how many forecasts, or "
            "refused and why (an entity, level group or month that run did not forecast)."
        },
    )


def final_columns(override_id: bool = True) -> list[sa.Column]:
    """The forecasts' (and the levels') columns after the overrides: ``final`` beside ``prediction``."""
    columns = [
        sa.Column(
            "final",
            sa.Float,
            comment="the forecast after the planners' overrides (= prediction where none applied; "
            "NULL: published before overrides existed)",
        ),
        sa.Column("final_p10", sa.Float, comment="p10 moved with final: scaled by final / prediction"),
        sa.Column("final_p90", sa.Float, comment="p90 moved with final: scaled by final / prediction"),
    ]
    if override_id:
        columns.append(
            sa.Column(
                "override_id",
                sa.String(ID_LENGTH),
                comment="the override applied last to this row (<table>_overrides; NULL: none)",
            )
        )
    return columns
