"""Planners' overrides: record, change and withdraw them in ``<table>_overrides``, checked first.

The table is only appended to (docs/publishing.md#overrides): ``record_override`` adds version 1
of a new override, or with ``supersedes`` the next version of an existing one (a change);
``withdraw_override`` adds a version that withdraws it. Each is checked against the newest
published run before it is written: the entity (or the hierarchy level's group) must have
forecasts in it, and the months must overlap its forecast months, so a typo is refused at once,
naming it. The next publish applies the overrides in force (forecasting.publishing.
apply_overrides). From a shell (the deployment's FORECAST_CONFIG)::

    python -m forecasting.publishing.overrides add --entity store_id=3 --entity item_id=7 \\
        --months 2026-11:2026-12 --kind percent --value 20 --reason "end-cap promotion" --by alice
    python -m forecasting.publishing.overrides add --level region=North --months 2026-12 \\
        --kind absolute --value 5000 --reason "new store opens" --by bob [--expires 2027-02-01]
    python -m forecasting.publishing.overrides add --supersedes ov-1a2b3c4d ... (a change)
    python -m forecasting.publishing.overrides withdraw ov-1a2b3c4d --reason "promotion cancelled" --by alice
    python -m forecasting.publishing.overrides list [--all]
    python -m forecasting.publishing.overrides grant-planner --url postgresql://... --role planner
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, load_config
from forecasting.core.db import make_engine
from forecasting.core.errors import DataError
from forecasting.publishing import tables
from forecasting.publishing.apply_overrides import SEPARATOR, TOTAL, month_of, months, span
from forecasting.publishing.overrides_table import ABSOLUTE, ACTIVE, KINDS, PERCENT, WITHDRAWN

log = logging.getLogger(__name__)
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_BIGINT = 2**63


class OverrideError(DataError):
    """An override that cannot be recorded as given; the message says what to change."""


def _month(value: object, what: str) -> date:
    """A month (YYYY-MM, or a date in it) as its first day; OverrideError for anything else."""
    text = value.isoformat() if isinstance(value, date) else str(value).strip()
    if not _MONTH.match(text[:7]) or len(text) not in (7, 10):
        raise OverrideError(f"{what} {str(value)[:40]!r} is not a month (YYYY-MM)")
    return date(int(text[:4]), int(text[5:7]), 1)


def _day(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise OverrideError(f"expiry {str(value)[:40]!r} is not a day (YYYY-MM-DD)") from None


def nothing_published(config: Config) -> bool:
    """No predictions database or table yet (asked read-only: a SQLite file is not created)."""
    from forecasting.publishing.query import QueryError, run_query

    schema, name = config.predictions.database.schema, config.predictions.table
    relation = f'"{name}"' if schema is None else f'"{schema}"."{name}"'
    try:
        run_query(config, f"SELECT 1 FROM {relation} WHERE 1 = 0")
    except (QueryError, sa.exc.DBAPIError):
        return True
    return False


def database_tables(conn: sa.Connection, config: Config) -> tables.Tables:
    """The predictions database's tables, the entity columns typed as the published table has
    them; refused while nothing is published (an override is checked against a run)."""
    table, schema = config.predictions.table, config.predictions.database.schema
    inspector = sa.inspect(conn)
    if not inspector.has_table(table, schema=schema):
        raise OverrideError(f"nothing is published to {table} yet: an override adjusts a run's forecasts")
    types = {c["name"]: c["type"] for c in inspector.get_columns(table, schema=schema)}
    keys = config.source.entity_columns
    levels = config.hierarchy.levels if config.hierarchy is not None else []
    columns = list(dict.fromkeys(c for level in levels for c in level))
    declared = tables.declare(table, {k: types[k] for k in keys}, schema, level_columns=columns)
    tables.create(conn, declared.overrides, declared.override_outcomes)  # before the first publish made them
    return declared


def _typed(declared: tables.Tables, entity: Mapping[str, object]) -> dict[str, object]:
    """The entity's values as its columns' types (from a form or a command line: text)."""
    out = {}
    for key, value in entity.items():
        kind = declared.forecasts.c[key].type.python_type
        try:
            out[key] = kind(str(value).strip()) if kind in (int, float) else kind(value)
        except (TypeError, ValueError):
            raise OverrideError(f"{key} {str(value)[:40]!r} is not a {kind.__name__}") from None
        if kind is int and not -_BIGINT <= out[key] < _BIGINT:
            raise OverrideError(f"{key} {str(value)[:40]!r} is no entity (too large)")
    return out


def _forecast_months(conn: sa.Connection, declared: tables.Tables, row: dict, config: Config) -> list[str]:
    """The forecast months ("YYYY-MM") of the override's entity or group in the newest run ([]: none)."""
    forecasts = declared.forecasts
    newest = sa.select(sa.func.max(forecasts.c.run_month)).scalar_subquery()
    if row.get("level") is None:
        table = forecasts
        where = [forecasts.c[k] == row[k] for k in config.source.entity_columns]
    else:
        table = declared.levels
        if not sa.inspect(conn).has_table(table.name, schema=table.schema):
            raise OverrideError(f"level {row['level']!r}: this deployment publishes no levels (no hierarchy)")
        where = [table.c.level == row["level"], table.c.level_key == row["level_key"]]
    found = conn.execute(
        sa.select(table.c.forecast_month).distinct().where(table.c.run_month == newest, *where)
    ).scalars()
    return sorted(str(m) for m in months(list(found)))


