"""Drift: has month M's data moved away from what the forecasting model learned from?

The *reference* is the training window of the model that made M's published forecasts (the
challenger M's run trained when the gate published a baseline): the feature rows of its training
origins, read from Feast's offline table (one parquet file per month, as train retrieved them
point in time), and the target in its training target months, both up to M-1 and of its last
``monitoring.reference_months`` months (default 12: every season once, and not years of trend:
against a whole 4-year window, prices that follow inflation would drift every month). The *scoring
rows* are the feature rows of M for the entities active in M (what predict scored), and the
target is M's actuals. Per feature (but ``month_of_year`` and ``history_months``, which describe
the calendar and the data's age, not demand) and for the target, ``<table>_drift`` gets:

* ``psi``: the population stability index, sum over bins of (q - p) * ln(q / p), with p and q the
  shares of the reference and scoring rows in each bin. The bins are the reference's
  ``monitoring.psi_bins`` quantiles (fewer where values tie), plus one for missing values; a text
  attribute has one bin per category. An empty bin counts as a share of 0.0001.
* ``ks_statistic`` and ``ks_pvalue``: the two-sample Kolmogorov-Smirnov test (scipy) on the values
  that are not missing (none for text attributes).
* ``drifted``: PSI at least ``monitoring.psi_threshold`` and the KS test rejecting "same
  distribution" at ``monitoring.ks_alpha`` (with thousands of rows a trivial difference is
  "significant", and with a hundred PSI is noisy: a shift must be both large and real).

And two rows of entity shares: ``new_entities`` (active in M without any row before M in the
snapshot, over the entities active in M) and ``vanished_entities`` (a row in M-1, none in M, over
those of M-1), drifted at ``monitoring.entity_share_threshold``.

Each side is compared on at most ``monitoring.drift_sample_rows`` rows (a uniform sample drawn
with ``model.seed``). Recording M again replaces M's rows in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config, MonitoringConfig
from forecasting.core.db import make_engine
from forecasting.core.errors import DataError
from forecasting.core.months import label_index, month_from_index, month_index, month_start
from forecasting.data.panel import Panel, build_panel
from forecasting.features.catalogue import feature_names
from forecasting.modeling.forecaster import model_version, parse
from forecasting.monitoring.accuracy import create_missing, insert_rows, plain, write_transaction
from forecasting.publishing import tables

log = logging.getLogger(__name__)

# Features about the calendar and the age of the data, not demand: month_of_year has one value in
# any month, and history_months (capped at the lookback) is small in a window's first months,
# when every entity is new to the data. New entities are measured directly instead.
BOOKKEEPING_FEATURES = ("month_of_year", "history_months")
NEW_ENTITIES, VANISHED_ENTITIES = "new_entities", "vanished_entities"
EMPTY_SHARE = 1e-4  # the share an empty bin counts as (no log of 0)
COLUMNS = [
    "run_month",
    "kind",
    "feature",
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "share",
    "entities",
    "reference_rows",
    "scoring_rows",
    "reference_first_month",
    "reference_last_month",
    "threshold",
    "drifted",
    "model_version",
]


def drift_table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.DRIFT)


def drift_table(config: Config) -> sa.Table:
    """``<table>_drift`` (declared in forecasting.publishing.tables)."""
    return tables.for_config(config).drift


# --- the measures ------------------------------------------------------------------------------


def psi_numeric(reference: np.ndarray, scoring: np.ndarray, bins: int) -> float:
    """PSI over the reference's quantile bins, plus a bin for missing values (NaN)."""
    ref_missing, score_missing = np.isnan(reference), np.isnan(scoring)
    known = reference[~ref_missing]
    cuts = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(known, cuts)) if known.size else np.zeros(0)
    # Bin i holds edges[i-1] < x <= edges[i]: ties at an edge (many zeros) stay in one bin.
    ref_counts = np.bincount(np.searchsorted(edges, known, side="left"), minlength=edges.size + 1)
    score_counts = np.bincount(
        np.searchsorted(edges, scoring[~score_missing], side="left"), minlength=edges.size + 1
    )
    return _psi(np.append(ref_counts, ref_missing.sum()), np.append(score_counts, score_missing.sum()))


