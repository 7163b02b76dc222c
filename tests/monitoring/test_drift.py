"""Drift (forecasting.monitoring.drift): PSI and the KS test worked out by hand, entity shares, and the drift
table on SQLite and PostgreSQL from a hand-made deployment whose price doubles in the month
compared. The whole pipeline with a shift injected: test_monitoring.py."""

from __future__ import annotations

import math
from contextlib import ExitStack
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import ConfigError, load_config
from forecasting.data.panel import build_panel
from forecasting.monitoring.drift import (
    EMPTY_SHARE,
    NEW_ENTITIES,
    VANISHED_ENTITIES,
    entity_shares,
    ks_test,
    psi_categorical,
    psi_numeric,
    record_drift,
)
from forecasting.publishing.query import run_query
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.servers import analyst_role


def test_psi_of_quantile_bins_with_a_bin_for_missing_values():
    reference = np.arange(1.0, 11.0)  # median 5.5: two bins of 5 values each, no missing value
    scoring = np.array([1, 2, 3, 4, 5, 6, 7, 8, np.nan, np.nan])  # 5, 3 and 2 missing
    p, q = [0.5, 0.5, EMPTY_SHARE], [0.5, 0.3, 0.2]
    expected = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert psi_numeric(reference, scoring, bins=2) == pytest.approx(expected)  # about 1.62
    assert psi_numeric(reference, reference, bins=10) == 0.0
    # The same shape in other rows is no drift; a shift is, and the more the larger.
    rng = np.random.default_rng(1)
    base, same = rng.normal(size=20_000), rng.normal(size=20_000)
    assert psi_numeric(base, same, 10) < 0.01
    assert 0.2 < psi_numeric(base, same + 0.5, 10) < psi_numeric(base, same + 1.0, 10)


def test_psi_keeps_tied_values_in_one_bin():
    # 60% zeros: the deciles 0.1..0.6 are all 0, one bin (-inf, 0] holds them.
    reference = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], dtype=float)
    assert psi_numeric(reference, np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4.0]), 10) == 0.0
    # Half zeros instead of 60%, the rest as before: bins (-inf,0] (0,1] (1,2] (2,3] (3,4].
    scoring = np.array([0, 0, 0, 0, 0, 1, 1, 2, 3, 4], dtype=float)
    p, q = [0.6, 0.1, 0.1, 0.1, 0.1], [0.5, 0.2, 0.1, 0.1, 0.1]
    expected = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert psi_numeric(reference, scoring, 10) == pytest.approx(expected)


def test_psi_of_categories_with_bins_for_unseen_and_missing():
    reference = pd.Series(["a", "a", "b", "b"])
    scoring = pd.Series(["a", "a", "a", "c"])  # c is not in the reference
    p, q = [0.5, 0.5, EMPTY_SHARE], [0.75, EMPTY_SHARE, 0.25]  # a, b, other (missing: empty in both)
    expected = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert psi_categorical(reference, scoring) == pytest.approx(expected)
    assert psi_categorical(reference, reference) == 0.0


def test_ks_test_on_the_values_that_are_not_missing():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=500), rng.normal(0.5, size=400)
    statistic, pvalue = ks_test(np.append(a, np.nan), np.append(b, [np.nan, np.nan]))
    expected = ks_2samp(a, b)
    assert (statistic, pvalue) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert pvalue < 1e-6
    assert all(math.isnan(v) for v in ks_test(a, np.array([np.nan])))


def test_new_and_vanished_entities(tmp_path):
    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    months = pd.period_range("2024-01", "2024-06", freq="M")
    present = {
        ("1", "1"): months,  # every month
        ("1", "2"): months[:-1],  # not in June: vanished
        ("1", "3"): months[-1:],  # only June: new
        ("1", "4"): months[:3].append(months[-1:]),  # back in June after a gap: neither
        ("2", "1"): months[:2],  # gone long before June: not vanished in June
    }
    snapshot = pd.DataFrame(
        [
            {"store_id": s, "item_id": i, "month": m.to_timestamp(), "units": 1.0}
            for (s, i), ms in present.items()
            for m in ms
        ]
    )
    rows = {
        r["feature"]: r
        for r in entity_shares(build_panel(snapshot, config, True), months[-1], config.monitoring)
    }
    new, vanished = rows[NEW_ENTITIES], rows[VANISHED_ENTITIES]
    assert (new["entities"], new["scoring_rows"], new["share"]) == (
        1,
        3,
        pytest.approx(1 / 3),
    )  # of 3 in June
    assert (vanished["entities"], vanished["reference_rows"], vanished["share"]) == (1, 2, 0.5)  # of 2 in May
    assert new["drifted"] and vanished["drifted"]  # above the default 10%