def _check(conn: sa.Connection, declared: tables.Tables, row: dict, config: Config) -> None:
    """Refuse the row, naming what is wrong, unless the newest run forecast its target and months."""
    keys = config.source.entity_columns
    texts = [v for v in row.values() if isinstance(v, str)]
    if any("\x00" in v for v in texts):
        raise OverrideError("a field holds a NUL character")
    if row["kind"] not in KINDS:
        raise OverrideError(f"kind {row['kind']!r} is not one of {', '.join(KINDS)}")
    value = row["value"]
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise OverrideError(f"value {value!r} is not a finite number")
    if row["kind"] == ABSOLUTE and value < 0 or row["kind"] == PERCENT and value < -100:
        raise OverrideError(f"a {row['kind']} value of {value:g} would make a negative forecast")
    for field, text in (("reason", row["reason"]), ("created_by", row["created_by"])):
        if not str(text or "").strip():
            raise OverrideError(f"{field} is empty: an override says why, and who made it")
    if row["first_month"] > row["last_month"]:
        raise OverrideError(
            f"first month {row['first_month']:%Y-%m} is after the last {row['last_month']:%Y-%m}"
        )
    if row.get("level") is not None:
        names = [SEPARATOR.join(c) or TOTAL for c in (config.hierarchy.levels if config.hierarchy else [])]
        if row["level"] not in names:
            raise OverrideError(
                f"level {row['level']!r} is no level of the hierarchy ({', '.join(names) or 'none'})"
            )
    found = _forecast_months(conn, declared, row, config)
    name = (
        ", ".join(f"{k} {row[k]}" for k in keys)
        if row.get("level") is None
        else f"{row['level']} {row['level_key']}"
    )
    if not found:
        raise OverrideError(f"{name} has no forecast in the newest published run")
    first, last = month_of(row["first_month"]), month_of(row["last_month"])
    if not any(first <= pd.Period(m, "M") <= last for m in found):
        raise OverrideError(
            f"forecast months {span(first, last)} of {name} are not among the newest run's "
            f"({span(pd.Period(found[0], 'M'), pd.Period(found[-1], 'M'))})"
        )


def _newest_version(conn: sa.Connection, overrides: sa.Table, override_id: str) -> dict:
    row = (
        conn.execute(
            sa.select(overrides)
            .where(overrides.c.override_id == override_id)
            .order_by(overrides.c.version.desc())
        )
        .mappings()
        .first()
    )
    if row is None:
        raise OverrideError(f"no override {override_id!r} in {overrides.name}")
    return dict(row)


def _insert(config: Config, build) -> dict:
    """Insert the row ``build(conn, declared)`` returns, in one transaction; the row."""
    if nothing_published(config):
        raise OverrideError(
            f"nothing is published to {config.predictions.table} yet: an override adjusts a run's forecasts"
        )
    engine = make_engine(config.predictions.database)
    try:
        with engine.begin() as conn:
            declared = database_tables(conn, config)
            row = build(conn, declared)
            conn.execute(sa.insert(declared.overrides).values(**row))
    except sa.exc.DataError as err:  # a value the database's types cannot hold (too long ...)
        reason = str(err.orig).strip().splitlines()[0]
        raise OverrideError(f"override not recorded: the database refuses a value ({reason})") from err
    except sa.exc.IntegrityError as err:
        raise OverrideError(
            f"override not recorded: it was changed meanwhile, or breaks a rule of the table ({err.orig}); "
            "look at it again"
        ) from err
    finally:
        engine.dispose()
    log.info("Recorded override %s version %s (%s)", row["override_id"], row["version"], row["status"])
    return row


