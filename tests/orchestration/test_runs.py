"""A run of month M depends on the source data and the config alone, keeps its own files, and
says plainly why it failed.

* The same month gives the same model and forecasts whatever ran before it in the same data_dir
  (an older run leaves feature files in the offline table that must not be read).
* A failed attempt (bad data, the same run cleared and run again) never overwrites the files of
  the attempt that was published; the quality page keeps pointing at the published one.
* A horizon the history cannot label is refused at train, naming the longest it can.
* The summary of a failed run names the stage and, for validation, every failed expectation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.config import demo_config_dict, write_config

pytestmark = pytest.mark.slow


def seeded(folder, sales, **changes):
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database

    raw = demo_config_dict(folder)
    raw["model"]["num_boost_round"] = 200
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    config = load_config(write_config(folder, raw))
    seed_source_database(config.source.database.url, sales, table=config.source.table)
    return config


def forecasts_of(config, results) -> pd.DataFrame:
    """The forecasts of the month's own model (the challenger), whichever forecaster the gate
    chose to publish: that choice depends on the registry, i.e. on what ran before, by design."""
    from forecasting.core import paths
    from forecasting.modeling.predict import forecast

    month = pd.Period(results["extract"]["month"], "M")
    snapshot = pd.read_parquet(paths.snapshot(config, month, results["extract"]["attempt"]))
    return forecast(snapshot, config, month, Path(results["train"]["model_dir"]))


def test_a_month_gives_the_same_model_whatever_ran_before_it(tmp_path, synthetic_sales):
    from forecasting.orchestration import pipeline

    fresh = seeded(tmp_path / "fresh", synthetic_sales)
    alone = pipeline.run_month("2024-06", "alone", fresh)

    # In another folder, the month before (and the month after) ran first: their feature files
    # (one month older, one month newer than 2024-06's window) stay in the offline table.
    busy = seeded(tmp_path / "busy", synthetic_sales)
    pipeline.run_month("2024-05", "before", busy)
    pipeline.run_month("2024-07", "after", busy)
    again = pipeline.run_month("2024-06", "again", busy)

    assert again["train"]["model_version"] == alone["train"]["model_version"]
    assert again["train"]["rows"] == alone["train"]["rows"]
    pd.testing.assert_frame_equal(forecasts_of(busy, again), forecasts_of(fresh, alone))
    for name in ("evaluation.json",):
        a = json.loads((fresh.data_dir / "models" / alone["train"]["model_version"] / name).read_text())
        b = json.loads((busy.data_dir / "models" / again["train"]["model_version"] / name).read_text())
        gate = ("champion", "decision")  # the gate's part: it depends on the registry
        assert {k: v for k, v in a.items() if k not in gate} == {k: v for k, v in b.items() if k not in gate}


def _digests(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_failed_attempt_leaves_the_published_attempts_files_alone(tmp_path, synthetic_sales):
    from forecasting.core import paths
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import RunFailed, summarize
    from forecasting.ui.overview import attempt_statuses, render

    config = seeded(tmp_path, synthetic_sales)
    month = pd.Period("2024-12", "M")
    published = pipeline.run_month(str(month), "scheduled__2025-01-01", config)
    attempt = paths.run_dir(config, month, published["extract"]["attempt"])
    before = _digests(attempt)
    assert "data_docs/index.html" in before and "publish.json" in before

    # The same run cleared and run again on sales that went bad since: a new attempt, which fails.
    bad = synthetic_sales.copy()
    bad.loc[bad.index[:4], "units"] = -1.0
    seed_source_database(config.source.database.url, bad, table=config.source.table)
    with pytest.raises(DataValidationError):
        retried = pipeline.extract(str(month), "scheduled__2025-01-01", config)
        pipeline.validate(str(month), retried["attempt"], config)

    assert _digests(attempt) == before  # snapshot, Data Docs and stage results untouched
    attempts = paths.runs_of(config, month)
    assert len(attempts) == 2 and attempts[0] == attempt
    failed = json.loads((attempts[1] / "validate.failed.json").read_text())
    assert failed["stage"] == "validate" and failed["permanent"] is True
    assert (attempts[1] / "data_docs" / "index.html").is_file()

    # The page and the summary of the month still show the published attempt...
    page = render(config)
    assert f"data-docs/2024-12/{attempt.name}/index.html" in page
    # (the page lists every attempt: the failed one as such, with its own report)
    statuses = {a.name: a.status for a in attempt_statuses(config)}
    assert statuses == {attempt.name: "published", attempts[1].name: "failed validation"}
    assert "Published" in summarize(config, str(month))
    # ...and the failed one is reported with every failed expectation when asked for.
    with pytest.raises(RunFailed) as failure:
        summarize(config, str(month), attempts[1].name)
    text = str(failure.value.code)
    assert text.startswith("Monthly forecast for 2024-12 FAILED in validate")
    assert "expect_column_values_to_be_between(units, min 0, finite): 4 unexpected of" in text
    assert "fails the same way again" in text


def test_the_summary_of_a_failed_validation_lists_every_failed_expectation(tmp_path, synthetic_sales):
    """make month used to print the failure's first line only."""
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import main

    bad = synthetic_sales.copy()
    bad.loc[bad.index[:3], "units"] = -2.0
    bad.loc[bad.index[3:5], "price"] = float("inf")
    bad = bad[pd.to_datetime(bad["month"]) != pd.Timestamp("2023-06-01")]  # a month missing
    config = seeded(tmp_path, bad)
    with pytest.raises(DataValidationError) as err:
        result = pipeline.extract("2024-12", "bad", config)
        pipeline.validate("2024-12", result["attempt"], config)
    expected = [f"{f['label']}: {f['details']}" for f in err.value.failures]
    assert len(expected) == 3

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORECAST_CONFIG", str(config.path))
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["2024-12", "--run-id", "bad"])
    assert status == 1
    printed = out.getvalue()
    assert "Validation of 2024-12 failed: the data has no sales in 2023-06 (a gap before 2024-12)." in printed
    assert "3 of" in printed and "expectations failed:" in printed
    for line in expected:
        assert f" - {line}" in printed, printed
    assert "Data Docs: " in printed


def test_a_horizon_the_data_cannot_label_is_refused_at_train(tmp_path):
    """The config allows horizon 4 with 60 months of history, but the source holds only 12:
    with 6 months held out and 3 for validation, training targets end in month 3 of 12, so no
    origin in the data is more than 2 months before one."""
    from forecasting.core.errors import DataError, is_permanent
    from forecasting.datasets.synthetic import generate_sales
    from forecasting.orchestration import pipeline

    sales = generate_sales(stores=3, items=8, months=12, end_month="2024-12", seed=3)
    config = seeded(tmp_path, sales, horizon=4)
    with pytest.raises(DataError) as err:
        pipeline.run_month("2024-12", "short", config)
    message = str(err.value)
    assert "no training row for horizon 3..4 (config horizon 4)" in message
    assert "the longest horizon it can train is 2" in message
    assert is_permanent(err.value)
    assert not list((config.data_dir / "runs").rglob("forecasts.parquet"))
