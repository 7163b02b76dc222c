"""A deployment for the Forecasts view's tests, built in a second by publishing hand-made rows
(no pipeline run): three published months, the published attempts' files (snapshot, stage
results, evaluation.json, Data Docs with GX's CDN links) and three attempts that did not publish.

Numbers, chosen so every shown value can be worked out by hand:
* prediction of (store s, item i, horizon h) by run month r = 100 s + 10 i + h + r.month / 100
* actual units of (s, i) in month t = 100 s + 10 i + t.month (2023-01..2024-12), except store 2 /
  item 3, which has no row for 2024-06.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tests.helpers.config import demo_config_dict, write_config

STORES, ITEMS, HORIZON = (1, 2), (1, 2, 3), 3
RUN_MONTHS = ("2024-10", "2024-11", "2024-12")
MISSING_ACTUAL = (2, 3, "2024-06")
RUN_IDS = {m: f"scheduled__{pd.Period(m, 'M') + 1}-01T00:00:00+00:00" for m in RUN_MONTHS}
FAILED_VALIDATION = ("2025-01", "manual__2025-02-03T10:00:00+00:00")
FAILED_TRAIN = ("2024-12", "manual__2025-01-05T09:00:00+00:00")  # a later attempt of a published month
STOPPED = ("2025-02", "manual__2025-03-02T08:00:00+00:00")

ONE_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CDN_PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-x" crossorigin="anonymous"></script>
</head><body><img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">
<p id="jq">no jQuery</p><script>if (window.jQuery) { $("#jq").text("jQuery " + $.fn.jquery); }</script>
{body}</body></html>"""


def prediction(store: int, item: int, horizon: int, run: str) -> float:
    return 100 * store + 10 * item + horizon + pd.Period(run, "M").month / 100


def actual(store: int, item: int, month: str) -> float:
    return float(100 * store + 10 * item + pd.Period(month, "M").month)


def forecasts(run: str) -> pd.DataFrame:
    start = pd.Period(run, "M")
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "forecast_month": (start + h).to_timestamp().date(),
                "horizon": h,
                "prediction": prediction(s, i, h, run),
            }
            for s in STORES
            for i in ITEMS
            for h in range(1, HORIZON + 1)
        ]
    )


def with_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """The forecasts with the value added's steps predict stores beside them: the model's own
    forecast 10 units above the published one, the statistical one 5 below."""
    return frame.assign(model_forecast=frame["prediction"] + 10, statistical_forecast=frame["prediction"] - 5)


def drivers_of(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    """Each prediction's drivers (they sum to it): level 100 s + 10 i, calendar h, trend r.month / 100."""
    from forecasting.modeling.drivers import long_form

    wide = frame.assign(
        driver_level=100.0 * frame["store_id"] + 10.0 * frame["item_id"],
        driver_trend=pd.Period(run, "M").month / 100,
        driver_calendar=frame["horizon"].astype(float),
        explained=1.0,
    )
    return long_form(wide, ["store_id", "item_id"])


def snapshot() -> pd.DataFrame:
    months = pd.period_range("2023-01", "2024-12", freq="M")
    rows = [
        {
            "store_id": s,
            "item_id": i,
            "month": m.to_timestamp(),
            "units": actual(s, i, str(m)),
            "price": 1.0,
            "promo": 0,
            "store_size": "large",
            "region": "north",
            "category": category(i),
        }
        for s in STORES
        for i in ITEMS
        for m in months
        if (s, i, str(m)) != MISSING_ACTUAL
    ]
    return pd.DataFrame(rows)


def evaluation(run: str, version: str) -> dict:
    def scores(wape: float) -> dict:
        return {
            "wape": wape,
            "mae": 10 * wape,
            "rmse": 12 * wape,
            "bias": -wape,
            "bias_pct": -wape / 10,
            "rows": 18,
        }

    month = pd.Period(run, "M").month
    model, mean_3, naive = 0.20 + month / 1000, 0.30, 0.35
    return {
        "model_version": version,
        "run_month": run,
        "model": scores(model),
        "baselines": {"mean_3": scores(mean_3), "seasonal_naive": scores(naive)},
        "best_baseline": "mean_3",
        "beats_best_baseline": True,
        "by_horizon": {
            str(h): {
                "model": scores(model + h / 100),
                "mean_3": scores(0.3 + h / 100),
                "seasonal_naive": scores(0.35),
            }
            for h in range(1, HORIZON + 1)
        },
        "champion": {},
        "decision": {"outcome": "promoted", "reason": f"{version} beats mean_3", "forecaster": version},
        "holdout_target_months": ["2024-05", "2024-06"],
    }


# The hierarchy of build_deployment(hierarchy=True): the total, the region (every store is in the
# north), each store and each category (odd items are snacks, even ones dairy).
LEVELS = ((), ("region",), ("store_id",), ("category",))


def category(item: int) -> str:
    return "snacks" if item % 2 else "dairy"


def levels_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The hierarchy's levels of ``frame`` (a run's forecasts): each group's prediction the sum of
    its entities', p10 and p90 at 0.9 and 1.1 times it."""
    members = frame.assign(
        region="north", store_id=frame["store_id"].astype(str), category=frame["item_id"].map(category)
    )
    parts = []
    for level in LEVELS:
        columns = list(level)
        sums = members.groupby([*columns, "forecast_month", "horizon"], as_index=False)["prediction"].sum()
        sums["level"] = ",".join(columns) or "total"
        sums["level_key"] = sums[columns].astype(str).agg(",".join, axis=1) if columns else "total"
        parts.append(sums)
    out = pd.concat(parts, ignore_index=True)
    return out.assign(p10=0.9 * out["prediction"], p90=1.1 * out["prediction"])