# --- the drift table, from a hand-made deployment ------------------------------------------------

MONTH = pd.Period("2024-12", "M")
ENTITIES = 300


def handmade_sales(shifted: bool) -> pd.DataFrame:
    """300 store x item series over 36 months with stationary sales and prices; with ``shifted``,
    every price of December 2024 is doubled. Entity 0 is new in December, entity 1 gone in it."""
    rng = np.random.default_rng(5)
    months = pd.period_range(MONTH - 35, MONTH, freq="M")
    level = rng.lognormal(3, 1, ENTITIES)
    price = rng.lognormal(1, 0.3, ENTITIES)
    rows = []
    for e in range(ENTITIES):
        for m in months:
            if (e == 0 and m < MONTH) or (e == 1 and m == MONTH):
                continue
            rows.append(
                {
                    "store_id": e // 30 + 1,
                    "item_id": e % 30 + 1,
                    "month": m.to_timestamp(),
                    "units": float(rng.poisson(level[e])),
                    "price": round(
                        price[e] * rng.lognormal(0, 0.05) * (2 if shifted and m == MONTH else 1), 2
                    ),
                    "promo": int(rng.random() < 0.15),
                    "store_size": "small",
                    "region": "north",
                    "category": "snacks" if e % 2 else "drinks",
                }
            )
    return pd.DataFrame(rows)


def deploy(tmp_path, url: str, snapshot: pd.DataFrame):
    """A config, the offline feature files of the snapshot, and the metadata of a model trained
    in November 2024 on targets 2022-02..2024-11 (origins from 2022-01)."""
    from forecasting.features.catalogue import build_features

    raw = demo_config_dict(tmp_path)
    raw["predictions"] = {"url": url, "table": "forecasts"}
    raw["source"]["history_months"] = None
    config = load_config(write_config(tmp_path, raw))
    build_features(snapshot, config, MONTH)
    version = "2024-11-0123456789"
    window = {"first_origin": "2022-01", "first_target_month": "2022-02", "last_target_month": "2024-11"}
    paths.write_json_atomically(
        {"model_version": version, "training_window": window},
        paths.models(config) / version / "metadata.json",
    )
    return config, {"model_version": version, "challenger": version}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        else:
            url = f"sqlite:///{tmp_path}/predictions.db"
        yield SimpleNamespace(backend=request.param, url=url)


def drift_rows(config) -> dict[str, dict]:
    return {
        r["feature"]: r for r in run_query(config, "SELECT * FROM forecasts_drift").to_dict(orient="records")
    }


