"""The model registry (``<table>_models``) and the champion/challenger gate, on real databases.

* The gate's rule, alone: promote / keep the champion / blend / fall back to the best baseline, margins.
* The registry on SQLite and PostgreSQL: rows replaced not duplicated, the champion *as of* a
  month (a backfill never demotes a newer champion), manual promote/reject from the command line
  recorded with who and why, migration of an older table, the analyst role may read it.
* The gate in the pipeline (slow): one month's data, four real models trained once: a good one,
  two crippled ones (2 and 3 trees) and an undertrained one (27 trees). Each test publishes through evaluate -> predict ->
  publish into a predictions database of its own and checks what was published and recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import Config, GateConfig, load_config, parse_config
from forecasting.modeling.forecaster import Baseline, Blend, Model, model_version, parse
from forecasting.publishing.postgres import grant_analyst_role, temporary_database
from forecasting.registry import models
from forecasting.registry.gate import decide
from tests.helpers.config import END_MONTH, demo_config_dict, write_config
from tests.helpers.servers import analyst_role

M = pd.Period(END_MONTH, "M")
BACKENDS = ["sqlite", "postgresql"]


# --- the rule ----------------------------------------------------------------------------------


def test_decide_promotes_only_a_challenger_that_beats_champion_and_baseline():
    gate = GateConfig()
    d = decide("new", 0.20, "mean_3", 0.30, gate, champion="old", champion_wape=0.25)
    assert (d.outcome, str(d.forecaster)) == (models.PROMOTED, "new")
    assert "beats the champion old" in d.reason

    d = decide("new", 0.27, "mean_3", 0.30, gate, champion="old", champion_wape=0.25)
    assert (d.outcome, str(d.forecaster)) == (models.KEPT_CHAMPION, "old")
    assert "does not beat the champion old" in d.reason

    # Both lose to the baseline: the baseline's forecasts, named as such.
    d = decide("new", 0.40, "mean_3", 0.30, gate, champion="old", champion_wape=0.35)
    assert (d.outcome, str(d.forecaster)) == (models.BASELINE, "baseline:mean_3")
    assert "does not beat the champion old (WAPE 0.3500 on the same rows) nor the mean_3 baseline" in d.reason
    assert d.reason.endswith("the champion does not beat the mean_3 baseline (WAPE 0.3000) either")

    # No champion: the challenger only has to beat the baseline.
    assert str(decide("new", 0.29, "mean_3", 0.30, gate).forecaster) == "new"
    assert str(decide("new", 0.31, "mean_3", 0.30, gate).forecaster) == "baseline:mean_3"
    # A tie is not a win.
    assert decide("new", 0.30, "mean_3", 0.30, gate).outcome == models.BASELINE


def test_decide_publishes_the_blend_only_when_no_model_beats_the_baseline_but_it_does():
    gate = GateConfig()
    blend = "blend:new+auto_ets"
    # Both models lose to the baseline; the mean of the challenger's and its forecasts wins.
    d = decide("new", 0.40, "auto_ets", 0.30, gate, champion="old", champion_wape=0.35, blend_wape=0.28)
    assert (d.outcome, str(d.forecaster)) == (models.BLENDED, blend)
    assert "does not beat the auto_ets baseline (WAPE 0.3000) either" in d.reason
    assert d.reason.endswith(
        "the mean of the challenger's and the baseline's forecasts (WAPE 0.2800) beats the baseline"
    )
    d = decide("new", 0.40, "auto_ets", 0.30, gate, blend_wape=0.28)  # no champion
    assert (d.outcome, str(d.forecaster)) == (models.BLENDED, blend)
    # A blend that does not beat the baseline (a tie neither) leaves the baseline, saying so.
    d = decide("new", 0.40, "auto_ets", 0.30, gate, blend_wape=0.30)
    assert (d.outcome, str(d.forecaster)) == (models.BASELINE, "baseline:auto_ets")
    assert d.reason.endswith("their blend (WAPE 0.3000) does not beat it")
    # A model that wins is never replaced by a blend, however good the blend.
    assert str(decide("new", 0.29, "auto_ets", 0.30, gate, blend_wape=0.10).forecaster) == "new"
    d = decide("new", 0.31, "auto_ets", 0.30, gate, champion="old", champion_wape=0.29, blend_wape=0.1)
    assert d.outcome == models.KEPT_CHAMPION
    # The baseline margin applies to the blend too: 0.28 is not 10% below 0.30.
    d = decide("n", 0.4, "auto_ets", 0.30, GateConfig(min_margin_over_baseline=0.1), blend_wape=0.28)
    assert d.outcome == models.BASELINE
    assert parse(blend) == Blend("new", "auto_ets") and parse("new") == Model("new")
    assert parse("baseline:x") == Baseline("x") and all(
        str(parse(f)) == f for f in (blend, "new", "baseline:x")
    )
    assert [model_version(parse(f)) for f in ("v1", "baseline:x", "blend:v1+x")] == ["v1", None, "v1"]
    with pytest.raises(ValueError, match="not a blend's name"):
        parse("blend:v1")


def test_decide_applies_the_relative_margins():
    gate = GateConfig(min_improvement=0.05, min_margin_over_baseline=0.10)
    # 4% better than the champion is not the 5% asked for: the champion stays.
    d = decide("new", 0.24, "last_value", 0.30, gate, champion="old", champion_wape=0.25)
    assert d.outcome == models.KEPT_CHAMPION and "by 5.0%" in d.reason
    assert decide("new", 0.237, "last_value", 0.30, gate, champion="old", champion_wape=0.25).outcome == (
        models.PROMOTED
    )
    # 0.28 beats the baseline's 0.30, but not by 10%: neither model is published.
    d = decide("new", 0.28, "last_value", 0.30, gate, champion="old", champion_wape=0.285)
    assert str(d.forecaster) == "baseline:last_value"


def test_gate_margins_are_checked_in_the_config(tmp_path):
    from forecasting.core.config import ConfigError

    raw = demo_config_dict(tmp_path)
    raw["gate"] = {"min_improvement": 0.02, "min_margin_over_baseline": 0.05}
    config = parse_config(raw, tmp_path / "forecast.yaml")
    assert config.gate == GateConfig(min_improvement=0.02, min_margin_over_baseline=0.05)
    assert parse_config(demo_config_dict(tmp_path), tmp_path / "f.yaml").gate == GateConfig()
    assert GateConfig().blend is True
    raw["gate"] = {"blend": False}
    assert parse_config(raw, tmp_path / "forecast.yaml").gate == GateConfig(blend=False)
    for bad, message in (
        ({"blend": "no"}, "gate.blend: must be bool"),
        ({"min_improvment": 0.1}, "gate.min_improvment: unknown key"),
        ({"min_improvement": -0.1}, "gate.min_improvement: must be at least 0"),
        ({"min_margin_over_baseline": 1.5}, "gate.min_margin_over_baseline: is a relative margin below 1"),
    ):
        raw["gate"] = bad
        with pytest.raises(ConfigError, match=message):
            parse_config(raw, tmp_path / "forecast.yaml")


# --- the registry on both backends -----------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def registry_db(request, tmp_path, monkeypatch):
    """A config whose predictions database is fresh (SQLite file or PostgreSQL database),
    selected through FORECAST_CONFIG for the command line."""
    if request.param == "postgresql":
        with temporary_database(request.getfixturevalue("postgres_server")) as url:
            yield _config_for(url, tmp_path, monkeypatch)
    else:
        yield _config_for(f"sqlite:///{tmp_path}/predictions.db", tmp_path, monkeypatch)


def _config_for(url: str, folder: Path, monkeypatch) -> Config:
    raw = demo_config_dict(folder)
    raw["predictions"] = {"url": url, "table": "forecasts"}
    path = write_config(folder, raw)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    return load_config(path)


def fake_model(version: str, run_month: str, wape: float, **values) -> dict:
    row = {
        "model_version": version,
        "run_month": date.fromisoformat(f"{run_month}-01"),
        "run_id": f"manual__{run_month}",
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
        "params": json.dumps({"max_depth": 6}),
        "features": json.dumps(["sales_lag_1", "horizon"]),
        "holdout_wape": wape,
        "baseline_wapes": json.dumps({"mean_3": 0.3}),
        "best_baseline": "mean_3",
        "best_baseline_wape": 0.3,
        "status": models.REJECTED,
        "decision": models.KEPT_CHAMPION,
        "decided_by": models.GATE,
    }
    return {**row, **values}


def promoted(version: str, run_month: str, at: int) -> dict:
    """A model the gate promoted for its own month, ``at`` minutes past midnight."""
    return fake_model(
        version,
        run_month,
        0.2,
        status=models.RETIRED,
        decision=models.PROMOTED,
        champion_since=date.fromisoformat(f"{run_month}-01"),
        promoted_at=datetime(2025, 1, 1, 0, at, tzinfo=UTC),
    )


def read_registry(config: Config) -> pd.DataFrame:
    from forecasting.core.db import make_engine

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(sa.text("SELECT * FROM forecasts_models ORDER BY model_version"), conn)
    finally:
        engine.dispose()
    return frame


def statuses(config: Config) -> dict[str, str]:
    frame = read_registry(config)
    return dict(zip(frame["model_version"], frame["status"], strict=True))


def as_of(config: Config, month: str, exclude: str | None = None) -> str | None:
    with models.registry(config) as (conn, table):
        row = models.champion_as_of(conn, table, date.fromisoformat(f"{month}-01"), exclude=exclude)
    return None if row is None else row["model_version"]


def test_registry_keeps_one_champion_and_answers_as_of_a_month(registry_db):
    config = registry_db
    with models.registry(config) as (conn, table):
        models.save(conn, table, promoted("2024-06-a", "2024-06", at=1))
        models.save(conn, table, promoted("2024-11-c", "2024-11", at=2))
        # A backfill of September promotes its own model after November's was promoted...
        models.save(conn, table, promoted("2024-09-b", "2024-09", at=3))
        models.save(conn, table, fake_model("2024-10-x", "2024-10", 0.4))
    # ...and November's stays the champion: a backfill never demotes a newer champion.
    assert statuses(config) == {
        "2024-06-a": models.RETIRED,
        "2024-09-b": models.RETIRED,
        "2024-10-x": models.REJECTED,
        "2024-11-c": models.CHAMPION,
    }
    assert models.current_champion(config)["model_version"] == "2024-11-c"
    # Each month compares with the champion of its time.
    assert as_of(config, "2024-05") is None
    assert as_of(config, "2024-07") == "2024-06-a"
    assert as_of(config, "2024-10") == "2024-09-b"
    assert as_of(config, "2024-12") == "2024-11-c"
    # Running November again compares its model with the one before it, not with itself.
    assert as_of(config, "2024-11", exclude="2024-11-c") == "2024-09-b"

    # Saving a version again replaces its row: one row per version.
    with models.registry(config) as (conn, table):
        models.save(conn, table, fake_model("2024-10-x", "2024-10", 0.45))
    frame = read_registry(config)
    assert len(frame) == 4 and frame["model_version"].is_unique
    assert frame.set_index("model_version").loc["2024-10-x", "holdout_wape"] == pytest.approx(0.45)


def test_cli_promote_and_reject_record_who_and_why(registry_db, capsys):
    config = registry_db
    with models.registry(config) as (conn, table):
        models.save(conn, table, promoted("2024-10-a", "2024-10", at=1))
        models.save(conn, table, promoted("2024-11-b", "2024-11", at=2))
        models.save(conn, table, fake_model("2024-09-old", "2024-09", 0.25))
        models.save(conn, table, fake_model("2024-12-c", "2024-12", 0.35))
    assert statuses(config)["2024-11-b"] == models.CHAMPION

    # Promote an old, rejected model: it becomes the champion for the next runs.
    assert (
        models.main(
            ["promote", "2024-09-old", "--reason", "seasonal shift; trust the old one", "--by", "alice"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2024-09-old: champion (manual_promote by alice" in out and "champion now: 2024-09-old" in out
    row = read_registry(config).set_index("model_version").loc["2024-09-old"]
    assert row["status"] == models.CHAMPION
    assert (row["decision"], row["reason"], row["decided_by"]) == (
        models.MANUAL_PROMOTE,
        "seasonal shift; trust the old one",
        "alice",
    )
    assert pd.notna(row["promoted_at"]) and pd.notna(row["decided_at"])
    # In effect from the newest month in the registry: December's run compares with it...
    assert str(row["champion_since"])[:10] == "2024-12-01"
    assert as_of(config, "2024-12") == "2024-09-old"
    assert as_of(config, "2025-01") == "2024-09-old"
    # ...while a backfill of November still compares with November's own champion.
    assert as_of(config, "2024-11", exclude="2024-11-c") == "2024-11-b"
    assert statuses(config)["2024-11-b"] == models.RETIRED

    # Reject it: the previous promotion is the champion again.
    assert models.main(["reject", "2024-09-old", "--reason", "worse than we thought", "--by", "bob"]) == 0
    assert "champion now: 2024-11-b" in capsys.readouterr().out
    row = read_registry(config).set_index("model_version").loc["2024-09-old"]
    assert (row["status"], row["decision"], row["reason"], row["decided_by"]) == (
        models.REJECTED,
        models.MANUAL_REJECT,
        "worse than we thought",
        "bob",
    )
    assert statuses(config)["2024-11-b"] == models.CHAMPION
    assert as_of(config, "2025-01") == "2024-11-b"

    # list and show
    assert models.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].startswith("model_version")
    assert [line.split()[0] for line in listing.splitlines()[1:]] == [
        "2024-12-c",
        "2024-11-b",
        "2024-10-a",
        "2024-09-old",
    ]
    assert models.main(["show", "2024-09-old"]) == 0
    shown = capsys.readouterr().out
    assert "decided_by: bob" in shown and "reason: worse than we thought" in shown

    # Refused: an unknown version, a decision without a reason.
    assert models.main(["promote", "2099-01-nope", "--reason", "x"]) == 2
    assert "no model 2099-01-nope" in capsys.readouterr().err
    assert models.main(["reject", "2024-12-c", "--reason", "  "]) == 2
    with pytest.raises(SystemExit):
        models.main(["reject", "2024-12-c"])  # --reason is required
    assert statuses(config)["2024-12-c"] == models.REJECTED


def test_a_corrupt_champion_fails_for_good_saying_how_to_reject_it(registry_db, capsys):
    """It was retried three times, "may pass if retried" (issue 23, fault 7). The command the
    message gives is run as given: the previous promotion becomes the champion again."""
    import re
    import shlex

    from forecasting.core import paths
    from forecasting.core.errors import is_permanent
    from forecasting.modeling.booster import UnreadableModel
    from forecasting.registry.champion import predict_saved_model

    config = registry_db
    with models.registry(config) as (conn, table):
        models.save(conn, table, promoted("2024-10-a", "2024-10", at=1))
        models.save(conn, table, promoted("2024-11-b", "2024-11", at=2))
    directory = paths.model_dir(config, "2024-11-b")
    directory.mkdir(parents=True)
    for holdout in (False, True):
        paths.booster(directory, holdout).write_bytes(b"\x00 half a model")
    paths.write_json_atomically(
        {"run_month": "2024-11", "holdout_months": 3}, paths.model_metadata(directory)
    )

    with pytest.raises(UnreadableModel) as raised:
        predict_saved_model(config, "2024-11-b", pd.DataFrame(), "2024-09")
    message = str(raised.value)
    assert is_permanent(raised.value) and str(paths.booster(directory, holdout=True)) in message
    command = re.search(r"`python -m forecasting\.registry\.models (reject [^`]+)`", message)
    assert command, message

    assert models.main(shlex.split(command.group(1))) == 0
    assert statuses(config) == {"2024-10-a": models.CHAMPION, "2024-11-b": models.REJECTED}
    assert "corrupt model file" in capsys.readouterr().out


def test_an_older_registry_gets_the_new_columns(registry_db):
    from forecasting.core.db import make_engine

    config = registry_db
    engine = make_engine(config.predictions.database)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE forecasts_models (model_version VARCHAR(64) PRIMARY KEY, run_month DATE NOT NULL, "
                "created_at TIMESTAMP NOT NULL, status VARCHAR(16) NOT NULL)"
            )
            conn.exec_driver_sql(
                "INSERT INTO forecasts_models VALUES ('2024-01-old', '2024-01-01', '2025-01-01 00:00:00', 'retired')"
            )
    finally:
        engine.dispose()
    with models.registry(config) as (conn, table):
        models.save(conn, table, promoted("2024-02-new", "2024-02", at=1))
    frame = read_registry(config)
    assert set(frame.columns) == {c.name for c in models.registry_table(config).columns}
    assert statuses(config) == {"2024-01-old": models.RETIRED, "2024-02-new": models.CHAMPION}


def test_a_registry_from_before_backtests_gains_the_backtest_columns(registry_db):
    """A registry with every column but the backtest's (and a row) gets them, NULL for the old
    row; a new model's backtest scores go into them."""
    from forecasting.core.db import make_engine

    config = registry_db
    table = models.registry_table(config)
    backtest_columns = [c.name for c in table.columns if c.name.startswith("backtest_")]
    assert backtest_columns == [
        "backtest_rows",
        "backtest_wape",
        "backtest_best_baseline",
        "backtest_best_baseline_wape",
        "backtest_origins",
    ]
    older = sa.Table(
        table.name,
        sa.MetaData(schema=table.schema),
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in table.columns
            if c.name not in backtest_columns
        ),
    )
    engine = make_engine(config.predictions.database)
    try:
        with engine.begin() as conn:
            older.create(conn)
            conn.execute(sa.insert(older).values(**promoted("2024-01-old", "2024-01", at=1)))
    finally:
        engine.dispose()
    origins = [
        {"origin": "2024-01", "rows": 10, "wape": 0.21, "best_baseline": "mean_3", "best_baseline_wape": 0.3}
    ]
    with models.registry(config) as (conn, table):
        models.save(
            conn,
            table,
            {
                **promoted("2024-02-new", "2024-02", at=2),
                "backtest_rows": 10,
                "backtest_wape": 0.21,
                "backtest_best_baseline": "mean_3",
                "backtest_best_baseline_wape": 0.3,
                "backtest_origins": json.dumps(origins),
            },
        )
    frame = read_registry(config).set_index("model_version")
    assert set(frame.columns) | {"model_version"} == {c.name for c in table.columns}
    assert frame.loc["2024-01-old", backtest_columns].isna().all()
    new = frame.loc["2024-02-new"]
    assert (new["backtest_rows"], new["backtest_best_baseline"]) == (10, "mean_3")
    assert (new["backtest_wape"], new["backtest_best_baseline_wape"]) == (
        pytest.approx(0.21),
        pytest.approx(0.3),
    )
    assert json.loads(new["backtest_origins"]) == origins


