"""What-if scenarios, forecast: M+1..M+horizon under each scenario, and under the base plan as
the scenario ``plans.scenarios.base`` (default ``base``), with the forecaster M's run published.

A scenario's rows override the base plan, the plans as they stood at the end of M (what M's
published forecasts read), for the entity, month and covariate they give; everything else keeps
the base plan, and a null keeps it too. The same model, the same point-in-time features, the
same p10/p90 bands (``forecasting.modeling.intervals``): only the plan columns differ, so
``scenario - base`` is the model's answer to "what if", and an entity or month a scenario leaves
alone gets the base forecast exactly. A baseline forecaster reads no plans, and a blend is half
a baseline's: a month whose published forecaster is either has no scenarios (refused, saying so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.errors import DataError
from forecasting.core.months import month_index, month_of
from forecasting.data.panel import build_panel, key_text
from forecasting.features import age
from forecasting.features.dataset import PLAN_HORIZON_SEP
from forecasting.features.demand import label_forecasts
from forecasting.modeling import booster as model
from forecasting.modeling import intervals
from forecasting.modeling.forecaster import Baseline, Blend, parse
from forecasting.modeling.predict import (
    ForecastInputs,
    active_entities,
    check_planned_features,
    forecast_inputs,
    predict_inputs,
)
from forecasting.scenarios.read import (
    docs_path,
    planned_columns,
    read_scenarios,
    scenario_settings,
    validate_scenarios,
)

log = logging.getLogger(__name__)


@dataclass
class Forecaster:
    """The forecaster M's run published, as scenarios need it."""

    version: str
    model_dir: Path
    bands: dict | None  # its p10/p90 bands (None: not calibrated, p10 and p90 stay empty)


class NoScenariosForecaster(DataError):
    """M's published forecaster cannot forecast scenarios (a baseline or a blend)."""


def published_forecaster(config: Config, month: pd.Period, attempt: str) -> Forecaster:
    """The model whose forecasts M's published attempt published (the gate's choice for M, or a
    forced one), with the p10/p90 bands evaluate calibrated for it. A baseline reads no plans:
    refused, saying so."""
    published = paths.read_json(paths.stage_result(config, month, attempt, "publish"))
    version = published["model_version"]
    forecaster = parse(version)
    if isinstance(forecaster, Blend):
        raise NoScenariosForecaster(
            f"{month}'s published forecasts were made by {version}, half of each from a baseline that reads "
            "no plans: a scenario would move them only half as far as the model says. What-if scenarios "
            f"need a model's own forecasts (re-run {month} with force_model_version=<a model version>)"
        )
    if isinstance(forecaster, Baseline):
        raise NoScenariosForecaster(
            f"{month}'s published forecasts were made by {version}, which reads no plans: every scenario "
            "would forecast what the base plan does. What-if scenarios need a model that reads the plans "
            f"(re-run {month} with force_model_version=<a model version>, or wait for a month whose model "
            "beats the baselines)"
        )
    evaluated = paths.read_json(paths.stage_result(config, month, attempt, "evaluate"))
    decision = paths.read_json(paths.evaluation(Path(evaluated["model_dir"]))).get("decision") or {}
    # The bands predict put around the published forecasts: the decided forecaster's own.
    bands = decision.get("intervals") if decision.get("forecaster") == version else None
    return Forecaster(version=version, model_dir=paths.models(config) / version, bands=bands)


@dataclass
class ScenarioForecasts:
    frame: pd.DataFrame  # the rows of <table>_scenarios but run_month, model_version, run_id, created_at
    model_version: str
    scenarios: list[str]  # the base first, then the scenarios in name order
    covariates: list[str]  # the planned covariates the scenarios set
    overridden: dict[str, int] = field(default_factory=dict)  # per scenario, forecast rows it plans
    changed: dict[str, int] = field(default_factory=dict)  # per scenario, forecasts unlike the base's
    base_differs: int = 0  # base forecasts unlike the published ones (feature files rewritten since)
    intervals: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.frame),
            "model_version": self.model_version,
            "scenarios": self.scenarios,
            "covariates": self.covariates,
            "overridden": self.overridden,
            "changed": self.changed,
            "base_differs_from_published": self.base_differs,
            "intervals": self.intervals,
        }


