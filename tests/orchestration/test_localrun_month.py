"""make month's argument: refused before any Airflow process starts when no run could use it."""

from __future__ import annotations

import pytest

from forecasting.orchestration import localrun


@pytest.mark.parametrize("month", ["2999-01", "0000-01", "2024-13", "soon", "2024-1"])
def test_a_month_no_run_can_work_on_is_refused_at_once(month, capsys):
    with pytest.raises(SystemExit) as exit_:
        localrun.main([month])
    assert exit_.value.code == 2
    assert "Running" not in capsys.readouterr().out  # nothing started