def test_analyst_role_may_read_the_registry_and_nothing_more(postgres_server, tmp_path, monkeypatch):
    import psycopg

    with temporary_database(postgres_server) as url:
        config = _config_for(url, tmp_path, monkeypatch)
        # Granted before the registry exists: default privileges make it readable once created...
        with analyst_role(url) as (_, analyst):
            with models.registry(config) as (conn, table):
                models.save(conn, table, promoted("2024-11-b", "2024-11", at=1))
            # ...and granting again names it.
            owner = sa.create_engine(url)
            try:
                role, password = analyst.url.username, analyst.url.password
                assert "forecasts_models" in grant_analyst_role(owner, role, password=password)
            finally:
                owner.dispose()
            with analyst.connect() as conn:
                rows = conn.exec_driver_sql("SELECT model_version, status FROM forecasts_models").all()
                assert [tuple(r) for r in rows] == [("2024-11-b", models.CHAMPION)]
            for statement in (
                "UPDATE forecasts_models SET status = 'rejected'",
                "DELETE FROM forecasts_models",
                "INSERT INTO forecasts_models (model_version, run_month, created_at, status) "
                "VALUES ('x', '2024-01-01', now(), 'champion')",
            ):
                with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError) as info:
                    conn.exec_driver_sql(statement)
                assert isinstance(info.value.orig, psycopg.errors.InsufficientPrivilege), statement


