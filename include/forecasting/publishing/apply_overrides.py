"""The overrides in force at a publish, applied to its forecasts as the final layer.

Which are in force for the run of month M (docs/publishing.md#overrides): of each override_id
its newest version, if that is ``active`` (not withdrawn), not expired (``expires_on`` after the
run's date, M + 1's first day) and not over (its last month at or after M + 1, the run's first
forecast month). Each is then either

* **applied**: the forecasts of its entity, or of every entity of its level's group, in its
  months that the run forecast. An absolute value sets the entity's forecast, or the group's
  total; a percent scales; a delta adds (never below 0). A group's new total is spread over its
  entities in proportion to their forecasts (equally where they are all 0), so the levels stay
  the sums of the entities. Broader overrides apply first (the total, then larger groups,
  then smaller ones, then entities; the older first within each): a narrower one refines what
  a broader one set, and ``override_id`` names the last applied to a row. Or
* **refused**, with the reason, naming what it names that the run did not forecast: an entity,
  a level that is no level of the hierarchy, a group, or months of which the run forecast none.
  A refusal never stops the publish (a planner's typo must not hold back every forecast); it is
  recorded in ``<table>_override_outcomes`` and ``<table>_runs``, the run's summary and the
  Forecasts view, and raised as an alert.

``final_p10``/``final_p90``: the band moves with the forecast, scaled by final / prediction
(shifted by final - prediction where the prediction is 0), never below 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecasting.data.panel import key_text
from forecasting.publishing.overrides_table import ABSOLUTE, ACTIVE, APPLIED, PERCENT, REFUSED

TOTAL, SEPARATOR = "total", ","  # as forecasting.modeling.hierarchy names levels and groups


def months(values: pd.Series | Sequence) -> pd.PeriodIndex:
    """Forecast months (dates, timestamps or text) as monthly periods."""
    return pd.PeriodIndex(pd.to_datetime(pd.Series(values)), freq="M")


def month_of(value: object) -> pd.Period:
    """A month an override names (a date or YYYY-MM...): any year, 9999 too (no timestamps)."""
    return pd.Period(str(value)[:7], "M")


def span(first: pd.Period, last: pd.Period) -> str:
    return str(first) if first == last else f"{first}..{last}"


def in_force(overrides: pd.DataFrame, run_month: pd.Period) -> pd.DataFrame:
    """Of ``overrides`` (rows of ``<table>_overrides``), those the run of ``run_month`` applies or
    refuses: each id's newest version, active, not expired and not over."""
    if overrides.empty:
        return overrides
    newest = overrides.sort_values("version").drop_duplicates("override_id", keep="last")
    run_date = str((run_month + 1).to_timestamp().date())  # ISO dates compare as text
    expired = [not pd.isna(e) and str(e)[:10] <= run_date for e in newest["expires_on"]]
    over = [month_of(m) < run_month + 1 for m in newest["last_month"]]
    kept = (
        (newest["status"] == ACTIVE).to_numpy() & ~np.array(expired, dtype=bool) & ~np.array(over, dtype=bool)
    )
    return newest[kept].reset_index(drop=True)


def target_name(row: pd.Series, keys: Sequence[str]) -> str:
    """What an override adjusts, as a planner names it: ``store_id 3, item_id 7`` or ``region North``."""
    level = row.get("level")
    if level is None or pd.isna(level):
        return ", ".join(f"{k} {key_text(pd.Series([row[k]]))[0]}" for k in keys)
    return "the total" if level == TOTAL else f"{level} {row['level_key']}"


@dataclass
class Applied:
    """The forecasts with ``final``, ``final_p10``, ``final_p90`` and ``override_id``; what became
    of each override in force (rows of ``<table>_override_outcomes`` without run_month)."""

    frame: pd.DataFrame
    outcomes: list[dict] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(o["outcome"] == outcome for o in self.outcomes)

    @property
    def refusals(self) -> list[str]:
        return [f"{o['override_id']}: {o['message']}" for o in self.outcomes if o["outcome"] == REFUSED]


def _row_groups(frame: pd.DataFrame, keys: Sequence[str], members: pd.DataFrame | None) -> pd.DataFrame:
    """Per forecast row: its entity columns as text and (with ``members``) its level columns."""
    rows = pd.DataFrame({k: key_text(frame[k]) for k in keys})
    if members is None:
        return rows
    extra = [c for c in members.columns if c not in keys]
    return rows.merge(members[[*keys, *extra]].astype(str), on=list(keys), how="left")


