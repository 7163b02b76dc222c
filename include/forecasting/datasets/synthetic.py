"""Seeded, realistic store x item monthly sales for the demo and the tests.

``generate_sales`` builds one row per store, item and month in which the item is listed
in that store; ``seed_source_database`` writes such a frame into a SQL table, replacing
what was there. As a script it does both::

    python -m forecasting.datasets.synthetic --url sqlite:///data/demo/source.db \\
        --stores 10 --items 20 --months 48 --end-month 2026-10 --seed 7

How the numbers come about (per store s, item i, month t, all on the log scale unless said):

* level: item base (lognormal, spread over two orders of magnitude) x store effect x store
  size (small/medium/large) x a store-item affinity;
* trend: a per-item growth rate (some items grow, some decline) plus a small store-item part;
* yearly seasonality whose shape and strength depend on the category (beverages and frozen
  peak in summer, snacks and dairy in December, household in spring), scaled per item and,
  for the summer part, per region;
* price: a chain-wide regular price per item that follows inflation plus occasional steps,
  a small store/region price level, and a discount in promotion months; units respond to
  the real price with elasticity 1.5-2.5;
* promotions in ~15% of months (chain campaigns most stores join, plus local ones), with a
  lift beyond the price effect and a small dip the month after (pantry loading);
* noise: a store-item AR(1) and an item-wide AR(1) (persistent shocks), plus independent noise;
* the count is Poisson around that mean, so slow items have zero months;
* ~15% of items launch mid-history (rolled out to stores over 0-2 months, ramping up over a
  few months) and ~10% are discontinued before the end (running down in their last months);
  each store carries most, not all, items (large stores more).

Options add effects whose truth a test knows (off by default: the frame is then the same as
without them):

* ``intermittent_share``: that share of the items sell only in some months (each month with a
  demand probability of 15-45% per item, their ids in ``frame.attrs["intermittent_items"]``):
  intermittent or lumpy demand (forecasting.features.demand);
* ``holiday_effect``: units scale with the month's trading days (weekdays that are not public
  holidays of ``country``, ``forecasting.core.calendar``) to the power ``holiday_effect``, relative
  to the mean month: a month that loses a trading day to a holiday sells less.

Everything comes from one ``numpy.random.default_rng(seed)``: a seed and the sizes fix the frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.months import month_of, month_range
from forecasting.datasets.seeding import replacing_engine
from forecasting.datasets.synthetic_plans import (
    generate_plans,
    generate_scenarios,
    seed_plans_table,
    seed_scenarios_table,
)

COLUMNS = ["store_id", "item_id", "month", "units", "price", "promo", "store_size", "region", "category"]

STORE_SIZES = ("small", "medium", "large")
_SIZE_SHARE = np.array([0.35, 0.40, 0.25])
_SIZE_MULTIPLIER = np.array([0.55, 1.0, 1.7])
_SIZE_ASSORTMENT = np.array([0.80, 0.90, 0.97])  # chance a store of that size carries an item

REGIONS = ("north", "south", "east", "west")
_REGION_SUMMER = np.array([0.7, 1.35, 1.0, 0.9])  # how strongly summer peaks show per region
_REGION_PRICE = np.array([0.98, 0.96, 1.03, 1.05])

CATEGORIES = ("beverages", "snacks", "dairy", "frozen", "household")
_CATEGORY_SHARE = np.array([0.25, 0.25, 0.20, 0.15, 0.15])
_CATEGORY_PRICE = np.array([2.2, 3.0, 2.5, 4.5, 6.5])  # median regular price
# Seasonal components per category (log-scale amplitudes): summer wave, December peak, spring wave.
_CATEGORY_SUMMER = np.array([0.30, 0.06, -0.05, 0.28, 0.00])
_CATEGORY_DECEMBER = np.array([0.10, 0.32, 0.14, 0.04, 0.08])
_CATEGORY_SPRING = np.array([0.00, 0.00, 0.00, 0.00, 0.14])
_CATEGORY_PANTRY = np.array([1.0, 1.0, 0.3, 0.6, 1.2])  # how much demand a promo pulls forward


def generate_sales(
    stores: int = 10,
    items: int = 20,
    months: int = 48,
    end_month: str | pd.Period = "2024-12",
    seed: int = 7,
    *,
    intermittent_share: float = 0.0,
    holiday_effect: float = 0.0,
    country: str = "US",
    launch_share: float = 0.15,
    launch_within: int | None = None,
) -> pd.DataFrame:
    """Monthly sales of ``items`` items in ``stores`` stores over the ``months`` months ending
    with ``end_month``, one row per store, item and month in which the store lists the item.

    Columns: store_id, item_id (int), month (``datetime.date``, first of the month), units
    (float, whole, >= 0), price (float, 2 decimals), promo (int 0/1), store_size, region,
    category (str). Rows are sorted by store_id, item_id, month. Deterministic for a seed.
    ``intermittent_share``, ``holiday_effect``, ``country``, ``launch_share``, ``launch_within``: see
    the module's docstring.
    """
    if not 0.0 <= intermittent_share <= 1.0:
        raise ValueError(f"intermittent_share must be in [0, 1], got {intermittent_share!r}")
    if not 0.0 <= launch_share <= 0.9:
        raise ValueError(f"launch_share must be in [0, 0.9], got {launch_share!r}")
    if launch_within is not None and not 1 <= launch_within <= months - 2:
        raise ValueError(f"launch_within must be 1 to months - 2, got {launch_within!r}")
    for name, value in (("stores", stores), ("items", items), ("months", months)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    S, N, T = int(stores), int(items), int(months)
    last = month_of(end_month)
    periods = month_range(last - (T - 1), last)
    moy = np.asarray(periods.month) - 1  # 0 = January
    t = np.arange(T, dtype=float)
    # One generator, drawn from in a fixed order by the steps below: a seed fixes the frame.
    rng = np.random.default_rng(seed)

    size, region, category, base = _stores_and_items(rng, S, N)
    listed, ramp, rundown, launched = _listing(rng, size, S, N, T, launch_share, launch_within)
    trend, season = _trend_and_season(rng, category, region, S, N, T, t, moy)
    promo, price, real_ratio = _promotions_and_price(rng, category, region, S, N, T, t)

    elasticity = rng.uniform(1.5, 2.5, size=N)
    lift = rng.uniform(0.05, 0.30, size=N)
    dip = rng.uniform(0.04, 0.12, size=N) * _CATEGORY_PANTRY[category]
    promo &= listed
    after_promo = np.zeros_like(promo)
    after_promo[:, :, 1:] = promo[:, :, :-1] & ~promo[:, :, 1:]

    # --- noise -------------------------------------------------------------------------------
    ar_store = _ar1(rng, (S, N), T, rng.uniform(0.5, 0.85, size=(S, N)), 0.12)
    ar_item = _ar1(rng, (N,), T, rng.uniform(0.6, 0.9, size=N), 0.07)
    white = rng.normal(0.0, 0.10, size=(S, N, T))

    log_mu = (
        np.log(base)[:, :, None]
        + trend
        + season
        - elasticity[None, :, None] * np.log(real_ratio)
        + lift[None, :, None] * promo
        + np.log1p(-dip)[None, :, None] * after_promo
        + ar_store
        + ar_item[None]
        + white
    )
    mu = np.exp(log_mu) * ramp * rundown
    if holiday_effect:
        mu = mu * _trading_day_factor(periods, country, holiday_effect)[None, None, :]
    # Drawn from only when asked for, so the frame without the options is the same as before them.
    intermittent = rng.random(N) < intermittent_share if intermittent_share else np.zeros(N, dtype=bool)
    if intermittent.any():
        chance = rng.uniform(0.15, 0.45, size=N)
        occurs = rng.random((S, N, T)) < chance[None, :, None]
        mu = np.where(intermittent[None, :, None] & ~occurs, 0.0, mu)
    units = rng.poisson(mu).astype(float)

    # --- the frame -------------------------------------------------------------------------------
    s_idx, i_idx, t_idx = np.nonzero(listed)
    month_dates = np.array([date(p.year, p.month, 1) for p in periods], dtype=object)
    frame = pd.DataFrame(
        {
            "store_id": (s_idx + 1).astype(np.int64),
            "item_id": (i_idx + 1).astype(np.int64),
            "month": month_dates[t_idx],
            "units": units[s_idx, i_idx, t_idx],
            "price": np.round(price[s_idx, i_idx, t_idx], 2),
            "promo": promo[s_idx, i_idx, t_idx].astype(np.int64),
            "store_size": np.array(STORE_SIZES, dtype=object)[size][s_idx],
            "region": np.array(REGIONS, dtype=object)[region][s_idx],
            "category": np.array(CATEGORIES, dtype=object)[category][i_idx],
        }
    )
    frame = frame[COLUMNS]
    frame.attrs["intermittent_items"] = (np.flatnonzero(intermittent) + 1).tolist()
    frame.attrs["launched_items"] = sorted((launched + 1).tolist())
    return frame


def _trading_day_factor(periods: pd.PeriodIndex, country: str, power: float) -> np.ndarray:
    """Each month's trading days over the mean month's, to the power ``power``."""
    from forecasting.core.calendar import month_calendar

    days = np.array([month_calendar(p.year, p.month, country)[0] for p in periods], dtype=float)
    return (days / days.mean()) ** power


def _stores_and_items(rng: np.random.Generator, S: int, N: int) -> tuple:
    """Each store's size and region, each item's category, and each store-item's base level
    (units a month): item level x store effect x store size x affinity."""
    size = rng.choice(3, size=S, p=_SIZE_SHARE)
    region = rng.integers(0, len(REGIONS), size=S)
    store_effect = rng.lognormal(0.0, 0.25, size=S) * _SIZE_MULTIPLIER[size]
    category = rng.choice(len(CATEGORIES), size=N, p=_CATEGORY_SHARE)
    item_level = rng.lognormal(np.log(15.0), 1.1, size=N)
    affinity = rng.lognormal(0.0, 0.35, size=(S, N))
    base = item_level[None, :] * store_effect[:, None] * affinity  # (S, N) units / month
    return size, region, category, base


def _listing(
    rng: np.random.Generator,
    size: np.ndarray,
    S: int,
    N: int,
    T: int,
    launch_share: float = 0.15,
    launch_within: int | None = None,
) -> tuple:
    """Which store lists which item in which month (assortment, launches, discontinuations),
    and the launched items' ramp-up and the discontinued ones' run-down, each (S, N, T); and the
    launched items (0-based)."""
    carried = rng.random((S, N)) < _SIZE_ASSORTMENT[size][:, None]
    carried[rng.integers(0, S, size=N), np.arange(N)] = True  # every item in some store
    carried[np.arange(S), rng.integers(0, N, size=S)] = True  # every store carries something
    first = np.zeros((S, N), dtype=int)
    final = np.full((S, N), T - 1, dtype=int)
    order = rng.permutation(N)
    n_launch = round(launch_share * N) if T >= 8 else 0
    n_stop = min(round(0.10 * N), N - n_launch) if T >= 8 else 0
    launched, stopped = order[:n_launch], order[n_launch : n_launch + n_stop]
    # As many draws either way, so the rest of the frame comes from the same numbers.
    low, high = (2, T - 5) if launch_within is None else (T - launch_within, T)
    launch_month = rng.integers(low, high, size=n_launch) if n_launch else np.zeros(0, int)
    rollout = rng.integers(0, 3, size=(S, n_launch))
    first[:, launched] = np.minimum(launch_month[None, :] + rollout, T - 1)
    stop_month = rng.integers(T // 3, T - 1, size=n_stop) if n_stop else np.zeros(0, int)
    stop_spread = rng.integers(0, 2, size=(S, n_stop))
    final[:, stopped] = stop_month[None, :] - stop_spread
    tt = np.arange(T)[None, None, :]
    listed = carried[:, :, None] & (tt >= first[:, :, None]) & (tt <= final[:, :, None])

    since = tt - first[:, :, None]  # months since the store listed the item
    ramp_tau = rng.uniform(1.0, 2.5, size=N)
    ramp = np.where(
        np.isin(np.arange(N), launched)[None, :, None],
        1.0 - np.exp(-(np.maximum(since, 0) + 1) / ramp_tau[None, :, None]),
        1.0,
    )
    until = final[:, :, None] - tt  # months until the store delists the item
    rundown = np.where(
        np.isin(np.arange(N), stopped)[None, :, None], 1.0 - 0.45 * np.exp(-np.maximum(until, 0) / 1.2), 1.0
    )
    return listed, ramp, rundown, launched


def _trend_and_season(
    rng: np.random.Generator,
    category: np.ndarray,
    region: np.ndarray,
    S: int,
    N: int,
    T: int,
    t: np.ndarray,
    moy: np.ndarray,
) -> tuple:
    """The log-scale trend and yearly seasonality of every store-item-month, each (S, N, T)."""
    growth = rng.normal(0.02, 0.14, size=N)[None, :] + rng.normal(0.0, 0.04, size=(S, N))  # per year
    trend = np.clip(growth[:, :, None] * (t - (T - 1) / 2)[None, None, :] / 12.0, -1.2, 1.2)

    summer = np.cos(2 * np.pi * (np.arange(12) - 6.5) / 12)  # peaks July/August
    december = np.zeros(12)
    december[[10, 11]] = [0.35, 1.0]
    spring = np.cos(2 * np.pi * (np.arange(12) - 3.5) / 12)  # peaks April/May
    strength = rng.lognormal(0.0, 0.25, size=N)
    quirk_amp = rng.uniform(0.0, 0.06, size=N)
    quirk_phase = rng.uniform(0.0, 2 * np.pi, size=N)
    quirk = quirk_amp[:, None] * np.cos(2 * np.pi * np.arange(12)[None, :] / 12 + quirk_phase[:, None])
    season12 = (
        strength[None, :, None]
        * (
            (_CATEGORY_SUMMER[category][None, :, None] * _REGION_SUMMER[region][:, None, None]) * summer
            + (_CATEGORY_DECEMBER[category][:, None] * december)[None]
            + (_CATEGORY_SPRING[category][:, None] * spring)[None]
        )
        + quirk[None]
    )
    return trend, season12[:, :, moy]


def _promotions_and_price(
    rng: np.random.Generator, category: np.ndarray, region: np.ndarray, S: int, N: int, T: int, t: np.ndarray
) -> tuple:
    """Promotion months (chain campaigns most stores join, plus local ones), the shelf price
    (regular price after inflation and steps, less a promotion's discount) and the price
    relative to the item's inflation-adjusted base, each (S, N, T)."""
    campaign = rng.random((N, T)) < 0.13
    joins = rng.random((S, N, T)) < 0.85
    local = rng.random((S, N, T)) < 0.04
    promo = (campaign[None] & joins) | local
    depth = rng.uniform(0.08, 0.25, size=(S, N, T))

    inflation = rng.normal(0.025, 0.01)  # per year, the general price level
    base_price = rng.lognormal(np.log(_CATEGORY_PRICE[category]), 0.35)
    steps = np.where(rng.random((N, T)) < 0.05, rng.normal(0.03, 0.05, size=(N, T)), 0.0)
    steps[:, 0] = 0.0
    relative = np.cumsum(steps, axis=1) + rng.normal(0.0, 0.01, size=(N, T))  # vs. general level
    store_price = _REGION_PRICE[region][:, None] * rng.lognormal(0.0, 0.02, size=(S, N))
    level = np.exp(inflation * t / 12)
    regular = base_price[None, :, None] * store_price[:, :, None] * np.exp(relative)[None] * level
    price = regular * np.where(promo, 1.0 - depth, 1.0)
    real_ratio = price / (base_price[None, :, None] * store_price[:, :, None] * level)
    return promo, price, real_ratio


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], T: int, phi, sd: float) -> np.ndarray:
    """A stationary AR(1) path of length T (last axis) with marginal standard deviation ``sd``."""
    phi = np.broadcast_to(np.asarray(phi, dtype=float), shape)
    shocks = rng.normal(0.0, 1.0, size=(*shape, T))
    out = np.empty((*shape, T))
    out[..., 0] = sd * shocks[..., 0]
    innovation = sd * np.sqrt(1.0 - phi**2)
    for k in range(1, T):
        out[..., k] = phi * out[..., k - 1] + innovation * shocks[..., k]
    return out