# --- the gate in the pipeline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_sales):
    """M's data extracted, validated and in Feast once; four models trained on it: a good one,
    two crippled ones (2 and 3 trees) and an undertrained one (27 trees), each a real challenger."""
    from forecasting.core.config import EvaluationConfig
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.orchestration import pipeline

    folder = tmp_path_factory.mktemp("gate")
    raw = demo_config_dict(folder)
    if "statistical_baselines" in EvaluationConfig.model_fields:
        raw["evaluation"]["statistical_baselines"] = []  # the naive baselines are enough here
    # Unscaled, so a model of 2 or 3 trees is crippled (scaled by the recent mean, the default,
    # its first trees already start from a good forecast).
    raw.setdefault("model", {})["scale_by_recent_mean"] = False
    base = load_config(write_config(folder, raw))
    seed_source_database(base.source.database.url, synthetic_sales, table=base.source.table)
    attempt = pipeline.extract(str(M), "manual__gate_test", base)["attempt"]
    for stage in ("validate", "build_features", "register_features"):
        getattr(pipeline, stage)(str(M), attempt, base)

    def train(rounds: int | None) -> SimpleNamespace:
        config = (
            base
            if rounds is None
            else base.model_copy(update={"model": base.model.model_copy(update={"num_boost_round": rounds})})
        )
        result = pipeline.train(str(M), attempt, config)
        return SimpleNamespace(version=result["model_version"], dir=result["model_dir"])

    return SimpleNamespace(
        raw=raw,
        folder=folder,
        attempt=attempt,
        good=train(None),
        crippled=train(2),
        crippled3=train(3),
        # Stopped early: it loses to the best baseline, and errs differently enough from it that
        # their mean beats it (checked where used).
        undertrained=train(27),
    )


