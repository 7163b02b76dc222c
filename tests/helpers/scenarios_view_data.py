"""The Forecasts view's deployment (forecasts_view_data) with what the explorer's context and the
Scenarios page read: a config with plans, scenarios and a hierarchy; prices and promotions that
move in the newest run's snapshot; that run's plans (plans.parquet, with a revision made after
the run month, which its forecasts never read); and its what-if scenarios published to
``forecasts_scenarios`` (no pipeline run).

Numbers, chosen so every shown value can be worked out by hand:
* price of (s, i) in month t: 2 + i / 10 + t.month / 100; promo 1 in March and November, else 0.
* plans of run 2024-12 for 2025-01..03: price 3 + i / 10 + t.month / 100, promo 1 in 2025-02 only
  (planned 2024-12-10); a later revision (planned 2025-01-10) sets price 99 for 2025-02.
* scenarios of run 2024-12, beside the base (the published forecasts): ``promo_snacks`` plans
  the snacks (odd items) in 2025-03, each forecast + 20%; ``price_cut`` plans store 1's items in
  2025-01, each forecast + 5 units.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from tests.helpers.config import write_config
from tests.helpers.forecasts_view_data import ITEMS, RUN_IDS, RUN_MONTHS, STORES, build_deployment, forecasts

RUN = RUN_MONTHS[-1]
SCENARIO_MONTHS = {"promo_snacks": "2025-03", "price_cut": "2025-01"}
PLANNED_AT, LATER = datetime(2024, 12, 10), datetime(2025, 1, 10)


def price(item: int, month: str) -> float:
    return 2 + item / 10 + pd.Period(month, "M").month / 100


def promo(month: str) -> float:
    return 1.0 if pd.Period(month, "M").month in (3, 11) else 0.0


def planned_price(item: int, month: str) -> float:
    return 3 + item / 10 + pd.Period(month, "M").month / 100


def planned_promo(month: str) -> float:
    return 1.0 if month == "2025-02" else 0.0


def moved(scenario: str, store: int, item: int, month: str) -> bool:
    """Whether the scenario plans (and moves) this forecast."""
    if month != SCENARIO_MONTHS[scenario]:
        return False
    return item % 2 == 1 if scenario == "promo_snacks" else store == 1


def scenario_prediction(scenario: str, store: int, item: int, month: str, base: float) -> float:
    if not moved(scenario, store, item, month):
        return base
    return base * 1.2 if scenario == "promo_snacks" else base + 5


def build_scenarios_deployment(folder: Path, url: str | None = None):
    """The deployment, its config with plans, scenarios and a hierarchy, and the files and rows above."""
    return add_scenarios(build_deployment(folder, url))


def add_scenarios(config):
    """A forecasts_view_data deployment given the config, files and rows above (its config
    file rewritten in place: a running api-server reads it on its next request)."""
    from forecasting.core import paths
    from forecasting.core.config import load_config

    folder = config.path.parent
    raw = yaml.safe_load(config.path.read_text())
    raw["plans"] = {
        "table": "sales_plans",
        "month_column": "month",
        "covariates": ["price", "promo"],
        "planned_at": "planned_at",
        "scenarios": {"table": "sales_scenarios"},
    }
    raw["hierarchy"] = {"levels": [[], ["store_id"], ["category"]]}
    config = load_config(write_config(folder, raw))
    run = pd.Period(RUN, "M")
    attempt = paths.published_attempt(config, run, RUN_IDS[RUN])
    assert attempt is not None
    snapshot = pd.read_parquet(paths.snapshot_in(attempt))
    months = snapshot["month"].dt.strftime("%Y-%m")
    snapshot["price"] = [price(i, m) for i, m in zip(snapshot["item_id"], months, strict=True)]
    snapshot["promo"] = [promo(m) for m in months]
    paths.write_parquet_atomically(snapshot, paths.snapshot_in(attempt))
    paths.write_parquet_atomically(plans(), paths.plans(config, run, attempt.name))
    publish_view_scenarios(config)
    return config


def plans() -> pd.DataFrame:
    rows = []
    for s in STORES:
        for i in ITEMS:
            for month in ("2025-01", "2025-02", "2025-03"):
                start = pd.Period(month, "M").to_timestamp()
                rows.append(
                    {
                        "store_id": s,
                        "item_id": i,
                        "month": start,
                        "price": planned_price(i, month),
                        "promo": planned_promo(month),
                        "planned_at": PLANNED_AT,
                    }
                )
            later = pd.Period("2025-02", "M").to_timestamp()
            rows.append(
                {
                    "store_id": s,
                    "item_id": i,
                    "month": later,
                    "price": 99.0,
                    "promo": 1.0,
                    "planned_at": LATER,
                }
            )
    return pd.DataFrame(rows)


def scenario_rows() -> pd.DataFrame:
    """The rows forecast_scenarios would publish for RUN: the base and each scenario."""
    base = forecasts(RUN)
    frames = [base.assign(scenario="base", overridden=False)]
    for scenario in SCENARIO_MONTHS:
        months = [f"{pd.Timestamp(m):%Y-%m}" for m in base["forecast_month"]]
        keys = zip(base["store_id"], base["item_id"], months, base["prediction"], strict=True)
        frames.append(
            base.assign(
                scenario=scenario,
                prediction=[scenario_prediction(scenario, s, i, m, b) for s, i, m, b in keys],
                overridden=[
                    moved(scenario, s, i, m)
                    for s, i, m in zip(base["store_id"], base["item_id"], months, strict=True)
                ],
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["plan_promo"] = 0.0
    return out


def publish_view_scenarios(config) -> None:
    from forecasting.scenarios.publish import publish_scenarios

    publish_scenarios(
        scenario_rows(),
        config,
        pd.Period(RUN, "M"),
        model_version=f"{RUN}-abc{RUN_MONTHS.index(RUN)}",
        run_id="scenarios__2025-01-02",
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