def _table(name: str, metadata: sa.MetaData, schema: str | None) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("store_id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("units", sa.Float, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("promo", sa.SmallInteger, nullable=False),
        sa.Column("store_size", sa.String(16), nullable=False),
        sa.Column("region", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        schema=schema,
    )


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values (int, float, str, date), which every DBAPI driver takes."""
    months = [m if type(m) is date else pd.Timestamp(m).date() for m in frame["month"]]
    return [
        dict(zip(COLUMNS, row, strict=True))
        for row in zip(
            frame["store_id"].astype(int).tolist(),
            frame["item_id"].astype(int).tolist(),
            months,
            frame["units"].astype(float).tolist(),
            frame["price"].astype(float).tolist(),
            frame["promo"].astype(int).tolist(),
            frame["store_size"].astype(str).tolist(),
            frame["region"].astype(str).tolist(),
            frame["category"].astype(str).tolist(),
            strict=True,
        )
    ]


def seed_source_database(
    url: str,
    frame: pd.DataFrame,
    table: str = "sales",
    *,
    schema: str | None = None,
    chunk_rows: int = 20_000,
) -> int:
    """Replace ``table`` at the SQLAlchemy ``url`` with ``frame``'s rows; return how many were written.

    The table is dropped, created (primary key store_id, item_id, month; month as DATE) and
    filled in one transaction, so on databases with transactional DDL (PostgreSQL, SQLite)
    readers see either the old table or the complete new one.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns: {', '.join(missing)}")
    engine = replacing_engine(url)
    target = _table(table, sa.MetaData(), schema)
    rows = _records(frame)
    try:
        with engine.begin() as conn:
            target.drop(conn, checkfirst=True)
            target.create(conn)
            for start in range(0, len(rows), chunk_rows):
                conn.execute(target.insert(), rows[start : start + chunk_rows])
    finally:
        engine.dispose()
    return len(rows)


def _latest_complete_month() -> pd.Period:
    return month_of(datetime.now(UTC)) - 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.datasets.synthetic",
        description="Generate seeded synthetic store x item monthly sales and write them to a SQL table.",
    )
    parser.add_argument(
        "--url",
        help="SQLAlchemy URL of the target database "
        "(default: the source database of the config in $FORECAST_CONFIG, else the demo config)",
    )
    parser.add_argument("--table", help="table to replace (default: the config's source table, else 'sales')")
    parser.add_argument("--schema", help="database schema of the table (default: the database's default)")
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--end-month", help="last month, YYYY-MM (default: the latest complete month, UTC)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--intermittent-share", type=float, default=0.0, help="share of intermittent items")
    parser.add_argument(
        "--holiday-effect", type=float, default=0.0, help="elasticity of units to the month's trading days"
    )
    parser.add_argument("--country", default="US", help="whose holidays --holiday-effect takes (ISO code)")
    parser.add_argument(
        "--launch-share", type=float, default=0.15, help="share of items launched mid-history"
    )
    parser.add_argument(
        "--launch-within", type=int, help="launch them in the last this many months (default: any time)"
    )
    args = parser.parse_args(argv)

    url, table, schema = args.url, args.table, args.schema
    config = None
    if url is None:
        from forecasting.core.config import load_config

        config = load_config()
        source = config.source
        if source.database.url is None:
            parser.error("the config names its source by conn_id; pass --url")
        url = source.database.url
        table = table or source.table
        schema = schema or source.database.schema
    table = table or "sales"

    try:
        end = month_of(args.end_month) if args.end_month else _latest_complete_month()
    except (ValueError, TypeError) as err:
        parser.error(f"--end-month: not a month: {args.end_month!r} ({err})")
    started = time.perf_counter()
    try:
        frame = generate_sales(
            args.stores,
            args.items,
            args.months,
            end,
            args.seed,
            intermittent_share=args.intermittent_share,
            holiday_effect=args.holiday_effect,
            country=args.country,
            launch_share=args.launch_share,
            launch_within=args.launch_within,
        )
    except ValueError as err:
        parser.error(str(err))
    generated = time.perf_counter() - started
    written = seed_source_database(url, frame, table, schema=schema)
    total = time.perf_counter() - started
    where = sa.make_url(url).render_as_string(hide_password=True)
    first_month, last_month = frame["month"].min(), frame["month"].max()
    print(
        f"wrote {written:,} rows to table {schema + '.' if schema else ''}{table} at {where}: "
        f"{frame['store_id'].nunique()} stores x {frame['item_id'].nunique()} items, "
        f"{first_month:%Y-%m}..{last_month:%Y-%m} ({args.months} months), seed {args.seed}, "
        f"{int(frame['units'].sum()):,} units; generated in {generated:.2f}s, total {total:.2f}s"
    )
    if config is not None and config.plans is not None:
        seed_planned(config, frame, end, args.seed)
    return 0