@pytest.fixture
def gate_db(trained, tmp_path, monkeypatch, request):
    """A config of the trained deployment with a fresh predictions database (SQLite unless the
    test is parametrized with "postgresql"), also selected through FORECAST_CONFIG."""
    backend = getattr(request, "param", "sqlite")
    raw = json.loads(json.dumps(trained.raw))
    if backend == "postgresql":
        with temporary_database(request.getfixturevalue("postgres_server")) as url:
            raw["predictions"] = {"url": url, "table": "forecasts"}
            monkeypatch.setenv("FORECAST_CONFIG", str(write_config(tmp_path, raw)))
            yield load_config()
    else:
        raw["predictions"] = {"url": f"sqlite:///{tmp_path}/predictions.db", "table": "forecasts"}
        monkeypatch.setenv("FORECAST_CONFIG", str(write_config(tmp_path, raw)))
        yield load_config()


def run_gate(config: Config, trained, model, force: str | None = None, by: str | None = None):
    """evaluate (with the gate) -> predict -> publish of an already trained challenger."""
    from forecasting.orchestration import pipeline

    evaluation = pipeline.evaluate(
        str(M), trained.attempt, model.dir, config, force_model_version=force, forced_by=by
    )
    predicted = pipeline.predict(str(M), trained.attempt, model.dir, config, evaluation["forecaster"])
    published = pipeline.publish(str(M), trained.attempt, model.dir, "manual__gate_test", config)
    return SimpleNamespace(evaluation=evaluation, predict=predicted, publish=published)