class _Groups:
    """The forecast rows of each entity and of each level's group (positions), indexed once."""

    def __init__(self, rows: pd.DataFrame, keys: Sequence[str], levels: Sequence[Sequence[str]]) -> None:
        self.rows, self.keys = rows, list(keys)
        self.levels = {SEPARATOR.join(columns) or TOTAL: list(columns) for columns in levels}
        self._index: dict[str, dict[str, np.ndarray]] = {}

    def _positions(self, columns: list[str]) -> dict[str, np.ndarray]:
        name = SEPARATOR.join(columns)
        if name not in self._index:
            found = self.rows.groupby(columns, sort=False).indices if len(self.rows) else {}
            self._index[name] = {
                SEPARATOR.join(k if isinstance(k, tuple) else (k,)): np.asarray(v) for k, v in found.items()
            }
        return self._index[name]

    def target(self, override: pd.Series) -> tuple[np.ndarray | None, str]:
        """The rows an override's entity or group covers (any month), or None and why not."""
        level = override.get("level")
        empty = np.zeros(0, dtype=np.int64)
        if level is None or pd.isna(level):
            entity = SEPARATOR.join(key_text(pd.Series([override[k]]))[0] for k in self.keys)
            return self._positions(self.keys).get(entity, empty), ""
        if level not in self.levels:
            known = ", ".join(self.levels) or "none: the config has no hierarchy"
            return None, f"level {level!r} is no level of the hierarchy (its levels: {known})"
        columns = self.levels[level]
        if not columns:
            return np.arange(len(self.rows)), ""
        if not set(columns) <= set(self.rows.columns):
            return None, f"level {level}: the entities' {level} is not known to this publish"
        return self._positions(columns).get(str(override["level_key"]), empty), ""