def seed_planned(config, sales: pd.DataFrame, end: pd.Period, seed: int) -> None:
    """Seed the tables of a config's ``plans`` section (and ``plans.scenarios``) that are tables
    at a URL: the plans of ``sales`` and the scenarios of the run of ``end``."""
    pl = config.plans
    if pl.table is None or pl.database.url is None:
        print("plans: a query or an Airflow connection: not seeded")
        return
    plans = generate_plans(sales, horizon=config.horizon, seed=seed)
    written = seed_plans_table(pl.database.url, plans, pl.table, schema=pl.database.schema)
    print(f"wrote {written:,} plan revisions to table {pl.table} (each month planned two months ahead)")
    sc = pl.scenarios
    if sc is None:
        return
    if sc.table is None or sc.database.url is None or sc.scenario_column != "scenario":
        print("plans.scenarios: a query, an Airflow connection or another scenario column: not seeded")
        return
    scenarios = generate_scenarios(sales, plans, horizon=config.horizon)
    written = seed_scenarios_table(sc.database.url, scenarios, sc.table, schema=sc.database.schema)
    names = ", ".join(f"{n} ({c} rows)" for n, c in scenarios.groupby("scenario").size().items())
    print(f"wrote {written:,} scenario rows to table {sc.table} for the run of {end}: {names}")


if __name__ == "__main__":
    sys.exit(main())