def psi_categorical(reference: pd.Series, scoring: pd.Series) -> float:
    """PSI over the reference's categories, one bin for others and one for missing values."""
    categories = pd.Index(reference.dropna().astype(str).unique())

    def counts(values: pd.Series) -> np.ndarray:
        missing = values.isna().to_numpy()
        codes = categories.get_indexer(values[~missing].astype(str))  # -1: not in the reference
        found = np.bincount(codes[codes >= 0], minlength=len(categories))
        return np.concatenate([found, [(codes < 0).sum(), missing.sum()]])

    return _psi(counts(reference), counts(scoring))


def _psi(reference_counts: np.ndarray, scoring_counts: np.ndarray) -> float:
    if reference_counts.sum() == 0 or scoring_counts.sum() == 0:
        return float("nan")
    p = reference_counts / reference_counts.sum()
    q = scoring_counts / scoring_counts.sum()
    both_empty = (p == 0) & (q == 0)
    p, q = np.maximum(p, EMPTY_SHARE), np.maximum(q, EMPTY_SHARE)
    return float(np.sum(np.where(both_empty, 0.0, (q - p) * np.log(q / p))))


def ks_test(reference: np.ndarray, scoring: np.ndarray) -> tuple[float, float]:
    """The two-sample KS statistic and p-value on the values that are not missing (NaN if a side
    has none)."""
    from scipy.stats import ks_2samp

    a, b = reference[~np.isnan(reference)], scoring[~np.isnan(scoring)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def compare(
    name: str, kind: str, reference: pd.Series, scoring: pd.Series, mon: MonitoringConfig
) -> dict[str, object]:
    """One row of the drift table: PSI, KS and the flag of one column."""
    if pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(scoring):
        ref, score = reference.to_numpy(dtype=float), scoring.to_numpy(dtype=float)
        psi = psi_numeric(ref, score, mon.psi_bins)
        statistic, pvalue = ks_test(ref, score)
        drifted = psi >= mon.psi_threshold and pvalue < mon.ks_alpha
    else:  # a text attribute: categories have no order to test
        psi, statistic, pvalue = psi_categorical(reference, scoring), float("nan"), float("nan")
        drifted = psi >= mon.psi_threshold
    return {
        "kind": kind,
        "feature": name,
        "psi": psi,
        "ks_statistic": statistic,
        "ks_pvalue": pvalue,
        "reference_rows": len(reference),
        "scoring_rows": len(scoring),
        "threshold": mon.psi_threshold,
        "drifted": bool(drifted),
    }


# --- what is compared ------------------------------------------------------------------------


@dataclass
class Window:
    """The reference: the training window of ``model_version``, up to M-1 (month indexes)."""

    model_version: str
    first_origin: int
    last_origin: int
    first_target: int
    last_target: int


def training_window(config: Config, month: pd.Period, published: dict) -> Window:
    """The training window of the model whose forecasts M's run published (``published``: its
    publish.json), or of the challenger it trained when a baseline was published."""
    # A baseline's run: its challenger's window; a blend's: its model's.
    text = published.get("model_version")
    version = (model_version(parse(text)) if text else None) or published.get("challenger") or ""
    path = paths.model_metadata(paths.model_dir(config, version))
    if not version or not path.is_file():
        raise DataError(
            f"no model metadata at {path}: the training window that drift compares {month} with is unknown"
        )
    window = paths.read_json(path)["training_window"]
    m = month_index(month)
    first_origin, first_target, last_target = (
        int(label_index([window[k]])[0]) for k in ("first_origin", "first_target_month", "last_target_month")
    )
    # Its origins precede their targets (the latest is at most M-1); its targets may include M,
    # whose actuals are what is compared with them.
    last_origin, last_target = min(last_target - 1, m - 1), min(last_target, m - 1)
    recent = config.monitoring.reference_months
    if recent is not None:
        first_origin = max(first_origin, last_origin - recent + 1)
        first_target = max(first_target, last_target - recent + 1)
    return Window(version, first_origin, last_origin, first_target, last_target)


def _sample(n: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform sample of about ``budget`` of n rows (a mask; all of them if n is within budget)."""
    if n <= budget:
        return np.ones(n, dtype=bool)
    return rng.random(n) < budget / n


def reference_features(
    config: Config, window: Window, columns: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """The feature rows of the window's origins, from the offline table's monthly files."""
    import pyarrow.parquet as pq

    files = [
        paths.feature_file(config, month_from_index(t))
        for t in range(window.first_origin, window.last_origin + 1)
    ]
    missing = [f.name for f in files if not f.is_file()]
    if missing or not files:
        raise DataError(
            f"the offline feature table {paths.feature_table(config)} lacks the training window's months "
            f"{', '.join(missing) or '(none in the window)'}: run monthly_forecast for the model's month first"
        )
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    budget = config.monitoring.drift_sample_rows
    parts = []
    for f in files:
        frame = pq.read_table(f, columns=columns).to_pandas()
        keep = np.ones(len(frame), dtype=bool) if total <= budget else rng.random(len(frame)) < budget / total
        parts.append(frame[keep])
    return pd.concat(parts, ignore_index=True)


def scoring_features(
    config: Config, month: pd.Period, panel: Panel, columns: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """The feature rows of M of the entities active in M (the rows predict scored)."""
    path = paths.feature_file(config, month)
    if not path.is_file():
        raise DataError(f"no feature file {path}: run monthly_forecast for {month} first")
    keys = config.source.entity_columns
    frame = pd.read_parquet(path, columns=[*keys, *columns])
    active = panel.keys[panel.observed[:, panel.column(month_index(month))]]
    frame = frame.astype({k: str for k in keys}).merge(active, on=keys, how="inner")
    return frame[columns][_sample(len(frame), config.monitoring.drift_sample_rows, rng)].reset_index(
        drop=True
    )


def target_values(
    mon: MonitoringConfig, panel: Panel, window: Window, month: pd.Period, rng: np.random.Generator
) -> tuple[pd.Series, pd.Series]:
    """The target in the window's target months (inside each entity's span, a month without a
    row sold 0, as the training labels have it) and in M for the entities active in M."""
    budget = mon.drift_sample_rows
    first = max(panel.column(window.first_target), 0)
    last = panel.column(window.last_target)
    in_window = panel.sales[:, first : last + 1]
    reference = in_window[~np.isnan(in_window)]
    col = panel.column(month_index(month))
    scoring = panel.sales[panel.observed[:, col], col]
    return (
        pd.Series(reference[_sample(len(reference), budget, rng)]),
        pd.Series(scoring[_sample(len(scoring), budget, rng)]),
    )


def entity_shares(panel: Panel, month: pd.Period, mon: MonitoringConfig) -> list[dict[str, object]]:
    """The rows of new entities (no row before M) and vanished ones (a row in M-1, none in M)."""
    col = panel.column(month_index(month))
    active = panel.observed[:, col]
    before = panel.observed[:, col - 1] if col >= 1 else np.zeros_like(active)
    new = active & (panel.span_first == col)
    vanished = before & ~active
    threshold = mon.entity_share_threshold
    rows = []
    for name, count, of in (
        (NEW_ENTITIES, new.sum(), active.sum()),
        (VANISHED_ENTITIES, vanished.sum(), before.sum()),
    ):
        share = count / of if of else 0.0
        rows.append(
            {
                "kind": "entities",
                "feature": name,
                "share": float(share),
                "entities": int(count),
                "reference_rows": int(before.sum()),
                "scoring_rows": int(active.sum()),
                "threshold": threshold,
                "drifted": bool(share >= threshold and count > 0),
            }
        )
    return rows


@dataclass
class DriftReport:
    month: str
    model_version: str
    rows: pd.DataFrame  # one per feature, the target and the two entity shares (COLUMNS)
    table: str

    @property
    def drifted(self) -> list[str]:
        return self.rows.loc[self.rows["drifted"], "feature"].tolist()

    def records(self) -> list[dict]:
        """The rows, JSON-ready (dates as YYYY-MM)."""
        out = []
        for record in self.rows.to_dict(orient="records"):
            row = {c: plain(v) for c, v in record.items()}
            for c in ("run_month", "reference_first_month", "reference_last_month"):
                row[c] = None if record[c] is None or pd.isna(record[c]) else str(record[c])[:7]
            out.append(row)
        return out


def detect_drift(snapshot: pd.DataFrame, config: Config, month: pd.Period, published: dict) -> DriftReport:
    """Compare M's scoring rows and actuals with the training window of M's published forecaster
    (``published``: M's publish.json), and M's entities with M-1's."""
    rng = np.random.default_rng(config.model.seed)
    window = training_window(config, month, published)
    panel = build_panel(snapshot, config, sales_only=True)
    col = panel.column(month_index(month))
    if not (0 <= col < panel.months and panel.observed[:, col].any()):
        raise DataError(f"the snapshot has no rows in {month}: nothing to compare")
    features = [f for f in feature_names(config) if f not in BOOKKEEPING_FEATURES]
    reference = reference_features(config, window, features, rng)
    scoring = scoring_features(config, month, panel, features, rng)
    rows = []
    for name in features:
        row = compare(name, "feature", reference[name], scoring[name], config.monitoring)
        rows.append(
            {**row, "reference_first_month": window.first_origin, "reference_last_month": window.last_origin}
        )
    target_reference, target_scoring = target_values(config.monitoring, panel, window, month, rng)
    row = compare(config.source.target_column, "target", target_reference, target_scoring, config.monitoring)
    rows.append(
        {**row, "reference_first_month": window.first_target, "reference_last_month": window.last_target}
    )
    rows += entity_shares(panel, month, config.monitoring)

    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    frame["run_month"] = month_start(month).date()
    for c in ("reference_first_month", "reference_last_month"):
        frame[c] = [None if pd.isna(v) else month_start(month_from_index(int(v))).date() for v in frame[c]]
    frame["model_version"] = window.model_version
    frame["drifted"] = frame["drifted"].astype(bool)
    return DriftReport(str(month), window.model_version, frame, drift_table_name(config))


def record_drift(
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    published: dict,
    *,
    run_id: str | None = None,
    computed_at: datetime | None = None,
) -> DriftReport:
    """``detect_drift``, then M's rows of ``<table>_drift`` replaced by its rows in one transaction."""
    report = detect_drift(snapshot, config, month, published)
    table = drift_table(config)
    engine = make_engine(config.predictions.database)
    try:
        create_missing(engine, lambda conn: tables.create(conn, table))
        with write_transaction(engine, table) as conn:
            conn.execute(sa.delete(table).where(table.c.run_month == month_start(month).date()))
            insert_rows(
                conn, table, report.rows.assign(run_id=run_id, computed_at=computed_at or datetime.now(UTC))
            )
    finally:
        engine.dispose()
    flagged = report.rows[report.rows["drifted"]]
    log.info(
        "Drift of %s against the training window of %s: %s",
        month,
        report.model_version,
        "; ".join(
            f"{r.feature} (PSI {r.psi:.3f})" if r.kind != "entities" else f"{r.feature} ({r.share:.1%})"
            for r in flagged.itertuples()
        )
        or "nothing drifted",
    )
    return report