def group_keys(rows: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each row's group of the level of ``columns``, as <table>_levels keys it ('North,Food')."""
    if not columns:
        return np.full(len(rows), TOTAL, dtype=object)
    key = rows[columns[0]].astype(str)
    for column in columns[1:]:  # vectorised: a row-wise join costs seconds at 100,000 series
        key = key + SEPARATOR + rows[column].astype(str)
    return key.to_numpy(dtype=object)


def _order(overrides: pd.DataFrame, sizes: dict[str, int]) -> pd.DataFrame:
    """Broadest first: levels by the rows they cover, then entities; the older first within each."""
    if overrides.empty:
        return overrides
    order = pd.DataFrame(
        {
            "entity": overrides["level"].isna().to_numpy(),
            "size": [-sizes.get(i, 0) for i in overrides["override_id"]],
            "created": pd.to_datetime(overrides["created_at"], utc=True).to_numpy(),
            "id": overrides["override_id"].to_numpy(),
        }
    )
    return overrides.iloc[order.sort_values(["entity", "size", "created", "id"]).index.to_numpy()]


def _adjust(final: np.ndarray, rows: np.ndarray, month: np.ndarray, kind: str, value: float) -> None:
    """Set each month's total of ``final[rows]`` (positions) after ``kind`` and ``value``, spread
    in proportion."""
    for m in np.unique(month[rows]):
        at = rows[month[rows] == m]
        total = final[at].sum()
        if kind == ABSOLUTE:
            wanted = value
        elif kind == PERCENT:
            wanted = total * (1 + value / 100)
        else:
            wanted = max(total + value, 0.0)
        final[at] = wanted * (final[at] / total) if total > 0 else wanted / len(at)  # its share


def apply_overrides(
    frame: pd.DataFrame,
    overrides: pd.DataFrame,
    keys: Sequence[str],
    members: pd.DataFrame | None = None,
    levels: Sequence[Sequence[str]] = (),
) -> Applied:
    """``frame`` (a run's forecasts) with the overrides in force (``in_force``) applied. ``members``:
    each entity's level columns as text (the entity columns as text too), for level overrides."""
    out = frame.copy()
    final = out["prediction"].to_numpy(dtype=float).copy()
    applied_by = np.full(len(out), None, dtype=object)
    month = months(out["forecast_month"]).asi8
    run_months = months(out["forecast_month"])
    first_run, last_run = (run_months.min(), run_months.max()) if len(out) else (None, None)
    if overrides.empty:  # the usual month: final is the prediction, nothing to index
        out["final"], out["override_id"] = final, applied_by
        out["final_p10"], out["final_p90"] = moved_band(
            out["prediction"], final, out.get("p10"), out.get("p90")
        )
        return Applied(out)
    groups = _Groups(_row_groups(out, keys, members), keys, levels)
    targets: dict[str, np.ndarray] = {}  # positions of the rows each override adjusts
    outcomes: list[dict] = []
    for _, override in overrides.iterrows():
        mask, why = groups.target(override)
        name = target_name(override, keys)
        first, last = month_of(override["first_month"]), month_of(override["last_month"])
        if mask is not None and not len(mask):
            why = f"{name} has no forecast in this run"
        elif mask is not None:
            mask = mask[(month[mask] >= first.ordinal) & (month[mask] <= last.ordinal)]
            if not len(mask):
                why = (
                    f"forecast months {span(first, last)} of {name} are not among this run's "
                    f"({span(first_run, last_run)})"
                )
        if why or mask is None:
            outcomes.append(_outcome(override, REFUSED, 0, why))
        else:
            targets[override["override_id"]] = mask
    for _, override in _order(overrides, {i: len(m) for i, m in targets.items()}).iterrows():
        mask = targets.get(override["override_id"])
        if mask is None:
            continue
        before = final[mask]
        _adjust(final, mask, month, override["kind"], float(override["value"]))
        if not np.isfinite(final[mask]).all():  # NaN or infinity, written through SQL
            final[mask] = before
            why = f"value {override['value']} does not make a finite forecast"
            outcomes.append(_outcome(override, REFUSED, 0, why))
            continue
        applied_by[mask] = override["override_id"]
        first, last = month_of(override["first_month"]), month_of(override["last_month"])
        what = (
            f"{override['kind']} {override['value']:g} on {target_name(override, keys)}, {span(first, last)}"
        )
        outcomes.append(_outcome(override, APPLIED, len(mask), what))
    out["final"] = final
    out["final_p10"], out["final_p90"] = moved_band(out["prediction"], final, out.get("p10"), out.get("p90"))
    out["override_id"] = applied_by
    return Applied(out, sorted(outcomes, key=lambda o: o["override_id"]))


def _outcome(override: pd.Series, outcome: str, forecasts: int, message: str) -> dict:
    return {
        "override_id": override["override_id"],
        "version": int(override["version"]),
        "outcome": outcome,
        "forecasts": forecasts,
        "message": message,
    }


def moved_band(
    prediction: pd.Series, final: np.ndarray, p10: pd.Series | None, p90: pd.Series | None
) -> tuple[np.ndarray, np.ndarray]:
    """p10 and p90 moved with the forecast: scaled by final / prediction (shifted by the change
    where the prediction is 0), never below 0; NaN where there is no band."""
    base = prediction.to_numpy(dtype=float)
    ratio = np.divide(final, base, out=np.ones_like(base), where=base > 0)

    def move(bound: pd.Series | None) -> np.ndarray:
        if bound is None:
            return np.full(len(base), np.nan)
        values = pd.to_numeric(bound, errors="coerce").to_numpy(dtype=float)
        return np.maximum(np.where(base > 0, values * ratio, values + (final - base)), 0.0)

    return move(p10), move(p90)


def level_finals(
    levels: pd.DataFrame, applied: pd.DataFrame, keys: Sequence[str], members: pd.DataFrame | None
) -> pd.DataFrame:
    """``levels`` (the run's level forecasts) with ``final`` = prediction + the sum of the changes
    its entities' forecasts got (so a level's final is its entities' finals' sum), and the band
    moved as the entities' is. ``members``: each entity's level columns (None: levels of entity
    columns only, or no forecast changed)."""
    change = applied["final"].to_numpy(dtype=float) - applied["prediction"].to_numpy(dtype=float)
    changed = applied[change != 0]  # the others add nothing: a few rows, not every forecast
    rows = _row_groups(changed, keys, members)
    rows["forecast_month"] = months(changed["forecast_month"]).astype(str)
    rows["change"] = change[change != 0]
    parts = []
    for level in levels["level"].unique():
        columns = [] if level == TOTAL else level.split(SEPARATOR)
        if not set(columns) <= set(rows.columns):
            if len(rows):
                raise ValueError(f"level {level}'s final figures need each entity's {level} (members)")
            columns = []  # nothing changed: every level's final is its prediction
        key = group_keys(rows, columns)
        summed = rows.assign(level=level, level_key=key).groupby(["level", "level_key", "forecast_month"])
        parts.append(summed["change"].sum().reset_index())
    changes = pd.concat(parts, ignore_index=True)
    out = levels.copy()
    at = out[["level", "level_key"]].assign(forecast_month=months(out["forecast_month"]).astype(str))
    found = at.merge(changes, on=["level", "level_key", "forecast_month"], how="left")["change"]
    out["final"] = out["prediction"].to_numpy(dtype=float) + found.fillna(0.0).to_numpy()
    out["final"] = np.maximum(out["final"], 0.0)  # float error of a sum of non-negative finals
    out["final_p10"], out["final_p90"] = moved_band(
        out["prediction"], out["final"].to_numpy(), out.get("p10"), out.get("p90")
    )
    return out
