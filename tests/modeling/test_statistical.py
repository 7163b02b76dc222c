"""The statistical baselines (AutoETS, Theta): point in time, one forecast per row, short series,
the seeded sample of entities that every forecaster is scored on, and their config keys."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from forecasting.core.config import STATISTICAL_BASELINES, Config, ConfigError, load_config
from forecasting.core.months import month_index
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.modeling import evaluate
from forecasting.modeling.baselines import NAIVE_BASELINES, STATISTICAL, statistical, statistical_forecasts
from tests.helpers.config import demo_config_dict, write_config

KEYS = ["store", "item"]
NAMES = ["auto_ets", "theta"]


def make_config(folder, **evaluation) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    raw["evaluation"].pop("statistical_baselines", None)  # the defaults, not demo_config_dict's Theta alone
    raw["evaluation"].update(evaluation)
    return load_config(write_config(folder, raw))


def seasonal(months: pd.PeriodIndex, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    season = 1 + 0.4 * np.sin(2 * np.pi * (months.month.to_numpy() - 1) / 12)
    trend = 1 + 0.01 * np.arange(len(months))
    return np.round(level * season * trend * rng.uniform(0.9, 1.1, len(months)), 1)


def snapshot() -> pd.DataFrame:
    """Entity 1/1: 48 seasonal months; 1/2: 48 months at another level; 2/1: only 10 months
    (non-seasonal forms); 2/2: 2 months (too short for either: its last value)."""
    parts = []
    for store, item, first, level in [
        (1, 1, "2021-01", 100.0),
        (1, 2, "2021-01", 30.0),
        (2, 1, "2024-03", 50.0),
    ]:
        months = pd.period_range(first, "2024-12", freq="M")
        parts.append(
            pd.DataFrame(
                {
                    "store": store,
                    "item": item,
                    "month": months.to_timestamp(),
                    "units": seasonal(months, level, seed=store * 10 + item),
                }
            )
        )
    parts.append(
        pd.DataFrame(
            {
                "store": 2,
                "item": 2,
                "month": pd.to_datetime(["2024-11-01", "2024-12-01"]),
                "units": [7.0, 9.0],
            }
        )
    )
    return pd.concat(parts, ignore_index=True)


def rows(panel, cases: list[tuple[int, int, str, int]]):
    """(store, item, origin, horizon) -> the arrays statistical_forecasts takes."""
    index = {tuple(map(int, k)): i for i, k in enumerate(panel.keys[KEYS].to_numpy())}
    entity = np.array([index[(s, i)] for s, i, _, _ in cases])
    origin = month_index(pd.PeriodIndex([o for _, _, o, _ in cases], freq="M")).to_numpy()
    horizon = np.array([h for *_, h in cases])
    return entity, origin, horizon


CASES = [
    (1, 1, "2024-06", 1),
    (1, 1, "2024-06", 3),
    (1, 1, "2024-09", 2),
    (1, 2, "2024-06", 2),
    (2, 1, "2024-10", 1),
    (2, 2, "2024-12", 1),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Config:
    return make_config(tmp_path_factory.mktemp("statistical"))


def test_one_finite_forecast_per_row_and_rows_are_independent(config):
    panel = build_panel(snapshot(), config, sales_only=True)
    entity, origin, horizon = rows(panel, CASES)

    got = statistical_forecasts(panel, entity, origin, horizon, NAMES)

    assert set(got) == set(NAMES)
    for name in NAMES:
        assert got[name].shape == (len(CASES),)
        assert np.isfinite(got[name]).all() and (got[name] >= 0).all()
    # A row's forecast does not depend on which other rows are asked for.
    alone = statistical_forecasts(panel, entity[[2]], origin[[2]], horizon[[2]], NAMES)
    for name in NAMES:
        assert alone[name][0] == pytest.approx(got[name][2])
    # The 2-month series is too short for ETS and Theta: its last value.
    assert got["auto_ets"][-1] == got["theta"][-1] == 9.0
    # Seasonal forecasts of a seasonal series land near its level (not a constant failure value).
    assert 60 < got["auto_ets"][0] < 200 and 60 < got["theta"][0] < 200


def test_above_the_search_limit_autoets_fits_its_fixed_form(config):
    """A panel of more than ``auto_ets_search_max_series`` entities: AutoETS is the damped
    additive form (AAdA, AAdN for a short series), statsforecast's own fit of it; Theta is
    unchanged; at or under the limit, the search."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    panel = build_panel(snapshot(), config, sales_only=True)
    entity, origin, horizon = rows(panel, CASES[:1])
    entities = len(panel.keys)
    searched = statistical_forecasts(panel, entity, origin, horizon, NAMES, 1, entities)
    fixed = statistical_forecasts(panel, entity, origin, horizon, NAMES, 1, entities - 1)
    assert fixed["theta"] == pytest.approx(searched["theta"])
    assert searched["auto_ets"] == pytest.approx(
        statistical_forecasts(panel, entity, origin, horizon, NAMES)["auto_ets"]
    )
    col = panel.column(int(origin[0]))
    start = int(panel.span_first[entity[0]])
    y = panel.sales[entity[0], start : col + 1]
    frame = pd.DataFrame({"unique_id": 0, "ds": np.arange(len(y)), "y": y})
    model = AutoETS(season_length=12, model="AAA", damped=True, alias="ets")
    expected = (
        StatsForecast(models=[model], freq=1).forecast(df=frame, h=int(horizon[0]))["ets"].to_numpy()[-1]
    )
    assert fixed["auto_ets"][0] == pytest.approx(max(expected, 0.0))
    assert fixed["auto_ets"][0] != pytest.approx(searched["auto_ets"][0])


