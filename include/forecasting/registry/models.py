"""The model registry: one row per trained model in ``<predictions.table>_models``.

It lives in the predictions database beside the forecasts (analysts read it with SQL; the
analyst role may SELECT it) and is created, and migrated by adding missing columns, by the
pipeline's evaluate stage, which registers each run's model and the gate's decision about it
(``forecasting.registry.gate``, the rule and its overrides). A person overrides the gate from the command line, with who and why
recorded in the row::

    python -m forecasting.registry.models list
    python -m forecasting.registry.models show 2026-10-1a2b3c4d5e
    python -m forecasting.registry.models promote 2026-10-1a2b3c4d5e --reason "..." [--by alice]
    python -m forecasting.registry.models reject 2026-10-1a2b3c4d5e --reason "..." [--by alice]

(for the deployment that ``FORECAST_CONFIG`` names).

Statuses:

* ``champion``: the model in effect for new months: the newest promotion that is not rejected.
* ``retired``: promoted once, superseded by a newer champion. It stays the champion *as of* the
  months it was promoted for, so a backfill of such a month compares with it.
* ``rejected``: lost the gate (``decided_by`` = ``gate``) or was rejected by a person. Never
  chosen by the gate again; a person may still promote it.
* ``challenger``: trained and registered, not decided (its run forced another forecaster).

Every promotion has a ``champion_since`` month: the gate's promotion of month M's model is in
effect from M; a person's promotion from the newest month in the registry. The champion *as of*
month M is the promoted, not rejected model with the latest ``champion_since`` ≤ M (ties: the
latest ``promoted_at``). So a backfill of an older month compares with the champion of that
time and never demotes a champion chosen at a newer month: if its model wins, it is promoted
for its own month and is ``retired`` at once (the newer champion stays). Rejecting the champion
hands the title back to the previous promotion.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from forecasting.core.config import Config, load_config
from forecasting.core.db import make_engine
from forecasting.modeling import backtest
from forecasting.publishing import tables

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, REJECTED, RETIRED = "champion", "challenger", "rejected", "retired"
STATUSES = (CHAMPION, CHALLENGER, REJECTED, RETIRED)
GATE = "gate"  # decided_by of the gate's own decisions
TOP_FEATURES = 10

# Outcomes of a decision about a model (the ``decision`` column; the rule is forecasting.registry.gate).
PROMOTED = "promoted"  # the gate promoted it: it published its month's forecasts
KEPT_CHAMPION = "kept_champion"  # it lost to the champion, whose forecasts were published
BASELINE = "baseline"  # it (and the champion) lost to the best baseline, whose forecasts were published
BLENDED = "blended"  # both lost to the best baseline; its mean with that baseline won and was published
FORCED = "forced"  # its run forced a forecaster (DAG param force_model_version)
MANUAL_PROMOTE = "manual_promote"
MANUAL_REJECT = "manual_reject"
MANUAL = (MANUAL_PROMOTE, MANUAL_REJECT)


def table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.MODELS)


def registry_table(config: Config) -> sa.Table:
    """``<table>_models`` (declared in forecasting.publishing.tables)."""
    return tables.for_config(config).models


def ensure_registry(conn: sa.Connection, config: Config) -> sa.Table:
    """Create the registry table if missing, and add the columns an older version lacked (every
    column added since the first release is nullable)."""
    table = registry_table(config)
    tables.create(conn, table)
    tables.add_missing_columns(conn, table)
    return table


_CREATE_RACE = {"23505", "42P07", "42710"}  # unique_violation, duplicate_table, duplicate_object


@contextmanager
def registry(config: Config, engine: sa.Engine | None = None) -> Iterator[tuple[sa.Connection, sa.Table]]:
    """A transaction on the registry (created if missing). On PostgreSQL the table is locked
    against other writers for the transaction, so two decisions never interleave; readers
    are not blocked."""
    own = engine is None
    engine = engine or make_engine(config.predictions.database)
    try:
        for attempt in range(1, 6):
            try:
                with engine.begin() as conn:
                    table = ensure_registry(conn, config)
                break
            except sa.exc.DBAPIError as err:  # two first runs creating it at once: the loser retries
                state = getattr(err.orig, "sqlstate", None)
                if state not in _CREATE_RACE or attempt == 5:
                    raise
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                preparer = conn.dialect.identifier_preparer
                conn.exec_driver_sql(f"LOCK TABLE {preparer.format_table(table)} IN SHARE ROW EXCLUSIVE MODE")
            yield conn, table
    finally:
        if own:
            engine.dispose()


# --- rows ------------------------------------------------------------------------------------


def _month(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(f"{str(value)[:7]}-01")


def _json(value: Any, sort_keys: bool = True) -> str:
    return json.dumps(value, sort_keys=sort_keys, default=str)


def model_row(metadata: dict, evaluation: dict, importance: dict[str, float], run_id: str | None) -> dict:
    """The registry's description of a trained model (no decision yet) from its metadata.json,
    evaluation.json and feature importance."""
    holdout = sorted(evaluation.get("holdout_target_months") or [])
    window = metadata.get("training_window", {})
    model = evaluation["model"]
    best = evaluation["best_baseline"]
    blended = evaluation.get("blend") or {}
    backtested = backtest.registry_values(evaluation.get("backtest"))
    if backtested["backtest_origins"] is not None:
        backtested["backtest_origins"] = _json(backtested["backtest_origins"])
    return {
        "model_version": metadata["model_version"],
        "run_month": _month(metadata["run_month"]),
        "run_id": run_id,
        "params": _json(metadata.get("params")),
        "features": _json(metadata.get("features")),
        "train_first_month": _month(window.get("first_target_month")),
        "train_last_month": _month(window.get("last_target_month")),
        "holdout_first_month": _month(holdout[0]) if holdout else None,
        "holdout_last_month": _month(holdout[-1]) if holdout else None,
        "data_fingerprint": metadata.get("data_fingerprint"),
        "holdout_rows": model.get("rows"),
        "holdout_wape": model["wape"],
        "holdout_mae": model.get("mae"),
        "holdout_rmse": model.get("rmse"),
        "holdout_bias": model.get("bias"),
        "holdout_bias_pct": model.get("bias_pct"),
        "baseline_wapes": _json({name: m["wape"] for name, m in evaluation["baselines"].items()}),
        "best_baseline": best,
        "best_baseline_wape": evaluation["baselines"][best]["wape"],
        "blend_baseline": blended.get("baseline"),
        "blend_wape": (blended.get("metrics") or {}).get("wape"),
        "feature_importance": _json(importance, sort_keys=False),  # largest share first
        "interval_coverage": (
            ((evaluation.get("intervals") or {}).get("coverage") or {}).get("model") or {}
        ).get("coverage"),
        "tuning": _json(metadata["tuning"]) if metadata.get("tuning") else None,
        **backtested,
    }


def top_features(booster, n: int = TOP_FEATURES) -> dict[str, float]:
    """The ``n`` features with the largest share of the booster's total gain (shares of all gain)."""
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    top = sorted(gain.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return {name: round(value / total, 6) for name, value in top}


def get(conn: sa.Connection, table: sa.Table, version: str) -> dict | None:
    row = conn.execute(sa.select(table).where(table.c.model_version == version)).mappings().first()
    return None if row is None else dict(row)


def champion_as_of(
    conn: sa.Connection, table: sa.Table, month: date, exclude: str | None = None
) -> dict | None:
    """The champion in effect for month ``month`` (see the module's docstring), leaving out
    ``exclude`` (the challenger itself, when its month is run again)."""
    query = (
        sa.select(table)
        .where(
            table.c.promoted_at.is_not(None),
            table.c.status != REJECTED,
            table.c.champion_since <= month,
        )
        .order_by(table.c.champion_since.desc(), table.c.promoted_at.desc(), table.c.model_version.desc())
        .limit(1)
    )
    if exclude is not None:
        query = query.where(table.c.model_version != exclude)
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def current_champion(config: Config) -> dict | None:
    """The champion for new months (None before the first promotion)."""
    engine = make_engine(config.predictions.database)
    try:
        table = registry_table(config)
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            return None
        with engine.connect() as conn:
            return champion_as_of(conn, table, date.max)
    finally:
        engine.dispose()


def normalise_statuses(conn: sa.Connection, table: sa.Table) -> None:
    """Exactly one champion (the newest promotion not rejected), the other promotions retired."""
    champion = champion_as_of(conn, table, date.max)
    promoted = sa.and_(table.c.promoted_at.is_not(None), table.c.status != REJECTED)
    conn.execute(sa.update(table).where(promoted).values(status=RETIRED))
    if champion is not None:
        conn.execute(
            sa.update(table).where(table.c.model_version == champion["model_version"]).values(status=CHAMPION)
        )


def save(conn: sa.Connection, table: sa.Table, row: dict) -> None:
    """Insert or replace a model's row (one row per version, however often its month runs)."""
    conn.execute(sa.delete(table).where(table.c.model_version == row["model_version"]))
    conn.execute(sa.insert(table).values(**{c.name: row.get(c.name) for c in table.columns}))
    normalise_statuses(conn, table)


# --- manual decisions ------------------------------------------------------------------------


class UnknownModel(LookupError):
    """No such model version in the registry."""


def _decide_manually(config: Config, version: str, promote: bool, reason: str, by: str) -> dict:
    if not reason.strip():
        raise ValueError("a manual decision needs a reason")
    now = datetime.now(UTC)
    with registry(config) as (conn, table):
        row = get(conn, table, version)
        if row is None:
            raise UnknownModel(f"no model {version} in {table.name}")
        values: dict[str, Any] = {
            "decision": MANUAL_PROMOTE if promote else MANUAL_REJECT,
            "reason": reason,
            "decided_by": by,
            "decided_at": now,
        }
        if promote:
            # In effect from the newest month in the registry on: the next run compares with it.
            newest = conn.execute(sa.select(sa.func.max(table.c.run_month))).scalar()
            newest = date.fromisoformat(str(newest)[:10]) if newest is not None else row["run_month"]
            values.update(
                status=RETIRED, promoted_at=now, champion_since=max(newest, _as_date(row["run_month"]))
            )
        else:
            values.update(status=REJECTED)
        conn.execute(sa.update(table).where(table.c.model_version == version).values(**values))
        normalise_statuses(conn, table)
        result = get(conn, table, version)
        assert result is not None
    log.info("%s %s (by %s): %s", "Promoted" if promote else "Rejected", version, by, reason)
    return result


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def promote(config: Config, version: str, reason: str, by: str | None = None) -> dict:
    """Make ``version`` the champion for the next runs (recorded with who and why)."""
    return _decide_manually(config, version, True, reason, by or default_user())


def reject(config: Config, version: str, reason: str, by: str | None = None) -> dict:
    """Take ``version`` out of the running for good (recorded with who and why); rejecting the
    champion makes the previous promotion the champion again."""
    return _decide_manually(config, version, False, reason, by or default_user())


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without one
        return os.environ.get("USER") or "unknown"


def list_models(config: Config) -> list[dict]:
    """Every registered model, newest run month first."""
    engine = make_engine(config.predictions.database)
    try:
        table = registry_table(config)
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            return []
        with engine.connect() as conn:
            query = sa.select(table).order_by(table.c.run_month.desc(), table.c.created_at.desc())
            return [dict(r) for r in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def show(config: Config, version: str) -> dict:
    for row in list_models(config):
        if row["model_version"] == version:
            return row
    raise UnknownModel(f"no model {version} in {table_name(config)}")


# --- command line ----------------------------------------------------------------------------


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


def format_list(rows: list[dict]) -> str:
    head = (
        f"{'model_version':<22}{'run_month':<11}{'status':<11}{'WAPE':>7}{'champ':>7}"
        f"{'baseline':>9}{'backtest':>9}  {'decision':<15}{'published':<26}decided_by"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['model_version']:<22}{str(r['run_month'])[:7]:<11}{r['status']:<11}"
            f"{_num(r['holdout_wape']):>7}{_num(r['champion_wape']):>7}{_num(r['best_baseline_wape']):>9}"
            f"{_num(r.get('backtest_wape')):>9}  "
            f"{(r['decision'] or ''):<15}{(r['published'] or ''):<26}{r['decided_by'] or ''}"
        )
    return "\n".join(lines)


def format_row(row: dict) -> str:
    out = []
    for key, value in row.items():
        if (
            key
            in ("params", "features", "baseline_wapes", "feature_importance", "backtest_origins", "tuning")
            and value
        ):
            value = json.dumps(json.loads(value), indent=2, sort_keys=True).replace("\n", "\n  ")
        out.append(f"{key}: {value}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.registry.models",
        description="The model registry of the deployment that FORECAST_CONFIG names.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every registered model, newest first")
    shown = commands.add_parser("show", help="one model's row")
    shown.add_argument("version")
    for name, text in (
        ("promote", "make a version the champion for the next runs"),
        ("reject", "take a version out of the running"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("version")
        sub.add_argument("--reason", required=True, help="why (recorded in the registry)")
        sub.add_argument("--by", help="who decides (default: the login name)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    config = load_config()
    try:
        if args.command == "list":
            rows = list_models(config)
            print(format_list(rows) if rows else f"no models in {table_name(config)} yet")
        elif args.command == "show":
            print(format_row(show(config, args.version)))
        else:
            decide_ = promote if args.command == "promote" else reject
            row = decide_(config, args.version, args.reason, args.by)
            champion = current_champion(config)
            print(
                f"{row['model_version']}: {row['status']} ({row['decision']} by {row['decided_by']}: "
                f"{row['reason']}); champion now: {champion['model_version'] if champion else 'none'}"
            )
    except (UnknownModel, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