def published(config: Config) -> pd.DataFrame:
    from forecasting.core.db import make_engine

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(sa.text("SELECT * FROM forecasts"), conn)
            runs = pd.read_sql_query(sa.text("SELECT * FROM forecasts_runs"), conn)
    finally:
        engine.dispose()
    frame.attrs["runs"] = runs
    return frame.sort_values(["store_id", "item_id", "horizon"]).reset_index(drop=True)


def averaged_with_siblings(rows: pd.DataFrame, config: Config, report: dict, name: str) -> np.ndarray:
    """The published rows of new items in the age buckets evaluate chose to average with their
    siblings' forecast for the forecaster evaluation.json calls ``name``."""
    from forecasting.features.age import age_buckets

    bucket = age_buckets(rows["history_months"].to_numpy(), config.features.lookback_months)
    return np.isin(bucket.astype(str), report["cold_start"]["used"][name])


def registry_row(config: Config, version: str) -> pd.Series:
    return read_registry(config).set_index("model_version").loc[version]


def evaluation_of(model) -> dict:
    return json.loads((Path(model.dir) / "evaluation.json").read_text())


@pytest.mark.slow
def test_gate_keeps_the_champion_against_a_worse_challenger_then_falls_back_to_the_baseline(
    trained, gate_db, capsys
):
    config, good, bad, bad3 = gate_db, trained.good, trained.crippled, trained.crippled3

    # 1. No champion yet: the good model beats the baseline and is promoted.
    first = run_gate(config, trained, good)
    assert first.evaluation["decision"] == models.PROMOTED
    assert first.publish["model_version"] == good.version
    rows = published(config)
    assert set(rows["model_version"]) == {good.version}
    good_forecasts = rows[["store_id", "item_id", "horizon", "prediction"]]
    report = evaluation_of(good)
    row = registry_row(config, good.version)
    assert row["status"] == models.CHAMPION and row["decided_by"] == models.GATE
    assert str(row["run_month"])[:7] == str(M) and str(row["champion_since"])[:7] == str(M)
    assert row["holdout_wape"] == pytest.approx(report["model"]["wape"])
    assert row["holdout_mae"] == pytest.approx(report["model"]["mae"])
    assert row["holdout_rmse"] == pytest.approx(report["model"]["rmse"])
    assert row["holdout_bias"] == pytest.approx(report["model"]["bias"])
    assert 0 < row["interval_coverage"] == pytest.approx(report["intervals"]["coverage"]["model"]["coverage"])
    assert json.loads(row["baseline_wapes"]) == pytest.approx(
        {n: m["wape"] for n, m in report["baselines"].items()}
    )
    assert row["best_baseline"] == report["best_baseline"]
    assert row["best_baseline_wape"] == pytest.approx(report["baselines"][report["best_baseline"]]["wape"])
    assert pd.isna(row["champion_version"]) and pd.isna(row["champion_wape"])
    metadata = json.loads((Path(good.dir) / "metadata.json").read_text())
    assert json.loads(row["params"]) == metadata["params"]
    assert json.loads(row["features"]) == metadata["features"]
    assert row["data_fingerprint"] == metadata["data_fingerprint"]
    assert str(row["train_first_month"])[:7] == metadata["training_window"]["first_target_month"]
    assert str(row["train_last_month"])[:7] == metadata["training_window"]["last_target_month"]
    assert str(row["holdout_first_month"])[:7] == min(report["holdout_target_months"])
    assert str(row["holdout_last_month"])[:7] == max(report["holdout_target_months"]) == str(M)
    assert row["holdout_rows"] == report["model"]["rows"]
    importance = json.loads(row["feature_importance"])
    assert len(importance) == 10 and set(importance) <= set(metadata["features"])
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    assert 0 < sum(importance.values()) <= 1 + 1e-9
    assert row["published"] == good.version
    # Its rolling-origin backtest: one model per origin of the last evaluation.backtest_origins.
    backtest = report["backtest"]
    assert [o["origin"] for o in backtest["origins"]] == [f["origin"] for f in metadata["backtest"]["fits"]]
    assert len(backtest["origins"]) == config.evaluation.backtest_origins == 6
    assert row["backtest_rows"] == backtest["overall"]["rows"] > 0
    assert row["backtest_wape"] == pytest.approx(backtest["overall"]["model"]["wape"])
    assert row["backtest_best_baseline"] == backtest["overall"]["best_baseline"]
    assert row["backtest_best_baseline_wape"] == pytest.approx(
        backtest["overall"]["baselines"][row["backtest_best_baseline"]]["wape"]
    )
    per_origin = json.loads(row["backtest_origins"])
    assert [(o["origin"], o["rows"]) for o in per_origin] == [
        (o["origin"], o["rows"]) for o in backtest["origins"]
    ]
    assert [o["wape"] for o in per_origin] == pytest.approx([o["model"]["wape"] for o in backtest["origins"]])
    # The runs table carries the published forecaster and its WAPE.
    assert rows.attrs["runs"]["model_version"].tolist() == [good.version]
    assert rows.attrs["runs"]["holdout_wape"].tolist() == pytest.approx([report["model"]["wape"]])

    # 2. A crippled challenger: the champion re-scores the same rows with its holdout model and wins.
    second = run_gate(config, trained, bad)
    assert second.evaluation["decision"] == models.KEPT_CHAMPION
    assert second.evaluation["champion"] == good.version and second.evaluation["forecaster"] == good.version
    bad_report = evaluation_of(bad)
    # Same rows, same holdout model as in step 1: exactly the champion's own holdout WAPE.
    assert bad_report["champion"]["metrics"]["wape"] == pytest.approx(report["model"]["wape"])
    assert bad_report["champion"]["metrics"]["rows"] == bad_report["model"]["rows"]
    assert bad_report["model"]["wape"] > report["model"]["wape"]
    assert bad_report["decision"]["outcome"] == models.KEPT_CHAMPION
    row = registry_row(config, bad.version)
    assert (row["status"], row["decision"], row["decided_by"]) == (
        models.REJECTED,
        models.KEPT_CHAMPION,
        models.GATE,
    )
    assert row["champion_version"] == good.version
    assert row["champion_wape"] == pytest.approx(report["model"]["wape"])
    assert row["published"] == good.version and f"does not beat the champion {good.version}" in row["reason"]
    assert registry_row(config, good.version)["status"] == models.CHAMPION
    # What was published: the champion's forecasts from M's features, row for row.
    rows = published(config)
    assert set(rows["model_version"]) == {good.version}
    # (but for the new items step 1 averaged with their siblings' forecast as evaluate chose for
    # the challenger: a champion evaluate did not score gets none, modeling.cold_start)
    same = ~averaged_with_siblings(rows, config, report, "model")
    columns = ["store_id", "item_id", "horizon", "prediction"]
    pd.testing.assert_frame_equal(rows.loc[same, columns], good_forecasts[same])

    # 3. Running that month again changes nothing in the registry but the decision time.
    before = read_registry(config)
    run_gate(config, trained, bad)
    after = read_registry(config)
    assert len(after) == 2 and after["model_version"].is_unique
    stable = [c for c in after.columns if c != "decided_at"]
    pd.testing.assert_frame_equal(before[stable], after[stable])

    # 4. A person promotes the crippled model (who and why are recorded)...
    assert models.main(["promote", bad.version, "--reason", "testing the fallback", "--by", "alice"]) == 0
    row = registry_row(config, bad.version)
    assert (row["status"], row["decided_by"], row["reason"]) == (
        models.CHAMPION,
        "alice",
        "testing the fallback",
    )
    assert registry_row(config, good.version)["status"] == models.RETIRED

    # 5. ...and another crippled challenger loses to it, and both lose to the best baseline,
    # whose forecasts are published under its name.
    third = run_gate(config, trained, bad3)
    best = third.evaluation["best_baseline"]
    assert third.evaluation["decision"] == models.BASELINE
    assert third.evaluation["forecaster"] == f"baseline:{best}"
    assert third.evaluation["champion"] == bad.version
    assert "does not beat the" in third.evaluation["reason"] and "either" in third.evaluation["reason"]
    rows = published(config)
    assert set(rows["model_version"]) == {f"baseline:{best}"}
    expected = expected_baseline(config, trained, rows, best)
    same = ~averaged_with_siblings(rows, config, evaluation_of(bad3), best)  # new items: modeling.cold_start
    np.testing.assert_allclose(rows["prediction"].to_numpy()[same], expected[same])
    runs = rows.attrs["runs"]
    assert runs["model_version"].tolist() == [f"baseline:{best}"]
    assert runs["holdout_wape"].tolist() == pytest.approx([third.evaluation["best_baseline_wape"]])
    row = registry_row(config, bad3.version)
    assert (row["status"], row["published"]) == (models.REJECTED, f"baseline:{best}")

    # The run summary says what the gate decided and who made the published rows.
    from forecasting.orchestration.summary import summarize

    summary = summarize(config, str(M))
    assert f"Gate        {models.BASELINE}: " in summary
    assert f"made by baseline:{best} (their model_version)" in summary
    assert f"{'champion':<16}" in summary  # the champion's row in the holdout table

    # 6. Rejecting the promoted model hands the title back to the good one.
    assert models.main(["reject", bad.version, "--reason", "done testing", "--by", "bob"]) == 0
    assert statuses(config) == {
        good.version: models.CHAMPION,
        bad.version: models.REJECTED,
        bad3.version: models.REJECTED,
    }
    # Running the crippled model's month again keeps the person's decision about it.
    again = run_gate(config, trained, bad)
    row = registry_row(config, bad.version)
    assert (row["status"], row["decided_by"], row["reason"]) == (models.REJECTED, "bob", "done testing")
    assert (
        again.evaluation["forecaster"] == good.version
        and "manual decision by bob kept" in again.evaluation["reason"]
    )


