"""What raises an alert about month M's data (forecasting.monitoring.alerts raises them):

* ``accuracy``: the realised WAPE of a horizon's forecasts for M above ``alerts.max_wape``, or
  worse than the best naive forecast's in each of the last ``alerts.worse_than_naive_months``
  months up to M (from ``<table>_accuracy``);
* ``drift``: a feature, the target or an entity share of M flagged in ``<table>_drift``;
* ``coverage``: a horizon's realised p10-p90 coverage outside ``monitoring.intervals``' band
  in each of its last ``months`` months up to M (forecasting.monitoring.coverage);
* ``revision``: run M moved the total forecast of the months an earlier run also forecast by
  more than ``monitoring.max_total_revision`` (``<table>_churn``, forecasting.monitoring.revisions),
  or a hierarchy level group's by more than ``monitoring.max_level_revision`` beyond what its
  newest month's actual explains (one alert per level, naming its groups that moved most).

DAG files import this module when they are parsed, so it imports nothing heavy at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forecasting.core.config import Config
from forecasting.core.names import LEVELS, MONITORING_DAG, REVISIONS, relation_name
from forecasting.monitoring.alerts import Alert, format_number, raise_alerts

if TYPE_CHECKING:
    import pandas as pd

MOST_NAMED = 5  # the groups a level's revision alert names


def accuracy_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """The realised-accuracy alerts of M, from ``<table>_accuracy`` (over every entity)."""
    import sqlalchemy as sa

    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import ALL, monitoring_tables

    rules = config.alerts
    months = max(rules.worse_than_naive_months, 1)
    accuracy, _ = monitoring_tables(config, {k: object for k in config.source.entity_columns})
    first = (month - (months - 1)).to_timestamp().date()
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(accuracy.name, schema=accuracy.schema):
                return []
            columns = ["forecast_month", "horizon", "actual_sum", "wape", "best_naive", "best_naive_wape"]
            found = conn.execute(
                sa.select(*(accuracy.c[c] for c in columns)).where(
                    accuracy.c.segment_column == ALL,
                    accuracy.c.forecast_month >= first,
                    accuracy.c.forecast_month <= month.to_timestamp().date(),
                )
            ).all()
    finally:
        engine.dispose()
    by_horizon: dict[int, dict[str, dict[str, Any]]] = {}
    for row in found:
        key = str(row.forecast_month)[:7]
        by_horizon.setdefault(int(row.horizon), {})[key] = _combine(
            by_horizon.get(int(row.horizon), {}).get(key), row
        )

    out = []
    this = str(month)
    wanted = [str(month - k) for k in range(months - 1, -1, -1)]
    for horizon, scored in sorted(by_horizon.items()):
        now = scored.get(this)
        if now is None or now["wape"] is None:
            continue
        about = f"horizon {horizon}"
        if rules.max_wape is not None and now["wape"] > rules.max_wape:
            out.append(
                Alert(
                    dag_id,
                    this,
                    "accuracy",
                    "wape",
                    about,
                    now["wape"],
                    rules.max_wape,
                    f"The realised WAPE of the horizon-{horizon} forecasts for {this} is "
                    f"{format_number(now['wape'])}, above alerts.max_wape {format_number(rules.max_wape)}.",
                    run_id,
                )
            )
        streak = [scored.get(m) for m in wanted]
        if rules.worse_than_naive_months and all(
            s is not None and s["wape"] is not None and s["naive"] is not None and s["wape"] > s["naive"]
            for s in streak
        ):
            history = "; ".join(
                f"{m} {format_number(s['wape'])} against {s['best_naive']} {format_number(s['naive'])}"
                for m, s in zip(wanted, streak, strict=True)
                if s is not None
            )
            out.append(
                Alert(
                    dag_id,
                    this,
                    "accuracy",
                    "wape_vs_best_naive",
                    about,
                    now["wape"],
                    now["naive"],
                    f"The horizon-{horizon} forecasts were worse than the best naive forecast "
                    f"{rules.worse_than_naive_months} month(s) in a row (alerts.worse_than_naive_months): "
                    f"realised WAPE {history}.",
                    run_id,
                )
            )
    return out


def _combine(before: dict[str, Any] | None, row) -> dict[str, Any]:
    """WAPE and best naive WAPE of a horizon's rows of a month (several models: weighted by sales)."""
    actual = float(row.actual_sum or 0.0)
    entry = before or {"actual": 0.0, "errors": 0.0, "naive_errors": 0.0, "best_naive": row.best_naive}
    entry["actual"] += actual
    entry["errors"] += (row.wape or 0.0) * actual
    entry["naive_errors"] += (row.best_naive_wape or 0.0) * actual
    defined = entry["actual"] > 0 and row.wape is not None
    entry["wape"] = entry["errors"] / entry["actual"] if defined else None
    entry["naive"] = (
        entry["naive_errors"] / entry["actual"] if defined and row.best_naive_wape is not None else None
    )
    return entry