def build_deployment(folder: Path, url: str | None = None, hierarchy: bool = False):
    """The deployment's config (SQLite predictions under ``folder`` unless ``url``); with
    ``hierarchy``, the levels of LEVELS published beside the forecasts."""
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.publishing.publish import publish

    raw = demo_config_dict(folder, hierarchy=hierarchy)
    raw["horizon"] = HORIZON
    if hierarchy:
        raw["hierarchy"] = {"levels": [list(level) for level in LEVELS]}
    if url:
        raw["predictions"]["url"] = url
    config = load_config(write_config(folder, raw))
    for i, run in enumerate(RUN_MONTHS):
        version = f"{run}-abc{i}"
        report = evaluation(run, version)
        model_dir = paths.models(config) / version
        model_dir.mkdir(parents=True, exist_ok=True)
        paths.write_json_atomically(report, model_dir / "evaluation.json")
        publish(
            with_steps(forecasts(run)),
            config,
            pd.Period(run, "M"),
            model_version=version,
            run_id=RUN_IDS[run],
            evaluation=report,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            drivers=drivers_of(forecasts(run), run),
            levels=levels_of(forecasts(run)) if hierarchy else None,
        )
        attempt = f"{paths.run_key(RUN_IDS[run])}__2025010{i + 1}T000000000000Z"
        _attempt(config, run, attempt, RUN_IDS[run], stages=("extract", "validate", "evaluate", "publish"))
        paths.write_json_atomically(
            {"report": str(model_dir / "evaluation.json")},
            paths.stage_result(config, pd.Period(run, "M"), attempt, "evaluate"),
        )
        if run == RUN_MONTHS[-1]:
            paths.write_parquet_atomically(snapshot(), paths.snapshot(config, pd.Period(run, "M"), attempt))
    month, run_id = FAILED_VALIDATION
    attempt = _attempt(
        config, month, f"{paths.run_key(run_id)}__20250203T100000000000Z", run_id, ("extract",)
    )
    failures = [
        {"label": "expect_column_values_to_not_be_null(store_id)", "details": "3 unexpected of 481 rows"},
        {"label": "expect_table_row_count_to_be_between(rows of 2025-01)", "details": "observed 0 rows"},
    ]
    _fail(
        config,
        month,
        attempt,
        "validate",
        "DataValidationError",
        "Validation of 2025-01 failed (2 of 27 expectations):",
        failures,
    )
    month, run_id = FAILED_TRAIN
    attempt = _attempt(
        config, month, f"{paths.run_key(run_id)}__20250105T090000000000Z", run_id, ("extract", "validate")
    )
    _fail(config, month, attempt, "train", "MemoryError", "out of memory while building the training set")
    month, run_id = STOPPED
    _attempt(
        config, month, f"{paths.run_key(run_id)}__20250302T080000000000Z", run_id, ("extract",), docs=False
    )
    return config


def _attempt(
    config, month: str, attempt: str, run_id: str, stages: tuple[str, ...], docs: bool = True
) -> str:
    from forecasting.core import paths

    m = pd.Period(month, "M")
    for stage in stages:
        result = {"month": month, "attempt": attempt}
        if stage in ("extract", "publish"):
            result["run_id"] = run_id
        paths.write_json_atomically(result, paths.stage_result(config, m, attempt, stage))
    if docs:  # validation ran (and wrote its report)
        site = paths.data_docs(config, m, attempt)
        page = site / "validations" / f"snapshot_{month}" / "__none__" / "20250101T000000Z" / "result.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(CDN_PAGE.replace("{body}", f"<h1>validation of {month}, {attempt}</h1>"))
        (site / "index.html").write_text(CDN_PAGE.replace("{body}", f"<h1>Data Docs of {month}</h1>"))
        logo = site / "static" / "images" / "logo-long.png"  # GX copies its static folder into the site
        logo.parent.mkdir(parents=True)
        logo.write_bytes(base64.b64decode(ONE_PIXEL_PNG))
    return attempt


def _fail(config, month, attempt, stage, error, message, failures=None) -> None:
    from forecasting.core import paths

    failure = {
        "stage": stage,
        "month": month,
        "attempt": attempt,
        "error": error,
        "message": message,
        "permanent": True,
    }
    if failures is not None:
        failure["failures"] = failures
    paths.write_json_atomically(failure, paths.stage_failure(config, pd.Period(month, "M"), attempt, stage))