@pytest.mark.slow
def test_gate_publishes_the_blend_when_neither_model_beats_the_baseline_but_their_mean_does(trained, gate_db):
    from forecasting.core import paths
    from forecasting.core.config import ConfigError
    from forecasting.modeling.predict import forecast
    from forecasting.orchestration.summary import summarize

    config, weak = gate_db, trained.undertrained
    result = run_gate(config, trained, weak)
    report = evaluation_of(weak)
    best = report["best_baseline"]
    blend = f"blend:{weak.version}+{best}"
    # The case this is about: the model loses to the best baseline, their mean beats it.
    model_wape, best_wape, blend_wape = (
        report["model"]["wape"],
        report["baselines"][best]["wape"],
        report["blend"]["metrics"]["wape"],
    )
    assert model_wape > best_wape > blend_wape and report["blend"]["baseline"] == best
    assert (result.evaluation["decision"], result.evaluation["forecaster"]) == (models.BLENDED, blend)

    # Published: row for row the mean of the model's and the baseline's forecasts of M+h, with
    # the blend's own p10/p90 bands around it; the runs table has the blend's holdout WAPE.
    rows = published(config)
    assert set(rows["model_version"]) == {blend}
    snapshot = pd.read_parquet(paths.snapshot(config, M, trained.attempt))
    made = forecast(snapshot, config, M, Path(weak.dir)).sort_values(["store_id", "item_id", "horizon"])
    expected = (made["prediction"].to_numpy() + expected_baseline(config, trained, rows, best)) / 2
    same = ~averaged_with_siblings(rows, config, report, "blend")  # new items: modeling.cold_start
    np.testing.assert_allclose(rows["prediction"].to_numpy()[same], expected[same], rtol=1e-6)
    assert rows["p10"].notna().all() and (rows["p10"] <= rows["prediction"]).all()
    assert (rows["prediction"] <= rows["p90"]).all() and (rows["p90"] > rows["p10"]).any()
    assert rows.attrs["runs"]["holdout_wape"].tolist() == pytest.approx([blend_wape])
    row = registry_row(config, weak.version)
    assert (row["status"], row["decision"], row["published"]) == (models.REJECTED, models.BLENDED, blend)
    assert (row["blend_baseline"], row["blend_wape"]) == (best, pytest.approx(blend_wape))
    assert models.current_champion(config) is None  # a blend crowns no model
    summary = summarize(config, str(M))
    assert (
        f"Gate        {models.BLENDED}: " in summary and f"made by {blend} (their model_version)" in summary
    )
    assert f"{'blend ' + best:<16}{blend_wape:>7.3f}" in summary

    # gate.blend: false publishes the baseline instead.
    unblended = config.model_copy(update={"gate": config.gate.model_copy(update={"blend": False})})
    assert run_gate(unblended, trained, weak).evaluation["forecaster"] == f"baseline:{best}"

    # A run may force a blend; one of an unknown model or baseline is refused.
    forced = run_gate(config, trained, trained.crippled, force=blend, by="erin")
    assert forced.evaluation["forecaster"] == blend and set(published(config)["model_version"]) == {blend}
    for bad in (f"blend:{weak.version}+no_such", "blend:2001-01-0123456789+mean_3"):
        with pytest.raises(ConfigError, match="no such"):
            run_gate(config, trained, trained.crippled, force=bad, by="erin")


