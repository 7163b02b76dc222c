"""A month the data cannot give fails validation with a plain sentence first, in the three places a
person reads it: the task's log (the exception the task fails with), `make month`'s summary and
the overview's row for the attempt; the expectations that failed follow. Before, all three led
with GX's name for the check, `expect_column_distinct_values_to_contain_set(month__yyyy_mm):
missing 2024-12` (issue 23)."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest

from tests.helpers.config import demo_config_dict, write_config

# The data: 2023-12 .. 2024-11.
FIRST, LAST = "2023-12", "2024-11"


@pytest.fixture
def config(tmp_path, monkeypatch):
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import generate_sales, seed_source_database

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    sales = generate_sales(stores=2, items=3, months=12, end_month=LAST, seed=1)
    seed_source_database(config.source.database.url, sales, table=config.source.table)
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    return config


def failed_month(config, month: str) -> tuple[str, str, str]:
    """(the task's failure, the summary `make month` prints, the overview's message) for month."""
    from airflow.sdk.exceptions import AirflowFailException

    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import main as summary
    from forecasting.orchestration.tasks import run_stage
    from forecasting.ui.overview import attempt_statuses

    run_id = f"manual__{month}"
    attempt = pipeline.extract(month, run_id, config)["attempt"]
    with pytest.raises(AirflowFailException) as failed:
        run_stage("validate", month, attempt)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert summary([month, "--run-id", run_id]) == 1
    (status,) = [s for s in attempt_statuses(config, {}) if s.month == month]
    assert status.status == "failed validation"
    return str(failed.value), out.getvalue(), status.message


@pytest.mark.parametrize(
    "month, plainly",
    [
        ("2024-12", f"the data ends in {LAST}; 2024-12 has no sales yet"),
        ("2025-02", f"the data ends in {LAST}; 2024-12 to 2025-02 have no sales yet"),
        ("2023-11", "the source has no sales in or before 2023-11; the data starts after 2023-11"),
    ],
)
def test_a_month_outside_the_data_fails_saying_so_plainly_first(config, month, plainly):
    task_log, printed, overview = failed_month(config, month)
    first = f"Validation of {month} failed: {plainly}."
    assert task_log.splitlines()[0] == f"DataValidationError: {first}", task_log
    assert any(line.strip() == first for line in printed.splitlines()), printed
    assert overview == first
    # Then the expectations, for whoever wants GX's words.
    assert "expect_column_distinct_values_to_contain_set(month__yyyy_mm): missing" in task_log
    assert " - expect_column_distinct_values_to_contain_set(month__yyyy_mm): missing" in printed


def test_a_month_missing_inside_the_data_is_named_as_a_gap(tmp_path):
    from forecasting.data.validate import month_keys, months_missing_reason

    months = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-04-01", "2024-06-01"])
    keys = month_keys(pd.DataFrame({"month": months}), "month")
    assert months_missing_reason(keys, pd.Period("2024-06", "M")) == (
        "the data has no sales in 2024-03, 2024-05 (a gap before 2024-06)"
    )
    assert months_missing_reason(keys, pd.Period("2024-02", "M")) == ""  # nothing missing up to M
