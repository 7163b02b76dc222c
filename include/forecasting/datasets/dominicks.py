"""Dominick's Finer Foods refrigerated orange juice: real store x brand sales, by month.

The data is the ``orangeJuice`` data set of the R package bayesm (Montgomery 1997), which
Debian ships as ``r-cran-bayesm`` (``usr/lib/R/site-library/bayesm/data/orangeJuice.rda``).
It is fetched with ``apt-get download`` (Debian's registry is the only network this project
may use) and cached, so only the first run needs apt.

The ``.rda`` holds a list of two data frames:

* ``yx``: 106,139 weekly rows for 83 stores x 11 brands, weeks 40..160 (with gaps: some
  stores have no rows for some weeks) -- store, brand, week, logmove, constant,
  price1..price11 (every brand's shelf price, in dollars per ounce), deal (in-store coupon,
  0/1), feat (feature advertisement, a share in [0, 1]), profit (margin, percent).
  The help page calls logmove "log of the number of units sold", but it is the log of
  *ounces* sold: exp(logmove) is always a whole multiple of the brand's package size (96-oz
  brands: always of 96, only half the time of 64). Divided by the size it gives packages.
* ``storedemo``: one row per store -- STORE, AGE60, EDUC, ETHNIC, HHLARGE, WORKWOM, HVAL150
  (shares of the store's trading area), INCOME (log median income), SSTRDIST, SSTRVOL,
  CPDIST5, CPWVOL5 (distance to / sales relative to competing stores).

Week numbers follow Dominick's own calendar (the DFF data manual's week table): week 1 is
Thursday 1989-09-14 to Wednesday 1989-09-20 and every week is 7 days, so week 40 starts on
1990-06-14 and week 160 ends on 1992-10-07. The bayesm help page gives no dates, and the
manual's table is the one the rest of the Dominick's data (and e.g. Microsoft's forecasting
``ojdata.FIRST_WEEK_START + (week - 1) * 7``) use. (Reading "week 40 = 1989-09-14" would put
the data nine months early.)

Plans (``oj_plans``, config ``plans:`` in ``config/dominicks_plans.yaml``): Dominick's did not
publish its promotion plans, so the *realised* monthly ``deal`` and ``feat`` stand in for them
(``monthly_plans``), each "planned" at the start of the month before the one it is for. A
forecast from the end of month t thus reads the promotions of t + 1 as if they had been booked
a month ahead: what a retailer's promotion calendar knows, but an upper bound on what a real,
imperfect plan would give.

CLI::

    python -m forecasting.datasets.dominicks --url sqlite:///data/dominicks/source.db
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import REPO_ROOT

DEB_PACKAGE = "r-cran-bayesm"
RDA_NAME = "orangeJuice.rda"
DEFAULT_CACHE_DIR = REPO_ROOT / "data" / "external"
DEFAULT_TABLE = "oj_sales"
DEFAULT_PLANS_TABLE = "oj_plans"

# Dominick's week 1 starts on this Thursday; weeks run Thursday to Wednesday.
WEEK1_START = pd.Timestamp("1989-09-14")

# Brand number -> (name, package size in ounces), from the bayesm help page for orangeJuice.
BRANDS: dict[int, tuple[str, int]] = {
    1: ("Tropicana Premium", 64),
    2: ("Tropicana Premium", 96),
    3: ("Florida's Natural", 64),
    4: ("Tropicana", 64),
    5: ("Minute Maid", 64),
    6: ("Minute Maid", 96),
    7: ("Citrus Hill", 64),
    8: ("Tree Fresh", 64),
    9: ("Florida Gold", 64),
    10: ("Dominicks", 64),
    11: ("Dominicks", 128),
}

DEMOGRAPHICS = [
    "AGE60",
    "EDUC",
    "ETHNIC",
    "INCOME",
    "HHLARGE",
    "WORKWOM",
    "HVAL150",
    "SSTRDIST",
    "SSTRVOL",
    "CPDIST5",
    "CPWVOL5",
]
WEEKLY_COLUMNS = [
    "store",
    "brand",
    "week",
    "logmove",
    "constant",
    *(f"price{b}" for b in BRANDS),
    "deal",
    "feat",
    "profit",
]

# A store-brand-month is kept only if the weeks on record cover at least this share of
# its days; its units are then scaled up from the days on record to the whole month.
MIN_MONTH_COVERAGE = 0.5


class FetchError(RuntimeError):
    """The orange juice data could not be fetched from Debian's package."""


