"""Downloads of a list of the explorer by level (forecasting.ui.levels.selection): a level's
groups, a group's members or the filtered entities, as CSV or Parquet. The rows are the list's
own, made by the same function from the same query string, in the same order: the page's
``limit`` rows, or (its *whole list* links) every matching row up to EXPORT_LIMIT."""

from __future__ import annotations

import io

from forecasting.core.config import Config
from forecasting.ui.levels import EXPORT_LIMIT, BadSelection, selection
from forecasting.ui.plan_data import plan_data

FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def export(config: Config, given: dict[str, str], kind: str) -> tuple[str, str, bytes] | None:
    """(file name, media type, content) of the list ``given`` asks for; None: nothing published.
    Raises BadSelection for a query string the explorer cannot read."""
    if kind not in FORMATS:
        raise BadSelection(f"download as one of {', '.join(FORMATS)}")
    data = plan_data(config)
    if data is None:
        return None
    chosen = selection(data, given, limit_cap=EXPORT_LIMIT)
    frame = chosen.rows.assign(run_month=data.latest_run, previous_run_month=data.previous_run)
    if kind == "csv":
        content = frame.to_csv(index=False).encode()
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        content = buffer.getvalue()
    return f"{chosen.name()}.{kind}", FORMATS[kind], content