def forecast_scenarios(config: Config, month: pd.Period, attempt: str, client=None) -> ScenarioForecasts:
    """Forecast M+1..M+horizon under the base plan and each scenario of M's months with the
    forecaster M's published attempt published, from that attempt's snapshot (see the module)."""
    pl, sc = scenario_settings(config)
    month = month_of(month)
    forecaster = published_forecaster(config, month, attempt)
    booster, metadata = model.load(forecaster.model_dir)
    check_planned_features(metadata, config)
    if not any(f.startswith("plan_") for f in metadata["features"]):
        raise DataError(
            f"{forecaster.version}, which made {month}'s published forecasts, was fitted without plans: it "
            "cannot react to a scenario. What-if scenarios need a model trained with the plans section"
        )
    snapshot_path = paths.snapshot(config, month, attempt)
    if not snapshot_path.is_file():
        raise DataError(
            f"the snapshot of {month}'s published attempt is gone ({snapshot_path}): re-run {month}"
        )
    snapshot = pd.read_parquet(snapshot_path)
    panel = build_panel(snapshot, config, sales_only=True)
    # Bad scenarios fail before Feast is asked for anything.
    scenarios = read_scenarios(config, month)
    forecast_keys = panel.keys.iloc[active_entities(panel, month_index(month))].reset_index(drop=True)
    # What the covariates may be: what the sales and the plans (every revision known at M) held.
    plans_path = paths.plans(config, month, attempt)
    history = [snapshot, *([pd.read_parquet(plans_path)] if plans_path.is_file() else [])]
    validate_scenarios(scenarios, forecast_keys, config, month, docs_path(config, month, attempt), history)
    inputs = forecast_inputs(snapshot, config, month, client, panel)
    covariates = [c for c in planned_columns(scenarios, config) if scenarios[c].notna().any()]
    unread = [c for c in covariates if f"plan_{c}" not in metadata["features"]]
    if unread:
        raise DataError(
            f"the scenarios plan {', '.join(unread)}, which {forecaster.version} does not read "
            f"(it reads {', '.join(f for f in metadata['features'] if f.startswith('plan_'))})"
        )

    def rows_of(name: str, features: pd.DataFrame, overridden: np.ndarray) -> pd.DataFrame:
        frame = predict_inputs(replace_features(inputs, features), config, booster, metadata)
        keys, at = config.source.entity_columns, month_index(month)
        months = age.label_forecasts(frame, panel, keys, at)  # a new item's bands are its own, as predict's
        groups = age.interval_groups(
            label_forecasts(frame, panel, keys, at), months, config.features.lookback_months
        )
        frame["p10"], frame["p90"] = intervals.apply(
            forecaster.bands, frame["prediction"], frame["horizon"], groups
        )
        frame["overridden"] = overridden.T.ravel()  # predict_inputs' order: by horizon, then entity
        for c in pl.covariates:  # what the model read as the plan of each row's month
            planned = np.concatenate(
                [
                    features[f"plan_{c}{PLAN_HORIZON_SEP}{h}"].to_numpy(dtype=np.float32)
                    for h in range(1, config.horizon + 1)
                ]
            )
            # Feast keeps plans as float32: 2.11, not 2.1099998950958 (its float64 value).
            frame[f"plan_{c}"] = planned.astype(str).astype(float)
        frame.insert(0, "scenario", name)
        return frame

    nothing = np.zeros((len(inputs.active), config.horizon), dtype=bool)
    base = rows_of(sc.base, inputs.features, nothing)
    parts, overridden_rows, changed_rows = [base], {}, {}
    names = sorted(scenarios[sc.scenario_column].unique()) if len(scenarios) else []
    for name in names:
        rows = scenarios[scenarios[sc.scenario_column] == name]
        features, overridden = override(inputs, rows, config, month, covariates)
        made = rows_of(name, features, overridden)
        parts.append(made)
        overridden_rows[name] = int(overridden.sum())
        changed_rows[name] = int((made["prediction"].to_numpy() != base["prediction"].to_numpy()).sum())
    if not names:
        log.warning(
            "No scenario plans any of %s..%s: publishing the base plan's forecasts only",
            month + 1,
            month + config.horizon,
        )
    result = ScenarioForecasts(
        frame=pd.concat(parts, ignore_index=True),
        model_version=forecaster.version,
        scenarios=[sc.base, *names],
        covariates=covariates,
        overridden=overridden_rows,
        changed=changed_rows,
        base_differs=base_against_published(base, config, month, attempt),
        intervals=forecaster.bands is not None,
    )
    log.info(
        "Forecast %d scenarios of %s with %s: %s",
        len(names),
        month,
        forecaster.version,
        "; ".join(
            f"{n}: {overridden_rows[n]} rows planned, {changed_rows[n]} forecasts changed" for n in names
        )
        or "none",
    )
    return result


