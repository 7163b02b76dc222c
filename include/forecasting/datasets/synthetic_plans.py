"""Seeded plans and what-if scenarios for the synthetic sales (``synthetic.generate_sales``):
the price and promotion planned for every store, item and month, with revisions, and the
scenarios of one run's forecast months. ``python -m forecasting.datasets.synthetic`` seeds
them beside the sales when the config has a ``plans`` section.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.datasets.seeding import replacing_engine

# A month is promoted in the plans about as often as in the sales.
PROMO_SHARE = 0.15


PLAN_COLUMNS = ["store_id", "item_id", "month", "price", "promo", "planned_at"]


def generate_plans(
    sales: pd.DataFrame, horizon: int = 3, seed: int = 7, revised_share: float = 0.3
) -> pd.DataFrame:
    """A plans table for ``sales`` (``generate_sales``' frame): the price and promotion planned
    for every store, item and month it sells in, and for the ``horizon`` months after the last
    one for every store and item selling then; one row per revision (config ``plans:``).

    Every month's first plan is made at the start of the month two before it (so it is known at
    the end of the month before that: at every origin up to horizon 3). For ``revised_share`` of
    the months it is revised in the middle of the month before: the first plan had the promotion
    the other way round and the price to match, the revision has what happened. Other plans come
    true as made. A revision of a month after the last one is made after that month ended, so no
    run of the last month knows it. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    last = pd.Period(pd.Timestamp(max(sales["month"])), "M")
    current = sales[pd.to_datetime(sales["month"]).dt.to_period("M") == last]
    future = []
    for h in range(1, horizon + 1):
        promo = (rng.random(len(current)) < PROMO_SHARE).astype(np.int64)
        future.append(
            pd.DataFrame(
                {
                    "store_id": current["store_id"].to_numpy(),
                    "item_id": current["item_id"].to_numpy(),
                    "month": date((last + h).year, (last + h).month, 1),
                    "price": np.round(current["price"].to_numpy() * np.where(promo, 0.85, 1.0), 2),
                    "promo": promo,
                }
            )
        )
    realised = pd.concat(
        [sales[["store_id", "item_id", "month", "price", "promo"]], *future], ignore_index=True
    )
    months = pd.to_datetime(realised["month"]).dt.to_period("M")
    revised = rng.random(len(realised)) < revised_share
    first = realised.assign(
        planned_at=(months - 2).dt.start_time,
        promo=np.where(revised, 1 - realised["promo"], realised["promo"]),
        price=np.where(
            revised,
            np.round(realised["price"] * np.where(realised["promo"] == 1, 1 / 0.85, 0.85), 2),
            realised["price"],
        ),
    )
    revision = realised[revised].assign(
        planned_at=(months[revised] - 1).dt.start_time + pd.Timedelta(days=14)
    )
    plans = pd.concat([first, revision], ignore_index=True)
    plans["promo"] = plans["promo"].astype(np.int64)
    return plans.sort_values(["store_id", "item_id", "month", "planned_at"]).reset_index(drop=True)[
        PLAN_COLUMNS
    ]


def seed_plans_table(
    url: str, plans: pd.DataFrame, table: str = "sales_plans", *, schema: str | None = None
) -> int:
    """Replace ``table`` at ``url`` with ``plans`` (``generate_plans``' frame), in one transaction."""
    engine = replacing_engine(url)
    target = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("store_id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("planned_at", sa.DateTime, primary_key=True),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("promo", sa.SmallInteger, nullable=False),
        schema=schema,
    )
    rows = [
        {
            "store_id": int(r.store_id),
            "item_id": int(r.item_id),
            "month": r.month if type(r.month) is date else pd.Timestamp(r.month).date(),
            "planned_at": pd.Timestamp(r.planned_at).to_pydatetime(),
            "price": float(r.price),
            "promo": int(r.promo),
        }
        for r in plans.itertuples(index=False)
    ]
    try:
        with engine.begin() as conn:
            target.drop(conn, checkfirst=True)
            target.create(conn)
            if rows:
                conn.execute(target.insert(), rows)
    finally:
        engine.dispose()
    return len(rows)