def drift_alerts(
    drift: dict | None, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert per row that the drift stage flagged (``drift``: its result, drift.json)."""
    out = []
    for row in (drift or {}).get("rows", []):
        if not row.get("drifted"):
            continue
        window = f"{row.get('reference_first_month')}..{row.get('reference_last_month')}"
        if row["kind"] == "entities":
            message = (
                f"{row['feature'].replace('_', ' ').capitalize()} in {month}: {row['entities']:,} "
                f"({row['share']:.1%}), at least monitoring.entity_share_threshold {row['threshold']:.1%}."
            )
            metric, value = "share", row["share"]
        else:
            test = (
                f"; KS statistic {format_number(row['ks_statistic'])}, p-value {row['ks_pvalue']:.2g}"
                if row.get("ks_pvalue") is not None
                else ""
            )
            message = (
                f"The {row['kind']} {row['feature']} drifted in {month}: PSI {format_number(row['psi'])}, at least "
                f"monitoring.psi_threshold {format_number(row['threshold'])}, against the training window "
                f"{window} of {drift.get('model_version') if drift else '?'}{test}."
            )
            metric, value = "psi", row["psi"]
        out.append(
            Alert(
                dag_id, str(month), "drift", metric, row["feature"], value, row["threshold"], message, run_id
            )
        )
    return out


def revision_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert if run M moved the total forecast of the months an earlier run also forecast by
    more than ``monitoring.max_total_revision``, either way (``<table>_churn``)."""
    from forecasting.monitoring.revisions import churn_of

    threshold = config.monitoring.max_total_revision
    churn = churn_of(config, month) if threshold is not None else None
    if churn is None or churn["total_revision"] is None or abs(churn["total_revision"]) <= threshold:
        return []
    moved = churn["total_revision"]
    message = (
        f"The run of {month} moved the total forecast of the {churn['revised']:,} forecasts an earlier "
        f"run also made by {moved:+.1%} (from {churn['previous_total']:,.1f} to {churn['total']:,.1f}; "
        f"churn {churn['churn']:.1%}), more than monitoring.max_total_revision {threshold:.1%}. "
        f"Per entity: {relation_name(config.predictions.table, REVISIONS)}."
    )
    return [
        Alert(
            dag_id,
            str(month),
            "revision",
            "total_revision",
            "total forecast",
            moved,
            threshold,
            message,
            run_id,
        )
    ]


def level_revision_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert per hierarchy level some of whose groups run M moved by more than
    ``monitoring.max_level_revision``, beyond what the group's newest actual explains
    (forecasting.monitoring.revisions.level_revisions), naming the groups that moved most."""
    import pandas as pd

    from forecasting.monitoring.revisions import level_revisions

    threshold = config.monitoring.max_level_revision
    if threshold is None:
        return []
    moved = level_revisions(config, month)
    flagged = moved[(moved["revision"].abs() > threshold) & (moved["unexplained"].abs() > threshold)]
    out = []
    for level, groups in flagged.groupby("level", sort=True):
        groups = groups.reindex(groups["unexplained"].abs().sort_values(ascending=False).index)
        named = "; ".join(
            f"{g.level_key} {g.revision:+.1%}"
            + ("" if pd.isna(g.surprise) else f" (its {month} came in {g.surprise:+.1%} off that forecast)")
            for g in groups.head(MOST_NAMED).itertuples()
        )
        more = f" and {len(groups) - MOST_NAMED} more" if len(groups) > MOST_NAMED else ""
        message = (
            f"The run of {month} moved the forecast of {len(groups):,} {level} group(s) by more than "
            f"monitoring.max_level_revision {threshold:.1%} against the run of {groups['previous_run'].iloc[0]}, "
            f"beyond what their newest month explains: {named}{more}. Per group and month: "
            f"{relation_name(config.predictions.table, LEVELS)}."
        )
        worst = groups.iloc[0]
        out.append(
            Alert(
                dag_id,
                str(month),
                "revision",
                "level_revision",
                f"level {level}",
                float(worst.revision),
                threshold,
                message,
                run_id,
            )
        )
    return out


def coverage_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert per horizon whose intervals held too few or too many actuals, months in a row."""
    from forecasting.monitoring.coverage import coverage_outside_band

    found = coverage_outside_band(config, month)
    return [Alert(dag_id, str(month), "coverage", run_id=run_id, **fields) for fields in found]


def check_month(
    config: Config,
    month: pd.Period,
    drift: dict | None,
    *,
    dag_id: str = MONITORING_DAG,
    run_id: str | None = None,
) -> dict:
    """Raise the accuracy, drift, revision and coverage alerts of M; returns what was raised and to whom it went."""
    found = accuracy_alerts(config, month, dag_id, run_id) + drift_alerts(drift, month, dag_id, run_id)
    found += revision_alerts(config, month, dag_id, run_id) + level_revision_alerts(
        config, month, dag_id, run_id
    )
    found += coverage_alerts(config, month, dag_id, run_id)
    return raise_alerts(config, found)