def expected_baseline(config: Config, trained, rows: pd.DataFrame, name: str) -> np.ndarray:
    """The baseline's forecasts of M+h worked out by evaluation's own code, row by row."""
    from forecasting.core import paths
    from forecasting.modeling.evaluate import baseline_forecasts

    snapshot = pd.read_parquet(paths.snapshot(config, M, trained.attempt))
    asked = rows[["store_id", "item_id", "horizon"]].assign(origin_month=str(M))
    return baseline_forecasts(asked, snapshot, config)[name].to_numpy()


@pytest.mark.slow
@pytest.mark.parametrize("gate_db", BACKENDS, indirect=True)
def test_gate_promotes_a_better_challenger_over_the_champion(trained, gate_db):
    config, good, bad = gate_db, trained.good, trained.crippled
    first = run_gate(config, trained, bad)  # no champion, and it loses to the baseline
    assert first.evaluation["decision"] == models.BASELINE
    assert registry_row(config, bad.version)["status"] == models.REJECTED
    assert models.current_champion(config) is None
    models.promote(config, bad.version, "a champion to beat", by="carol")

    second = run_gate(config, trained, good)
    assert second.evaluation["decision"] == models.PROMOTED
    assert second.evaluation["champion"] == bad.version
    assert second.evaluation["champion_wape"] == pytest.approx(evaluation_of(bad)["model"]["wape"])
    assert set(published(config)["model_version"]) == {good.version}
    assert statuses(config) == {good.version: models.CHAMPION, bad.version: models.RETIRED}
    row = registry_row(config, good.version)
    assert row["champion_version"] == bad.version and row["champion_wape"] > row["holdout_wape"]
    assert f"beats the champion {bad.version}" in row["reason"]