def test_forecasts_use_only_data_up_to_the_origin(config):
    history = snapshot()
    origin_month = pd.Timestamp("2024-06-01")
    cases = [c for c in CASES if c[2] == "2024-06"] + [(2, 1, "2024-06", 2)]
    later = history["month"] > origin_month
    changed = history.assign(units=np.where(later, history["units"] * 50 + 1000, history["units"]))

    def run(frame):
        panel = build_panel(frame, config, sales_only=True)
        return statistical_forecasts(panel, *rows(panel, cases), NAMES)

    honest, cheating_bait = run(history), run(changed)
    for name in NAMES:
        np.testing.assert_array_equal(honest[name], cheating_bait[name])
        assert (honest[name] < 1000).all()


def test_fits_in_several_processes_give_the_same_forecasts(config, monkeypatch):
    # 81 series, seasonal and not: two processes each group however small it is.
    monkeypatch.setattr(statistical, "MIN_SERIES_PER_JOB", 5)
    panel = build_panel(snapshot(), config, sales_only=True)
    origins = [str(p) for p in pd.period_range("2021-12", "2024-11", freq="M")]
    cases = [(1, item, origin, 3) for item in (1, 2) for origin in origins]
    cases += [(2, 1, origin, 1) for origin in origins[-9:]]
    entity, origin, horizon = rows(panel, cases)
    assert statistical._jobs(2, len(cases)) == 2

    one = statistical_forecasts(panel, entity, origin, horizon, NAMES, jobs=1)
    two = statistical_forecasts(panel, entity, origin, horizon, NAMES, jobs=2)

    for name in NAMES:
        assert np.isfinite(one[name]).all()
        np.testing.assert_allclose(two[name], one[name], rtol=1e-9)


def test_jobs_are_bounded_by_series_and_cores(monkeypatch):
    monkeypatch.setattr(statistical.os, "cpu_count", lambda: 8)
    assert statistical._jobs(None, 10_000) == 8
    assert statistical._jobs(3, 10_000) == 3
    assert statistical._jobs(None, 120) == 2  # at least MIN_SERIES_PER_JOB series a process
    assert statistical._jobs(None, 10) == 1

    class Daemonic:
        daemon = True

    monkeypatch.setattr(statistical.multiprocessing, "current_process", lambda: Daemonic())
    assert statistical._jobs(None, 10_000) == 1  # a pool's worker may not start processes