SCENARIO_COLUMNS = ["scenario", "store_id", "item_id", "month", "price", "promo"]
PROMO_DISCOUNT = 0.85  # a promotion's price: the regular one less 15% (as generate_plans plans it)


def generate_scenarios(
    sales: pd.DataFrame, plans: pd.DataFrame, horizon: int = 3, category: str = "beverages"
) -> pd.DataFrame:
    """What-if scenarios (config ``plans.scenarios``) for the run of the last month of ``sales``
    (M), against ``plans`` (``generate_plans``' frame) as they stood at the end of M:

    * ``promo_<category>`` (``promo_beverages``): every store promotes every item of ``category``
      in M + horizon (the last month forecast), at the regular price less 15% (``promo_store_1``:
      every item of store 1, when no item is of ``category``);
    * ``no_promo``: no promotion in M+1..M+horizon for any store and item, at the regular price.

    A scenario row is what it plans, whatever the base plan says: ``promo_<category>`` also names
    items the base plan promotes already (their forecasts stay the base's).
    A scenario's rows for M+1..M+horizon: a run of another month reads none of them.
    """
    last = pd.Period(pd.Timestamp(max(sales["month"])), "M")
    known_at = (last + 1).start_time
    months = pd.to_datetime(plans["month"]).dt.to_period("M")
    base = plans[
        (months > last) & (months <= last + horizon) & (pd.to_datetime(plans["planned_at"]) <= known_at)
    ]
    base = base.sort_values("planned_at", kind="stable").drop_duplicates(
        ["store_id", "item_id", "month"], keep="last"
    )
    regular = np.round(np.where(base["promo"] == 1, base["price"] / PROMO_DISCOUNT, base["price"]), 2)
    base = base.assign(regular=regular, period=pd.to_datetime(base["month"]).dt.to_period("M"))

    target = last + horizon
    items = sales.loc[sales["category"] == category, "item_id"].unique()
    chosen = base["item_id"].isin(items) if len(items) else base["store_id"] == 1
    promoted = base[chosen.to_numpy() & (base["period"] == target).to_numpy()]
    promo = pd.DataFrame(
        {
            "scenario": f"promo_{category if len(items) else 'store_1'}",
            "store_id": promoted["store_id"].to_numpy(),
            "item_id": promoted["item_id"].to_numpy(),
            "month": promoted["month"].to_numpy(),
            "price": np.round(promoted["regular"].to_numpy() * PROMO_DISCOUNT, 2),
            "promo": 1,
        }
    )
    none = pd.DataFrame(
        {
            "scenario": "no_promo",
            "store_id": base["store_id"].to_numpy(),
            "item_id": base["item_id"].to_numpy(),
            "month": base["month"].to_numpy(),
            "price": base["regular"].to_numpy(),
            "promo": 0,
        }
    )
    frame = pd.concat([promo, none], ignore_index=True)
    frame["promo"] = frame["promo"].astype(np.int64)
    frame["month"] = [m if type(m) is date else pd.Timestamp(m).date() for m in frame["month"]]
    return frame.sort_values(["scenario", "store_id", "item_id", "month"]).reset_index(drop=True)[
        SCENARIO_COLUMNS
    ]


def seed_scenarios_table(
    url: str, scenarios: pd.DataFrame, table: str = "sales_scenarios", *, schema: str | None = None
) -> int:
    """Replace ``table`` at ``url`` with ``scenarios`` (``generate_scenarios``' frame), in one transaction."""
    engine = replacing_engine(url)
    target = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("scenario", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("price", sa.Float),
        sa.Column("promo", sa.SmallInteger),
        schema=schema,
    )
    rows = [
        {
            "scenario": str(r.scenario),
            "store_id": int(r.store_id),
            "item_id": int(r.item_id),
            "month": r.month if type(r.month) is date else pd.Timestamp(r.month).date(),
            "price": None if pd.isna(r.price) else float(r.price),
            "promo": None if pd.isna(r.promo) else int(r.promo),
        }
        for r in scenarios.itertuples(index=False)
    ]
    try:
        with engine.begin() as conn:
            target.drop(conn, checkfirst=True)
            target.create(conn)
            if rows:
                conn.execute(target.insert(), rows)
    finally:
        engine.dispose()
    return len(rows)