class AptDownloadError(FetchError):
    """``apt-get download r-cran-bayesm`` itself is impossible here (no apt, no network...)."""


# --------------------------------------------------------------------------- fetch


def fetch_orange_juice_rda(cache_dir: Path) -> Path:
    """Return ``cache_dir/orangeJuice.rda``, taking it from Debian's r-cran-bayesm if absent."""
    cache_dir = Path(cache_dir)
    target = cache_dir / RDA_NAME
    if target.is_file():
        return target
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise AptDownloadError(
                f"{tool} not found: the orange juice data comes from Debian's {DEB_PACKAGE} "
                f"package; put {RDA_NAME} into {cache_dir} by hand on a machine without apt"
            )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bayesm-") as tmp:
        tmp_dir = Path(tmp)
        deb = _apt_download(tmp_dir)
        unpacked = tmp_dir / "unpacked"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], what=f"unpacking {deb.name}")
        found = sorted(unpacked.rglob(RDA_NAME))
        if not found:
            raise FetchError(f"{deb.name} holds no {RDA_NAME}; has the package changed?")
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # two fetches at once: two files
        shutil.copyfile(found[0], partial)
        os.replace(partial, target)  # atomic: a reader never sees half a file
    return target


def _apt_download(where: Path) -> Path:
    """``apt-get download`` the package into ``where``; ``apt-get update`` once if needed."""
    cmd = ["apt-get", "download", DEB_PACKAGE]
    try:
        _run(cmd, cwd=where, what=f"apt-get download {DEB_PACKAGE}", error=AptDownloadError)
    except AptDownloadError as first:
        # Without package lists apt knows no candidate: "Unable to locate package", "Can't
        # select candidate version" or "has no installation candidate". Refresh them once.
        text = str(first).lower()
        if not any(s in text for s in ("unable to locate", "candidate", "no packages found")):
            raise
        _run(
            ["apt-get", "update"], what="apt-get update (package lists were missing)", error=AptDownloadError
        )
        _run(
            cmd,
            cwd=where,
            what=f"apt-get download {DEB_PACKAGE} (after apt-get update)",
            error=AptDownloadError,
        )
    debs = sorted(where.glob(f"{DEB_PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise AptDownloadError(f"apt-get download left {len(debs)} {DEB_PACKAGE} .deb files in {where}")
    return debs[0]


def _run(cmd: list[str], what: str, cwd: Path | None = None, error: type[FetchError] = FetchError) -> None:
    try:
        subprocess.run(
            cmd, cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        )  # English messages, to read them
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or err.stdout or "").strip()[-2000:]
        raise error(f"{what} failed (exit {err.returncode}): {' '.join(cmd)}\n{detail}") from err


# --------------------------------------------------------------------------- load


def week_start(week: int | np.ndarray | pd.Series) -> pd.Timestamp | pd.Series:
    """First day (a Thursday) of a Dominick's week number: week 1 is 1989-09-14."""
    if np.isscalar(week):
        return WEEK1_START + pd.Timedelta(days=7 * (int(week) - 1))  # type: ignore[arg-type]
    weeks = pd.Series(week).astype("int64")
    return WEEK1_START + pd.to_timedelta(7 * (weeks - 1), unit="D")


def load_orange_juice(rda_path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the .rda: the weekly ``yx`` frame (plus ``week_start``) and ``storedemo``.

    Column names are bayesm's; integer columns become plain int64, ``week_start`` is the
    Thursday that week starts on (see the module docstring for the calendar).
    """
    import rdata  # imported here: only this loader needs it

    data = rdata.read_rda(str(rda_path))
    try:
        oj = data["orangeJuice"]
        yx, storedemo = oj["yx"], oj["storedemo"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{rda_path}: expected a list orangeJuice with yx and storedemo") from err
    _require(yx, WEEKLY_COLUMNS, f"{rda_path}: orangeJuice$yx")
    _require(storedemo, ["STORE", *DEMOGRAPHICS], f"{rda_path}: orangeJuice$storedemo")

    weekly = pd.DataFrame(yx[WEEKLY_COLUMNS]).reset_index(drop=True)
    for col in ("store", "brand", "week", "constant", "deal"):
        weekly[col] = weekly[col].astype("int64")  # R integers arrive as nullable Int32
    for col in weekly.columns.difference(["store", "brand", "week", "constant", "deal"]):
        weekly[col] = weekly[col].astype("float64")
    weekly["week_start"] = week_start(weekly["week"])

    demographics = pd.DataFrame(storedemo[["STORE", *DEMOGRAPHICS]]).reset_index(drop=True)
    demographics["STORE"] = demographics["STORE"].astype("int64")
    demographics[DEMOGRAPHICS] = demographics[DEMOGRAPHICS].astype("float64")
    if weekly.isna().any().any() or demographics.isna().any().any():
        raise ValueError(f"{rda_path}: unexpected missing values")
    return weekly, demographics


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} lacks columns {missing}; has {list(frame.columns)}")


# --------------------------------------------------------------------------- aggregate


def monthly_sales(weekly: pd.DataFrame, demographics: pd.DataFrame) -> pd.DataFrame:
    """One row per store, brand and calendar month, with the store's demographics.

    * Weeks are split across months by days: a week with 3 days in June and 4 in July gives
      3/7 of its units and its price, deal and feat to June and 4/7 to July.
    * ``units`` = packages sold (``exp(logmove)`` ounces / the brand's package size, see the
      module docstring) on the days on record, scaled to the whole
      month (x days in month / days on record): missing weeks in Dominick's data are whole
      stores without data, not weeks without sales. Store-brand-months with fewer than half
      their days on record are dropped, as is every month the data does not cover from its
      first to its last day (the first and last months, June 1990 and October 1992).
    * ``price`` = the brand's own shelf price (``price{brand}``, dollars per ounce) times its
      package size, i.e. dollars per unit sold, averaged over the days on record.
    * ``deal`` / ``feat`` = share of the days on record on deal / featured (0..1).
    * Demographics are per-store attributes, named in lower case (``income`` is log income).
    """
    brand_oz = pd.Series({b: oz for b, (_, oz) in BRANDS.items()})
    w = weekly[["store", "brand", "week", "logmove", "deal", "feat"]].copy()
    starts = week_start(weekly["week"]).to_numpy()
    prices = weekly[[f"price{b}" for b in BRANDS]].to_numpy()
    brand_idx = weekly["brand"].to_numpy() - 1
    w["price"] = prices[np.arange(len(weekly)), brand_idx] * brand_oz.loc[weekly["brand"]].to_numpy()
    # logmove is log(ounces sold): packages sold = ounces / package size (see module docs).
    w["units"] = np.exp(weekly["logmove"].to_numpy()) / brand_oz.loc[weekly["brand"]].to_numpy()

    # Split each week into the part in its first month and the rest in the next month.
    start = pd.DatetimeIndex(starts)
    first_month = start.to_period("M")
    days_left = (first_month.end_time.normalize() - start).days.to_numpy() + 1
    head = w.assign(month=first_month, days=np.minimum(days_left, 7))
    tail = w.assign(month=first_month + 1, days=7 - head["days"].to_numpy())
    pieces = pd.concat([head, tail[tail["days"] > 0]], ignore_index=True)

    d = pieces["days"].to_numpy(dtype="float64")
    pieces = pieces.assign(
        units_part=pieces["units"] * d / 7,
        price_d=pieces["price"] * d,
        deal_d=pieces["deal"] * d,
        feat_d=pieces["feat"] * d,
    )
    g = (
        pieces.groupby(["store", "brand", "month"], sort=True)[
            ["days", "units_part", "price_d", "deal_d", "feat_d"]
        ]
        .sum()
        .reset_index()
    )

    days_in_month = g["month"].dt.days_in_month.to_numpy()
    g = g[g["days"] >= MIN_MONTH_COVERAGE * days_in_month]
    obs = g["days"].astype("float64")
    out = pd.DataFrame(
        {
            "store": g["store"].astype("int64"),
            "brand": g["brand"].astype("int64"),
            "month": g["month"],
            "units": g["units_part"] * g["month"].dt.days_in_month / obs,
            "price": g["price_d"] / obs,
            "deal": g["deal_d"] / obs,
            "feat": g["feat_d"] / obs,
        }
    )

    # Keep only months the data covers from their first to their last day.
    data_first = start.min()
    data_last = start.max() + pd.Timedelta(days=6)
    covered = (out["month"].dt.start_time >= data_first) & (
        out["month"].dt.end_time.dt.normalize() <= data_last
    )
    out = out[covered]

    demo = demographics.rename(columns=str.lower)
    demo = demo[["store", *(c.lower() for c in DEMOGRAPHICS)]]
    out = out.merge(demo, on="store", how="left", validate="many_to_one")
    if out[[c.lower() for c in DEMOGRAPHICS]].isna().any().any():
        raise ValueError("some stores in the weekly data have no demographics")
    out["month"] = [p.start_time.date() for p in out["month"]]
    return out.sort_values(["store", "brand", "month"]).reset_index(drop=True)


def monthly_plans(monthly: pd.DataFrame) -> pd.DataFrame:
    """The promotion "plans" of ``monthly_sales``' rows: each store, brand and month's realised
    ``deal`` and ``feat`` (and shelf ``price``) as if planned at the start of the month before
    (``planned_at``), one revision each. Realised values standing in for plans (see the module
    docstring)."""
    plans = monthly[["store", "brand", "month", "price", "deal", "feat"]].copy()
    months = pd.PeriodIndex([pd.Timestamp(m) for m in plans["month"]], freq="M")
    plans["planned_at"] = (months - 1).to_timestamp().to_pydatetime()
    return plans.reset_index(drop=True)


# --------------------------------------------------------------------------- seed


def seed_dominicks(
    url: str,
    table: str = DEFAULT_TABLE,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    plans_table: str | None = DEFAULT_PLANS_TABLE,
) -> int:
    """Fetch, load and aggregate the data and write it to ``table`` (replaced), and its
    promotions as plans (``monthly_plans``) to ``plans_table`` (replaced; None: not written);
    return the sales rows."""
    weekly, demographics = load_orange_juice(fetch_orange_juice_rda(Path(cache_dir)))
    frame = monthly_sales(weekly, demographics)
    _ensure_sqlite_dir(url)
    engine = sa.create_engine(url, future=True)
    try:
        with engine.begin() as conn:
            frame.to_sql(
                table, conn, if_exists="replace", index=False, chunksize=5000, dtype={"month": sa.Date()}
            )
            if plans_table is not None:
                monthly_plans(frame).to_sql(
                    plans_table,
                    conn,
                    if_exists="replace",
                    index=False,
                    chunksize=5000,
                    dtype={"month": sa.Date(), "planned_at": sa.DateTime()},
                )
    finally:
        engine.dispose()
    return len(frame)


def _ensure_sqlite_dir(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.datasets.dominicks",
        description="Seed a table with Dominick's orange juice sales by store, brand and month.",
    )
    parser.add_argument(
        "--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///data/dominicks/source.db"
    )
    parser.add_argument(
        "--table", default=DEFAULT_TABLE, help=f"table to (re)write (default {DEFAULT_TABLE})"
    )
    parser.add_argument(
        "--plans-table",
        default=DEFAULT_PLANS_TABLE,
        help=f"table of the promotions as plans to (re)write (default {DEFAULT_PLANS_TABLE})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where {RDA_NAME} is cached (default {DEFAULT_CACHE_DIR})",
    )
    args = parser.parse_args(argv)

    try:
        rows = seed_dominicks(args.url, args.table, args.cache_dir, args.plans_table)
    except FetchError as err:
        parser.exit(1, f"error: {err}\n")
    engine = sa.create_engine(args.url, future=True)
    try:
        with engine.connect() as conn:
            t = sa.table(args.table, sa.column("store"), sa.column("brand"), sa.column("month"))
            stores, brands, first, last = conn.execute(
                sa.select(
                    sa.func.count(sa.distinct(t.c.store)),
                    sa.func.count(sa.distinct(t.c.brand)),
                    sa.func.min(t.c.month),
                    sa.func.max(t.c.month),
                )
            ).one()
    finally:
        engine.dispose()
    print(f"rows: {rows}\nstores: {stores}\nbrands: {brands}\nfirst month: {first}\nlast month: {last}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