@pytest.mark.slow
def test_a_champion_that_cannot_read_the_features_is_left_out_and_a_run_may_force_a_forecaster(
    trained, gate_db
):
    import shutil

    from forecasting.core import paths

    config, good, bad = gate_db, trained.good, trained.crippled
    # A champion whose model reads a feature this run does not make (another feature config).
    alien = f"{M - 1}-{'f' * 10}"
    folder = paths.models(config) / alien
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(good.dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update(
        model_version=alien, run_month=str(M - 1), features=[*metadata["features"], "sales_lag_36"]
    )
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with models.registry(config) as (conn, table):
        models.save(conn, table, promoted(alien, str(M - 1), at=1))

    result = run_gate(config, trained, good)
    assert result.evaluation["decision"] == models.PROMOTED  # judged against the baseline alone
    assert result.evaluation["champion"] == alien and result.evaluation["champion_wape"] is None
    assert "could not score this holdout" in result.evaluation["reason"]
    assert "sales_lag_36" in evaluation_of(good)["champion"]["why"]
    assert registry_row(config, good.version)["status"] == models.CHAMPION

    # Forcing: the crippled model's run publishes the good model's forecasts, recorded with who.
    forced = run_gate(config, trained, bad, force=good.version, by="dave")
    assert forced.evaluation["decision"] == models.FORCED and forced.evaluation["forecaster"] == good.version
    assert set(published(config)["model_version"]) == {good.version}
    row = registry_row(config, bad.version)
    assert (row["status"], row["decided_by"], row["published"]) == (models.CHALLENGER, "dave", good.version)
    assert "forced" in row["reason"]
    # ...or a baseline.
    run_gate(config, trained, bad, force="baseline:last_value", by="dave")
    assert set(published(config)["model_version"]) == {"baseline:last_value"}
    from forecasting.core.config import ConfigError

    with pytest.raises(ConfigError, match="no such model"):
        run_gate(config, trained, bad, force="2001-01-0123456789", by="dave")


def with_statistical(config: Config, names: list[str], max_series: int) -> Config:
    evaluation = config.evaluation.model_copy(
        update={"statistical_baselines": names, "statistical_max_series": max_series}
    )
    return config.model_copy(update={"evaluation": evaluation})


@pytest.mark.slow
def test_autoets_better_only_on_the_sample_is_published_instead_of_the_model(trained, gate_db, monkeypatch):
    """A hand-made case at the gate's input: the good model beats every naive baseline on every
    row, and AutoETS (scored on a sample of 30 entities) is made better than it there, on the
    holdout and the backtest alike. The gate must not promote the model: AutoETS or its blend with
    the model, whichever the backtest scores best, forecasts every entity, from AutoETS's own
    forecasts of M+h, with its own bands. Within noise on the holdout, the model stays."""
    from forecasting.core import paths
    from forecasting.modeling import evaluate as evaluate_stage
    from forecasting.modeling.predict import baseline_forecast, forecast
    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import summarize
    from forecasting.registry.gate import run_gate as gate

    config, good = with_statistical(gate_db, ["auto_ets"], 30), trained.good
    model_dir = Path(good.dir)

    def near_exact(panel, entity, origin, horizon, names, jobs=None, search=True):
        """Hand-made: AutoETS errs by about 3% on every row it is scored on."""
        target = panel.sales[entity, origin + horizon - panel.first_month]
        noise = np.random.default_rng(5).normal(0, 0.03, len(entity))
        return {name: np.maximum(target * (1 + noise), 0) for name in names}

    monkeypatch.setattr(evaluate_stage, "statistical_forecasts", near_exact)
    pipeline.evaluate(str(M), trained.attempt, good.dir, config)
    report = evaluation_of(good)
    assert report["beats_best_baseline"] and report["sample"]["entities"] == 30
    rows_path = paths.sample_rows(model_dir)
    rows = pd.read_parquet(rows_path)
    assert rows["entity"].nunique() == 30 and len(rows) == report["sample"]["model"]["rows"]
    assert report["sample"]["baselines"]["auto_ets"]["wape"] < report["sample"]["model"]["wape"] / 2

    decided = gate(config, M, model_dir)
    compared = decided["sample"]
    # Ranked on the backtest, the first confirmed on the holdout published.
    considered = sorted(
        (c for c in compared["candidates"] if c["considered"]), key=lambda c: c["backtest_wape"]
    )
    confirmed = [c for c in considered if c["lower_by_margin"] and c["beyond_noise"]]
    assert compared["selected_on"] == "backtest" and confirmed
    best = confirmed[0]["forecaster"]
    considered = confirmed
    assert best in ("baseline:auto_ets", f"blend:{good.version}+auto_ets")
    assert decided["forecaster"] == best and decided["outcome"] in (models.BASELINE, models.BLENDED)
    assert decided["wape"] == pytest.approx(considered[0]["wape"])
    assert decided["intervals"] == compared["intervals"]
    # Its own bands, evaluate's, and their coverage on months they were not calibrated on.
    name = "auto_ets" if best.startswith("baseline:") else "model+auto_ets"
    assert decided["intervals"] == report["intervals"]["forecasters"][name]
    assert decided["coverage"] == report["intervals"]["coverage"][name] and decided["coverage"]["rows"] > 0
    row = registry_row(config, good.version)
    assert (row["status"], row["published"]) == (models.REJECTED, best)
    assert "paired bootstrap" in row["reason"] and models.current_champion(config) is None

    pipeline.predict(str(M), trained.attempt, good.dir, config, best)
    pipeline.publish(str(M), trained.attempt, good.dir, "manual__gate_test", config)
    published_rows = published(config)
    assert set(published_rows["model_version"]) == {best}
    snapshot = pd.read_parquet(paths.snapshot(config, M, trained.attempt))
    order = ["store_id", "item_id", "horizon"]
    ets = baseline_forecast(snapshot, config, M, "auto_ets").sort_values(order)["prediction"].to_numpy()
    expected = ets
    if best.startswith("blend:"):
        made = forecast(snapshot, config, M, model_dir).sort_values(order)["prediction"].to_numpy()
        expected = (made + ets) / 2
    np.testing.assert_allclose(published_rows["prediction"].to_numpy(), expected, rtol=1e-6)
    assert (
        published_rows["p10"].notna().all() and (published_rows["p10"] <= published_rows["prediction"]).all()
    )
    assert (published_rows["prediction"] <= published_rows["p90"]).all()
    summary = summarize(config, str(M))
    assert f"-> {best} is lower beyond noise: the gate publishes it for every entity." in summary
    assert f"goal 80%; {best}, " in summary  # its intervals' coverage

    # The model's blend with AutoETS forecasts every entity too (here forced: a statistical
    # baseline scored only on the sample may be forced, alone or blended).
    blended = f"blend:{good.version}+auto_ets"
    forced = gate(config, M, model_dir, force=parse(blended), forced_by="erin")
    assert forced["forecaster"] == blended
    pipeline.predict(str(M), trained.attempt, good.dir, config, blended)
    made = pd.read_parquet(paths.forecasts(config, M, trained.attempt)).sort_values(order)
    model_made = forecast(snapshot, config, M, model_dir).sort_values(order)["prediction"].to_numpy()
    np.testing.assert_allclose(made["prediction"].to_numpy(), (model_made + ets) / 2, rtol=1e-6)

    # Within noise: AutoETS is the model but on one entity, where it is exact.
    lucky = rows["entity"] == rows["entity"].iloc[0]
    rows["auto_ets"] = rows["model"].where(~lucky, rows["actual"])
    paths.write_parquet_atomically(rows, rows_path)
    decided = gate(config, M, model_dir)
    assert (decided["outcome"], decided["forecaster"]) == (models.PROMOTED, good.version)
    assert decided["sample"]["published"] is None and "so it stays" in decided["reason"]
    assert registry_row(config, good.version)["status"] == models.CHAMPION