def test_no_forecasters_and_no_rows(config):
    panel = build_panel(snapshot(), config, sales_only=True)
    entity, origin, horizon = rows(panel, CASES)
    assert statistical_forecasts(panel, entity, origin, horizon, []) == {}
    empty = np.zeros(0, dtype=np.int64)
    assert statistical_forecasts(panel, empty, empty, empty, NAMES)["theta"].shape == (0,)


def test_sample_of_entities_is_seeded_and_takes_whole_entities(tmp_path):
    entity = np.repeat(np.arange(50), 4)
    config = make_config(tmp_path, statistical_max_series=10)

    first, second = statistical.sample_entities(entity, config), statistical.sample_entities(entity, config)

    assert first is not None
    np.testing.assert_array_equal(first, second)
    chosen = np.unique(entity[first])
    assert len(chosen) == 10
    assert first.sum() == 40  # every row of each chosen entity
    # At or under the budget, or with no statistical forecaster: every row (None).
    assert statistical.sample_entities(np.arange(10), config) is None
    assert (
        statistical.sample_entities(entity, make_config(tmp_path / "b", statistical_max_series=None)) is None
    )
    off = make_config(tmp_path / "c", statistical_max_series=10, statistical_baselines=[])
    assert statistical.sample_entities(entity, off) is None


def test_evaluation_scores_every_forecaster_on_the_same_sampled_rows(tmp_path, monkeypatch):
    """evaluate() with a stand-in model: over the budget, the sample section has the model, the
    naive and the statistical baselines on the same rows; the full-holdout section the naive ones."""
    config = make_config(tmp_path, statistical_max_series=2, holdout_months=2)
    history = pd.concat(
        [snapshot(), snapshot().query("store == 1").assign(store=3)], ignore_index=True
    )  # 5 entities
    panel = build_panel(history, config, sales_only=True)
    cases = [
        (s, i, o, h)
        for s, i in [(1, 1), (1, 2), (2, 1), (3, 1), (3, 2)]
        for o, h in [("2024-10", 1), ("2024-10", 2), ("2024-11", 1)]
    ]
    entity, origin, horizon = rows(panel, cases)
    holdout = panel.keys.iloc[entity].reset_index(drop=True)
    holdout[dataset.ENTITY] = entity
    holdout[dataset.ORIGIN] = [c[2] for c in cases]
    holdout[dataset.HORIZON] = horizon
    holdout[dataset.TARGET_MONTH] = [str(pd.Period(c[2], "M") + c[3]) for c in cases]
    holdout[dataset.LABEL] = panel.sales[entity, origin + horizon - panel.first_month]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    holdout.to_parquet(model_dir / "holdout.parquet")
    monkeypatch.setattr(
        evaluate.model, "load", lambda *a, **k: (None, {"model_version": "v1", "categories": {}})
    )
    monkeypatch.setattr(evaluate.dataset, "design_matrix", lambda frame, *a: frame)
    monkeypatch.setattr(evaluate.model, "predict", lambda booster, X: X[dataset.LABEL].to_numpy() * 1.1)

    report = evaluate.evaluate(history, config, pd.Period("2024-12", "M"), model_dir)
    written = json.loads(report.path.read_text())

    assert set(written["baselines"]) == set(NAIVE_BASELINES)  # every row: the naive ones only
    assert written["model"]["rows"] == len(cases)
    sample = written["sample"]
    assert (sample["entities"], sample["of_entities"], sample["seed"]) == (2, 5, config.model.seed)
    assert set(sample["baselines"]) == {*NAIVE_BASELINES, *NAMES}
    counts = {m["rows"] for m in [sample["model"], *sample["baselines"].values()]}
    assert counts == {6}  # 2 entities x 3 rows, for every forecaster
    assert sample["model"]["wape"] == pytest.approx(0.1)
    for by_h in sample["by_horizon"].values():
        assert len({m["rows"] for m in by_h.values()}) == 1
    assert written["statistical_baselines"]["scored_on"] == "sample"
    # The same data and seed give the same sample, hence the same numbers.
    again = evaluate.evaluate(history, config, pd.Period("2024-12", "M"), model_dir)
    assert again.sample == report.sample

    # Under the budget: the statistical baselines join the others on every row.
    everyone = make_config(tmp_path / "all", holdout_months=2)
    report = evaluate.evaluate(history, everyone, pd.Period("2024-12", "M"), model_dir)
    assert report.sample is None
    assert set(report.baselines) == {*NAIVE_BASELINES, *NAMES}
    assert {m["rows"] for m in report.baselines.values()} == {len(cases)}
    assert set(report.by_horizon["2"]) == {"model", *NAIVE_BASELINES, *NAMES}