# --- what forecast_monitoring writes, for the overview's monitoring sections ------------------

MAX_WAPE = 0.05  # the alert rule: both scored months' one-month-ahead forecasts are above it
# Drift as forecast_monitoring would record it (drift.json rows): 2024-11 quiet, 2024-12 with the
# price, the target and the vanished entities flagged.
DRIFT = {
    "2024-11": [
        ("feature", "sales_lag_1", 0.04, 0.08, 0.41, None, None, False),
        ("feature", "price", 0.02, 0.05, 0.83, None, None, False),
        ("target", "units", 0.06, 0.09, 0.27, None, None, False),
        ("entities", "new_entities", None, None, None, 0.0, 0, False),
        ("entities", "vanished_entities", None, None, None, 0.0, 0, False),
    ],
    "2024-12": [
        ("feature", "sales_lag_1", 0.07, 0.11, 0.12, None, None, False),
        ("feature", "price", 0.85, 0.62, 3e-12, None, None, True),
        ("feature", "promo", 0.0, 0.0, 1.0, None, None, False),
        ("target", "units", 0.31, 0.44, 2e-5, None, None, True),
        ("entities", "new_entities", None, None, None, 0.0, 0, False),
        ("entities", "vanished_entities", None, None, None, 1 / 6, 1, True),
    ],
}
TASK_FAILURE = ("monthly_forecast", FAILED_TRAIN[0], "train", FAILED_TRAIN[1])


def drift_rows(month: str) -> list[dict]:
    """The drift.json rows of a month (as forecasting.monitoring.drift records them)."""
    version = f"{month}-abc{RUN_MONTHS.index(month)}"
    out = []
    for kind, feature, psi, ks, pvalue, share, entities, drifted in DRIFT[month]:
        out.append(
            {
                "run_month": month,
                "kind": kind,
                "feature": feature,
                "psi": psi,
                "ks_statistic": ks,
                "ks_pvalue": pvalue,
                "share": share,
                "entities": entities,
                "reference_rows": 6 if kind == "entities" else 72,
                "scoring_rows": 6,
                "reference_first_month": None if kind == "entities" else "2023-11",
                "reference_last_month": None if kind == "entities" else str(pd.Period(month, "M") - 1),
                "threshold": 0.1 if kind == "entities" else 0.2,
                "drifted": drifted,
                "model_version": version,
            }
        )
    return out


def drift_json(month: str) -> dict:
    """The month's drift.json, as the alerts stage reads it."""
    rows = drift_rows(month)
    return {"month": month, "model_version": rows[0]["model_version"], "rows": rows}


def add_monitoring(config) -> None:
    """What forecast_monitoring writes for 2024-11 and 2024-12: the realised accuracy (scored by
    forecasting.monitoring.accuracy from the snapshot), the drift rows above, and the alerts they raise
    (forecasting.monitoring.alerts, rule MAX_WAPE), plus a task failure's alert sent by email."""

    from forecasting.core.config import AlertsConfig
    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import create_missing, insert_rows, realised_accuracy
    from forecasting.monitoring.alert_checks import accuracy_alerts, drift_alerts
    from forecasting.monitoring.alerts import Alert, raise_alerts, write_alerts
    from forecasting.monitoring.drift import drift_table
    from forecasting.publishing import tables

    rules = config.model_copy(update={"alerts": AlertsConfig(max_wape=MAX_WAPE)})
    table = drift_table(config)
    engine = make_engine(config.predictions.database)
    try:
        create_missing(engine, lambda conn: tables.create(conn, table))
        for month in DRIFT:
            realised_accuracy(snapshot(), config, pd.Period(month, "M"), run_id=f"monitor_{month}")
            rows = pd.DataFrame(drift_rows(month))
            for c in ("run_month", "reference_first_month", "reference_last_month"):
                rows[c] = [None if v is None else pd.Period(v, "M").to_timestamp().date() for v in rows[c]]
            with engine.begin() as conn:
                insert_rows(
                    conn,
                    table,
                    rows.assign(run_id=f"monitor_{month}", computed_at=datetime(2025, 1, 2, tzinfo=UTC)),
                )
    finally:
        engine.dispose()
    for day, month in enumerate(DRIFT, start=2):  # as check_month raises them, at known times
        m, run_id = pd.Period(month, "M"), f"monitor_{month}"
        found = accuracy_alerts(rules, m, run_id=run_id) + drift_alerts(drift_json(month), m, run_id=run_id)
        raised = raise_alerts(rules, found, raised_at=datetime(2025, 1, day, 8, tzinfo=UTC))
        assert raised["raised"] == len(found) > 0, raised
    dag_id, month, task, run_id = TASK_FAILURE
    failure = Alert(
        dag_id, month, "task_failure", "task_state", task, None, None, "MemoryError", run_id, task
    )
    write_alerts(config, [failure], datetime(2025, 1, 5, 9, 30, tzinfo=UTC), "smtp:ops@example.com")