def test_the_drift_table_flags_the_shifted_features_and_is_replaced_per_month(tmp_path, database):
    snapshot = handmade_sales(shifted=True)
    config, published = deploy(tmp_path, database.url, snapshot)
    report = record_drift(snapshot, config, MONTH, published, run_id="drift_1")
    # The price of December and the 3-month mean that holds it; nothing else (the new entity is
    # one of 299, the vanished one of 299: under 10%).
    assert report.drifted == ["price", "price_mean_3"]
    rows = drift_rows(config)
    features = [  # the stored features of the default lags and windows
        *(f"sales_lag_{k}" for k in config.features.lags),
        *(f"sales_{s}_{w}" for w in config.features.rolling_windows for s in ("mean", "std")),
        "price",
        "price_mean_3",
        "promo",
        "promo_mean_3",
        "store_size",
        "region",
        "category",
    ]
    assert set(rows) == {*features, "units", NEW_ENTITIES, VANISHED_ENTITIES}  # no month_of_year
    price = rows["price"]
    assert price["kind"] == "feature" and price["drifted"] and price["psi"] > 1 and price["ks_pvalue"] < 1e-10
    assert str(price["run_month"])[:10] == "2024-12-01"
    # The reference: the model's last 12 training origins, 2023-12..2024-11, 299 entities each.
    assert (str(price["reference_first_month"])[:7], str(price["reference_last_month"])[:7]) == (
        "2023-11",
        "2024-10",
    )
    assert (price["reference_rows"], price["scoring_rows"]) == (299 * 12, 299)
    assert (price["model_version"], price["run_id"], price["threshold"]) == (
        "2024-11-0123456789",
        "drift_1",
        0.2,
    )
    target = rows["units"]
    assert (target["kind"], str(target["reference_first_month"])[:7], target["drifted"]) == (
        "target",
        "2023-12",
        False,
    )
    assert math.isnan(rows["category"]["ks_statistic"]) or rows["category"]["ks_statistic"] is None
    new = rows[NEW_ENTITIES]
    assert (new["entities"], new["scoring_rows"], new["drifted"]) == (1, 299, False)
    assert new["share"] == pytest.approx(1 / 299)
    # The same numbers as computed here from the feature files, by pandas.
    files = [
        paths.feature_table(config) / f"{m}.parquet" for m in pd.period_range("2023-11", "2024-10", freq="M")
    ]
    reference = pd.concat([pd.read_parquet(f) for f in files])["price"].to_numpy(dtype=float)
    scoring = pd.read_parquet(paths.feature_table(config) / "2024-12.parquet")["price"].to_numpy(dtype=float)
    assert price["psi"] == pytest.approx(psi_numeric(reference, scoring, 10))
    assert price["ks_statistic"] == pytest.approx(ks_test(reference, scoring)[0])

    # Recording December again (from data without the shift) replaces its rows.
    unshifted = handmade_sales(shifted=False)
    build_features_again(config, unshifted)
    again = record_drift(unshifted, config, MONTH, published, run_id="drift_2")
    assert again.drifted == []
    assert run_query(config, "SELECT count(*) AS n, max(run_id) AS r FROM forecasts_drift").to_dict(
        orient="records"
    ) == [{"n": len(features) + 3, "r": "drift_2"}]


def build_features_again(config, snapshot: pd.DataFrame) -> None:
    from forecasting.features.catalogue import build_features

    build_features(snapshot, config, MONTH)