def replace_features(inputs: ForecastInputs, features: pd.DataFrame) -> ForecastInputs:
    return replace(inputs, features=features)


def override(
    inputs: ForecastInputs, rows: pd.DataFrame, config: Config, month: pd.Period, covariates: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The features of ``inputs`` with one scenario's ``rows`` in place of the base plan, and
    which (entity, horizon) cells they plan (entities x horizons, in ``inputs.active``'s order).
    A covariate a row leaves null keeps the base plan's value."""
    assert config.plans is not None
    keys = config.plans.entity_columns
    index = pd.MultiIndex.from_frame(inputs.panel.keys.iloc[inputs.active][keys].astype(str))
    at = index.get_indexer(pd.MultiIndex.from_arrays([key_text(rows[k]) for k in keys]))
    if (at < 0).any():  # validate_scenarios refuses these first
        raise DataError(f"{int((at < 0).sum())} scenario rows name entities {month}'s forecasts do not cover")
    horizon = month_index(rows[config.plans.month_column].dt) - month_index(month)
    horizon = np.asarray(horizon, dtype=np.int64)
    features = inputs.features.copy()
    overridden = np.zeros((len(inputs.active), config.horizon), dtype=bool)
    for covariate in covariates:
        values = rows[covariate].to_numpy(dtype=float)
        given = ~np.isnan(values)
        for h in range(1, config.horizon + 1):
            cells = given & (horizon == h)
            column = f"plan_{covariate}{PLAN_HORIZON_SEP}{h}"
            planned = features[column].to_numpy(dtype=np.float32, copy=True)
            planned[at[cells]] = values[cells].astype(np.float32)
            features[column] = planned
        overridden[at[given], horizon[given] - 1] = True
    return features, overridden


def base_against_published(base: pd.DataFrame, config: Config, month: pd.Period, attempt: str) -> int:
    """How many base forecasts differ from the forecasts M's attempt published (0 unless the
    features or plans Feast holds for M were rewritten since); a warning names the gap."""
    path = paths.forecasts(config, month, attempt)
    if not path.is_file():
        log.warning("%s is gone: the base scenario cannot be compared with the published forecasts", path)
        return 0
    on = [*config.source.entity_columns, "horizon"]
    published = pd.read_parquet(path)[[*on, "prediction"]]
    both = base[[*on, "prediction"]].merge(published, on=on, how="outer", suffixes=("", "_published"))
    differs = ~np.isclose(both["prediction"], both["prediction_published"], rtol=0, atol=0, equal_nan=False)
    count = int(differs.sum())
    if count:
        log.warning(
            "The base scenario differs from %s's published forecasts in %d of %d rows (largest gap %.4g): "
            "Feast's features or plans of %s were rewritten after they were published",
            month,
            count,
            len(both),
            float(np.nanmax(np.abs(both["prediction"] - both["prediction_published"]))) if len(both) else 0.0,
            month,
        )
    return count