def record_override(
    config: Config,
    *,
    first_month: str | date,
    last_month: str | date | None,
    kind: str,
    value: float,
    reason: str,
    created_by: str,
    entity: Mapping[str, object] | None = None,
    level: str | None = None,
    level_key: str | None = None,
    expires_on: date | str | None = None,
    supersedes: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Record an override of ``entity`` (its entity columns' values) or of ``level``'s group
    ``level_key``: version 1 of a new override, or (``supersedes``: its id) its next version.
    Checked against the newest published run first (OverrideError, naming what is wrong)."""
    if (entity is None) == (level is None):
        raise OverrideError("an override names an entity or a level's group, not both nor neither")

    def build(conn: sa.Connection, declared: tables.Tables) -> dict:
        keys = config.source.entity_columns
        if entity is not None and set(entity) != set(keys):
            raise OverrideError(
                f"an entity is named by {', '.join(keys)} (got {', '.join(entity) or 'nothing'})"
            )
        row = {
            **dict.fromkeys(keys),
            **(_typed(declared, entity) if entity is not None else {}),
            "level": level,
            "level_key": (level_key or TOTAL) if level == TOTAL else level_key,
            "first_month": _month(first_month, "first month"),
            "last_month": _month(last_month or first_month, "last month"),
            "kind": kind,
            "value": value,
            "reason": reason.strip(),
            "created_by": created_by.strip(),
            "created_at": now or datetime.now(UTC),
            "expires_on": _day(expires_on),
            "status": ACTIVE,
        }
        if level is not None and not level_key and level != TOTAL:
            raise OverrideError(f"level {level!r}: which group? (its level_key)")
        _check(conn, declared, row, config)
        if supersedes:
            current = _newest_version(conn, declared.overrides, supersedes)
            return {**row, "override_id": supersedes, "version": current["version"] + 1}
        return {**row, "override_id": f"ov-{secrets.token_hex(4)}", "version": 1}

    return _insert(config, build)


def withdraw_override(
    config: Config, override_id: str, reason: str, created_by: str, now: datetime | None = None
) -> dict:
    """Withdraw an override: its next version, the same otherwise, with status withdrawn."""
    if not reason.strip() or not created_by.strip():
        raise OverrideError("a withdrawal says why, and who made it")

    def build(conn: sa.Connection, declared: tables.Tables) -> dict:
        current = _newest_version(conn, declared.overrides, override_id)
        if current["status"] == WITHDRAWN:
            raise OverrideError(f"override {override_id} is withdrawn already (version {current['version']})")
        return {
            **current,
            "version": current["version"] + 1,
            "status": WITHDRAWN,
            "reason": reason.strip(),
            "created_by": created_by.strip(),
            "created_at": now or datetime.now(UTC),
        }

    return _insert(config, build)


def read_overrides(config: Config, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Every version of every override (the audit trail), newest first; empty before any."""
    if engine is None and nothing_published(config):
        return pd.DataFrame()
    owned = engine is None
    engine = engine or make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            declared = tables.for_config(config)
            overrides = declared.overrides
            if not sa.inspect(conn).has_table(overrides.name, schema=overrides.schema):
                return pd.DataFrame()
            query = sa.select(overrides).order_by(overrides.c.created_at.desc(), overrides.c.version.desc())
            return pd.DataFrame(conn.execute(query).mappings().all())
    finally:
        if owned:
            engine.dispose()


def grant_planner_role(
    engine: sa.Engine,
    role: str,
    schema: str = "public",
    table: str = "forecasts",
    *,
    password: str | None = None,
) -> list[str]:
    """Create or update a planner role (PostgreSQL): what the analyst role reads
    (forecasting.publishing.postgres.grant_analyst_role), and INSERT on ``<table>_overrides``,
    nothing else; refused until a publish has made that table. Returns the relations it may read."""
    import psycopg.sql as psql

    from forecasting.core.names import OVERRIDES, relation_name
    from forecasting.publishing.postgres import grant_analyst_role

    overrides = relation_name(table, OVERRIDES)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": f'"{schema}"."{overrides}"'}).scalar()
    if found is None:
        raise OverrideError(f"no table {schema}.{overrides} yet: publish a month first (it creates it)")
    granted = grant_analyst_role(engine, role, schema, table, password=password)
    with engine.begin() as conn:
        statement = psql.SQL("GRANT INSERT ON {} TO {}").format(
            psql.Identifier(schema, overrides), psql.Identifier(role)
        )
        conn.exec_driver_sql(statement.as_string(conn.connection.driver_connection))
    log.info("Role %s may insert into %s.%s", role, schema, overrides)
    return granted


def _entity(pairs: Sequence[str]) -> dict[str, str]:
    try:
        return dict(pair.split("=", 1) for pair in pairs)
    except ValueError:
        raise OverrideError(f"--entity takes COLUMN=VALUE (got {' '.join(pairs)})") from None


def _add(args: argparse.Namespace, config: Config) -> dict:
    first, _, last = args.months.partition(":")
    level = key = None
    if args.level:
        level, _, key = args.level.partition("=")
    return record_override(
        config,
        entity=_entity(args.entity) if args.entity else None,
        level=level,
        level_key=key or None,
        first_month=first,
        last_month=last or first,
        kind=args.kind,
        value=args.value,
        reason=args.reason,
        created_by=args.by,
        expires_on=args.expires,
        supersedes=args.supersedes,
    )


def _list(config: Config, every_version: bool) -> str:
    trail = read_overrides(config)
    if trail.empty:
        return "No override recorded yet."
    if not every_version:
        trail = trail.sort_values("version").drop_duplicates("override_id", keep="last")
        trail = trail[trail["status"] == ACTIVE].sort_values("created_at", ascending=False)
    shown = [c for c in trail.columns if c not in ("reason",)] + ["reason"]
    return trail[shown].to_string(index=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.publishing.overrides", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="record an override, or (--supersedes) a new version of one")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--entity", action="append", metavar="COLUMN=VALUE", help="once per entity column")
    target.add_argument(
        "--level", metavar="LEVEL=GROUP", help="region=North, region,category=North,Food, total"
    )
    add.add_argument("--months", required=True, metavar="FIRST[:LAST]", help="forecast months, YYYY-MM")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--value", required=True, type=float, help="units (absolute, delta) or percent")
    add.add_argument("--reason", required=True)
    add.add_argument("--by", required=True, help="who makes it")
    add.add_argument("--expires", metavar="YYYY-MM-DD", help="runs on or after this day skip it")
    add.add_argument("--supersedes", metavar="OVERRIDE_ID", help="change this override (its next version)")
    withdraw = commands.add_parser("withdraw", help="withdraw an override (its next version)")
    withdraw.add_argument("override_id")
    withdraw.add_argument("--reason", required=True)
    withdraw.add_argument("--by", required=True)
    listing = commands.add_parser("list", help="the overrides in force (--all: every version)")
    listing.add_argument("--all", action="store_true")
    grant = commands.add_parser("grant-planner", help="PostgreSQL: a role that reads and inserts overrides")
    grant.add_argument("--url", required=True, help="SQLAlchemy URL of the predictions database")
    grant.add_argument("--role", default="planner")
    grant.add_argument("--schema", default="public")
    grant.add_argument("--table", default="forecasts")
    grant.add_argument("--password-env", metavar="VAR", help="environment variable with its password")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.command == "grant-planner":
            from forecasting.publishing.postgres import _psycopg_url

            password = os.environ.get(args.password_env) if args.password_env else None
            engine = sa.create_engine(_psycopg_url(args.url))
            try:
                granted = grant_planner_role(engine, args.role, args.schema, args.table, password=password)
            finally:
                engine.dispose()
            print(f"{args.role}: SELECT on {', '.join(granted)}; INSERT on {args.table}_overrides")
            return 0
        config = load_config()
        if args.command == "list":
            print(_list(config, args.all))
            return 0
        if args.command == "add":
            row = _add(args, config)
        else:
            row = withdraw_override(config, args.override_id, args.reason, args.by)
    except OverrideError as err:
        print(f"Refused: {err}", file=sys.stderr)
        return 2
    then = "applies it" if row["status"] == ACTIVE else "no longer applies it"
    print(
        f"Recorded {row['override_id']} version {row['version']} ({row['status']}); the next publish {then}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