def test_drift_needs_the_models_training_window_and_its_feature_files(tmp_path):
    from forecasting.core.errors import DataError

    snapshot = handmade_sales(shifted=False)
    config, published = deploy(tmp_path, f"sqlite:///{tmp_path}/p.db", snapshot)
    with pytest.raises(DataError, match="no model metadata"):
        record_drift(snapshot, config, MONTH, {"model_version": "2024-10-ffffffffff"})
    (paths.feature_table(config) / "2024-03.parquet").unlink()
    with pytest.raises(DataError, match=r"lacks the training window's months 2024-03\.parquet"):
        record_drift(snapshot, config, MONTH, published)
    # A published baseline: the window of the challenger its run trained.
    (paths.feature_table(config) / "2024-03.parquet").touch()
    with pytest.raises(DataError, match="no model metadata"):
        record_drift(snapshot, config, MONTH, {"model_version": "baseline:mean_3", "challenger": "x"})
    # A published blend: its model's window.
    with pytest.raises(DataError, match=r"no model metadata at \S*/2024-10-eeeeeeeeee/"):
        record_drift(snapshot, config, MONTH, {"model_version": "blend:2024-10-eeeeeeeeee+mean_3"})


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_the_analyst_role_reads_the_drift_and_alerts_tables(tmp_path, database):
    from forecasting.monitoring.alerts import Alert, raise_alerts

    snapshot = handmade_sales(shifted=True)
    config, published = deploy(tmp_path, database.url, snapshot)
    record_drift(snapshot, config, MONTH, published)
    raise_alerts(
        config, [Alert("forecast_monitoring", "2024-12", "drift", "psi", "price", 1.5, 0.2, "price drifted")]
    )
    with analyst_role(database.url) as (granted, analyst):
        assert {"forecasts_drift", "forecasts_alerts"} <= set(granted)
        with analyst.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM forecasts_drift WHERE drifted").scalar() == 2
            assert conn.exec_driver_sql("SELECT metric FROM forecasts_alerts").scalar() == "psi"
        with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("DELETE FROM forecasts_alerts")


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("monitoring", {"psi_threshold": -0.1}, r"monitoring\.psi_threshold: must be at least 0"),
        ("monitoring", {"psi_threshold": "high"}, r"monitoring\.psi_threshold: must be float"),
        ("monitoring", {"ks_alpha": 5}, r"monitoring\.ks_alpha: is a share between 0 and 1"),
        ("monitoring", {"psi_bins": 1}, r"monitoring\.psi_bins: must be at least 2"),
        ("monitoring", {"entity_share_threshold": 2.0}, r"monitoring\.entity_share_threshold: is a share"),
        ("monitoring", {"drift_sample_rows": 10}, r"monitoring\.drift_sample_rows: must be at least 1000"),
        ("monitoring", {"reference_months": 0}, r"monitoring\.reference_months: must be at least 1"),
        ("monitoring", {"psi_treshold": 0.2}, r"monitoring\.psi_treshold: unknown key"),
        ("alerts", {"max_wape": -1}, r"alerts\.max_wape: must be at least 0"),
        ("alerts", {"worse_than_naive_months": 1.5}, r"alerts\.worse_than_naive_months: must be int"),
        ("alerts", {"notifiers": {"type": "smtp"}}, r"alerts\.notifiers: must be a list"),
        (
            "alerts",
            {"notifiers": [{"type": "pager", "to": "a@b.c"}]},
            r"alerts\.notifiers\[0\]\.type: must be one of smtp",
        ),
        (
            "alerts",
            {"notifiers": [{"type": "smtp"}]},
            r"alerts\.notifiers\[0\]\.to: must be an email address",
        ),
        (
            "alerts",
            {"notifiers": [{"type": "smtp", "to": ["planning"]}]},
            r"alerts\.notifiers\[0\]\.to: must be",
        ),
        (
            "alerts",
            {"notifiers": [{"type": "smtp", "to": "a@b.c", "from": "x@y.z"}]},
            r"\[0\]\.from: unknown key",
        ),
        (
            "alerts",
            {"notifiers": [{"type": "smtp", "to": "a@b.c", "from_email": "me"}]},
            r"\[0\]\.from_email: must be",
        ),
        ("alerts", {"email": "a@b.c"}, r"alerts\.email: unknown key"),
    ],
)
def test_bad_monitoring_and_alerts_settings_are_refused_naming_the_key(tmp_path, section, value, message):
    raw = demo_config_dict(tmp_path)
    raw[section] = value
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, raw))


def test_monitoring_and_alerts_defaults_and_settings(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw.pop("monitoring", None)
    config = load_config(write_config(tmp_path, raw))
    mon, alerts = config.monitoring, config.alerts
    assert (mon.psi_threshold, mon.ks_alpha, mon.psi_bins, mon.entity_share_threshold) == (0.2, 0.01, 10, 0.1)
    assert (mon.drift_sample_rows, mon.reference_months) == (100_000, 12)
    assert (alerts.notifiers, alerts.max_wape, alerts.worse_than_naive_months) == ([], None, 3)
    raw["monitoring"] = {"psi_threshold": 0.25, "reference_months": None}
    raw["alerts"] = {
        "max_wape": 0.5,
        "worse_than_naive_months": 2,
        "notifiers": [
            {"type": "smtp", "to": "planning@example.com"},
            {"type": "smtp", "to": ["a@b.c", "d@e.f"], "conn_id": "mail", "from_email": "f@e.c"},
        ],
    }
    config = load_config(write_config(tmp_path, raw))
    assert (config.monitoring.psi_threshold, config.monitoring.reference_months) == (0.25, None)
    first, second = config.alerts.notifiers
    assert (first.to, first.conn_id, first.from_email) == (["planning@example.com"], "smtp_default", None)
    assert (second.to, second.conn_id, second.from_email) == (["a@b.c", "d@e.f"], "mail", "f@e.c")
    assert (config.alerts.max_wape, config.alerts.worse_than_naive_months) == (0.5, 2)
