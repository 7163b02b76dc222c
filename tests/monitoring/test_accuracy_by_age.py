"""Realised accuracy by age bucket: new items' published forecasts scored apart
(``segment_column`` history_months). Hand-made: the six entities of test_monitoring's sales plus
store 3 / item 1, which first sold in 2024-09. The database round trip of these rows is
test_monitoring's (SQLite and PostgreSQL)."""

from __future__ import annotations

import pandas as pd
import pytest

from forecasting.core.config import load_config
from forecasting.monitoring.accuracy import ALL, score
from tests.helpers.config import demo_config_dict, write_config
from tests.monitoring.test_monitoring import forecasts, sales


def test_a_new_item_is_scored_in_its_age_bucket_as_of_the_run_month(tmp_path):
    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    launched = pd.DataFrame(
        {
            "store_id": 3,
            "item_id": 1,
            "month": [pd.Timestamp(f"2024-{m:02d}-01") for m in (9, 10, 11, 12)],
            "units": 5.0,
            "price": 2.0,
            "promo": 0,
            "store_size": "small",
            "region": "north",
            "category": "snacks",
        }
    )
    snapshot = pd.concat([sales(), launched], ignore_index=True)
    # The October run's horizon 1 for November: the six established entities over by 0.5, the
    # new item (2 months of history as of October) forecast 7 for its 5.
    published = forecasts("2024-10", 0.5)
    new = published.iloc[:1].assign(store_id=3, item_id=1, prediction=7.0)
    published = pd.concat([published, new], ignore_index=True)
    published = published[published["horizon"] == 1].assign(run_month="2024-10-01", model_version="m")

    scores = score(published, snapshot, config, pd.Period("2024-11", "M"))
    rows = scores.accuracy.set_index(["segment_column", "segment"])
    assert set(rows.loc["history_months"].index) == {"1-2", "6-23"}
    young, older = rows.loc[("history_months", "1-2")], rows.loc[("history_months", "6-23")]
    assert (young["forecasts"], young["actual_sum"], young["wape"]) == (1, 5.0, pytest.approx(2 / 5))
    # Its naive forecasts from its two months (5 and 5): last value and mean of 3 exact.
    assert (young["last_value_wape"], young["mean_3_wape"]) == (0.0, 0.0)
    assert (older["forecasts"], older["actual_sum"], older["wape"]) == (6, 234.0, pytest.approx(3 / 234))
    everyone = rows.loc[(ALL, ALL)]
    assert (everyone["forecasts"], everyone["actual_sum"]) == (7, 239.0)