# ------------------------------------------------------------------------------------- config


def test_config_defaults(tmp_path):
    config = make_config(tmp_path)
    assert config.evaluation.statistical_baselines == ["auto_ets", "theta"]
    assert config.evaluation.statistical_max_series == 100
    assert config.evaluation.statistical_jobs is None  # one process per core
    assert config.evaluation.auto_ets_search_max_series == 10_000
    assert (
        make_config(tmp_path / "all", auto_ets_search_max_series=None).evaluation.auto_ets_search_max_series
        is None
    )
    assert make_config(tmp_path / "two", statistical_jobs=2).evaluation.statistical_jobs == 2


def test_the_config_accepts_exactly_the_registered_statistical_baselines():
    # core cannot import the registry (it sits below modeling): the two lists must agree.
    assert list(STATISTICAL) == list(STATISTICAL_BASELINES)


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        ({"statistical_baselines": []}, ([], 100)),
        ({"statistical_baselines": ["theta"]}, (["theta"], 100)),
        ({"statistical_baselines": ["theta", "theta"]}, (["theta"], 100)),
        ({"statistical_max_series": None}, (["auto_ets", "theta"], None)),
        ({"statistical_max_series": 1}, (["auto_ets", "theta"], 1)),
    ],
)
def test_config_accepts(tmp_path, evaluation, expected):
    config = make_config(tmp_path, **evaluation)
    assert (config.evaluation.statistical_baselines, config.evaluation.statistical_max_series) == expected


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        (
            {"statistical_baselines": ["arima"]},
            r"evaluation\.statistical_baselines: must be a list of auto_ets, theta",
        ),
        ({"statistical_baselines": "theta"}, r"evaluation\.statistical_baselines: must be a list"),
        ({"statistical_max_series": 0}, r"evaluation\.statistical_max_series: must be at least 1"),
        ({"statistical_max_series": "all"}, r"evaluation\.statistical_max_series: must be int"),
        ({"statistical_jobs": 0}, r"evaluation\.statistical_jobs: must be at least 1"),
        ({"auto_ets_search_max_series": 0}, r"evaluation\.auto_ets_search_max_series: must be at least 1"),
        ({"statistical_baseline": ["theta"]}, r"evaluation\.statistical_baseline: unknown key"),
    ],
)
def test_config_refuses(tmp_path, evaluation, message):
    raw = demo_config_dict(tmp_path)
    raw["evaluation"].update(evaluation)
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, raw))


def test_shipped_configs_parse_the_new_keys():
    from tests.helpers.paths import REPO

    for name in ("demo", "dominicks", "tourism"):
        raw = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        config = load_config(REPO / "config" / f"{name}.yaml")
        wanted = raw.get("evaluation", {}).get("statistical_baselines", ["auto_ets", "theta"])
        assert config.evaluation.statistical_baselines == wanted
