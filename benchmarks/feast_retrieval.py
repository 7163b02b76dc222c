"""Feast's point-in-time retrieval and materialization at production scale, per offline store.

Synthesizes a Feast offline table like ``features.build_features`` writes (one parquet file per
month; string entity keys, float32 features, string attributes, ``event_timestamp`` and
``created`` in UTC), then measures, each repetition in a fresh process (wall time and peak RSS
from ``resource.getrusage``):

* ``store.historical_features`` for N entity rows (every entity at ceil(N / entities) forecast
  origins spread over the months), on Feast's DuckDB and file (dask) offline stores, whole or in
  chunks;
* a bare point-in-time join in DuckDB itself (an ASOF join over the same files and rows, with
  the same 40-day TTL), to show what Feast's plumbing costs;
* ``store.materialize`` of the newest month into the SQLite and the Redis online stores.

    .venv/bin/python benchmarks/feast_retrieval.py --entities 100000 --rows 100000,1000000 --repeat 3
    .venv/bin/python benchmarks/feast_retrieval.py --entities 2000 --check 20000   # same values?

Redis: 127.0.0.1:6379 db 15 by default (``--redis``), a random project whose keys are deleted
afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

END_MONTH = "2024-12"
# 7 lags + 4 windows x 2 + month_of_year + history_months + 4 covariates x 2 = 25 float32 features.
FEATURES = {"lags": [1, 2, 3, 4, 5, 6, 12], "rolling_windows": [3, 6, 9, 12]}
COVARIATES = ["price", "promo", "discount", "display"]
ATTRIBUTES = ["region", "category", "store_format"]  # text
KEYS = ["store_id", "item_id"]
ROW = "_row"


# --- the synthetic deployment ---------------------------------------------------------------


def config_dict(folder: Path, offline: str, online: dict | None = None, project: str = "bench") -> dict:
    return {
        "data_dir": str(folder / "data"),
        "source": {
            "url": f"sqlite:///{folder}/source.db",  # never read
            "table": "sales",
            "entity_columns": KEYS,
            "time_column": "month",
            "target_column": "units",
            "covariates": COVARIATES,
            "attributes": ATTRIBUTES,
            "history_months": 60,
        },
        "features": FEATURES,
        "feature_store": {
            "project": project,
            "provider": "local",
            "registry": str(folder / "feast" / f"registry-{project}.db"),
            "online_store": online or {"type": "sqlite", "path": str(folder / "feast" / "online.db")},
            "offline_store": {"type": offline},
            "entity_key_serialization_version": 3,
        },
        "predictions": {"url": f"sqlite:///{folder}/predictions.db", "table": "forecasts"},
    }


def load(folder: Path, offline: str, **kwargs):
    from forecasting.core.config import load_config

    path = folder / f"forecast-{offline}-{kwargs.get('project', 'bench')}.yaml"
    path.write_text(yaml.safe_dump(config_dict(folder, offline, **kwargs), sort_keys=False))
    return load_config(path)


def entity_keys(entities: int) -> pd.DataFrame:
    stores = max(1, round(math.sqrt(entities / 100)))  # 100k: 32 stores x 3,125 items
    items = math.ceil(entities / stores)
    code = np.arange(entities)
    return pd.DataFrame(
        {
            "store_id": pd.Series(code // items).map("S{:04d}".format),
            "item_id": pd.Series(code % items).map("I{:06d}".format),
        }
    )


def months(count: int) -> pd.PeriodIndex:
    end = pd.Period(END_MONTH, "M")
    return pd.period_range(end - (count - 1), end, freq="M")


def generate(folder: Path, entities: int, month_count: int, seed: int = 7) -> None:
    """One parquet file per month, every entity in every month (as features.build_features)."""
    from forecasting.core import paths
    from forecasting.core.months import month_end
    from forecasting.features import store
    from forecasting.features.catalogue import CREATED, TIMESTAMP, feature_names

    config = load(folder, "duckdb")
    out = paths.feature_table(config)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "_generated.json"
    spec = {"entities": entities, "months": month_count, "seed": seed, "stamps": "us"}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        print(f"reusing {len(list(out.glob('*.parquet')))} feature files in {out}", file=sys.stderr)
    else:
        for old in out.glob("*.parquet"):
            old.unlink()
        keys = entity_keys(entities)
        rng = np.random.default_rng(seed)
        numeric = [n for n in feature_names(config) if n not in ATTRIBUTES]
        attributes = {a: rng.integers(0, 12, entities) for a in ATTRIBUTES}  # fixed per entity
        for m in months(month_count):
            columns: dict[str, Any] = {k: pa.array(keys[k]) for k in KEYS}
            for name in numeric:
                values = rng.gamma(2.0, 10.0, entities).astype(np.float32)
                values[rng.random(entities) < 0.02] = np.nan
                columns[name] = pa.array(values, type=pa.float32(), from_pandas=True)
            for a in ATTRIBUTES:
                columns[a] = pa.array([f"{a}_{v}" for v in attributes[a]])
            # µs, as features.build_features writes them (Feast's DuckDB materialize needs µs).
            stamp = pa.array(np.full(entities, month_end(m).to_datetime64()), pa.timestamp("us", tz="UTC"))
            columns[TIMESTAMP] = stamp
            columns[CREATED] = stamp
            pq.write_table(pa.table(columns), out / f"{m}.parquet")
        marker.write_text(json.dumps(spec))
    store.apply(config)  # the registry is the same whichever offline store reads it


def entity_rows(entities: int, month_count: int, rows: int, seed: int = 11) -> pd.DataFrame:
    """``rows`` entity rows: every entity at each of ceil(rows / entities) origins spread evenly
    over the months (the last origin the newest month), shuffled, numbered by ``_row``."""
    from forecasting.core.months import month_end
    from forecasting.features.catalogue import TIMESTAMP

    keys = entity_keys(entities)
    per = math.ceil(rows / entities)
    all_months = months(month_count)
    picks = np.unique(np.linspace(month_count - 1, 0, per).round().astype(int))  # newest first
    origins = [month_end(all_months[i]) for i in picks]
    frame = pd.DataFrame(
        {
            "store_id": np.tile(keys["store_id"].to_numpy(), len(origins))[:rows],
            "item_id": np.tile(keys["item_id"].to_numpy(), len(origins))[:rows],
            TIMESTAMP: pd.DatetimeIndex(np.repeat(origins, entities)[:rows]).tz_localize("UTC"),
        }
    )
    order = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.take(order).reset_index(drop=True)
    frame[ROW] = np.arange(len(frame), dtype=np.int64)
    return frame


# --- the bare join ----------------------------------------------------------------------------


def bare_point_in_time(config, rows: pd.DataFrame, threads: int | None = None) -> pd.DataFrame:
    """The point-in-time join in DuckDB alone, over the files Feast reads: per entity row, the
    entity's latest feature row stamped at or before the row's timestamp (ASOF join), its
    features null when that row is older than the TTL. (Feast also breaks a tie of two rows of
    one entity and timestamp by ``created``; the synthetic table has no such ties.)"""
    import duckdb

    from forecasting.core import paths
    from forecasting.features import store
    from forecasting.features.catalogue import TIMESTAMP, feature_names

    glob = str(paths.feature_table(config) / store.FEATURE_FILES).replace("'", "''")
    ttl_seconds = int(store.FEATURE_TTL.total_seconds())
    names = feature_names(config)
    fresh = f"f.{TIMESTAMP} >= e.{TIMESTAMP} - INTERVAL {ttl_seconds} SECOND"
    features = ", ".join(f'CASE WHEN {fresh} THEN f."{n}" END AS "{n}"' for n in names)
    on = " AND ".join(f'e."{k}" = f."{k}"' for k in KEYS)
    # pandas writes nanosecond stamps (TIMESTAMPTZ_NS to DuckDB); the entity rows arrive in µs.
    stamp = f"CAST({TIMESTAMP} AS TIMESTAMPTZ) AS {TIMESTAMP}"
    columns = ", ".join([*(f'"{c}"' for c in [*KEYS, *names]), stamp])
    # Only feature rows some entity row can use: DuckDB skips the other files by their statistics.
    # (Compared in the column's own type, or DuckDB cannot use the statistics.)
    unit = pq.read_schema(store.feature_files(config)[-1]).field(TIMESTAMP).type.unit
    kind = "TIMESTAMPTZ_NS" if unit == "ns" else "TIMESTAMPTZ"
    low, high = rows[TIMESTAMP].min() - store.FEATURE_TTL, rows[TIMESTAMP].max()
    window = (
        f"{TIMESTAMP} BETWEEN CAST(TIMESTAMPTZ '{low}' AS {kind}) AND CAST(TIMESTAMPTZ '{high}' AS {kind})"
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.register("entity_rows", rows)
        table = con.sql(
            f"SELECT e.*, {features} FROM entity_rows e "
            f"ASOF LEFT JOIN (SELECT {columns} FROM read_parquet('{glob}') WHERE {window}) f "
            f"ON {on} AND e.{TIMESTAMP} >= f.{TIMESTAMP}"
        ).to_arrow_table()
    finally:
        con.close()
    return table.to_pandas(split_blocks=True, self_destruct=True)


# --- one measurement per process ----------------------------------------------------------------


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement (run by ``--one`` in a fresh process); prints a JSON line."""
    from forecasting.features import store

    folder = Path(args.folder)
    if args.what == "materialize":
        return measure_materialize(folder, args)
    if args.ttl_days:  # another TTL: another feature view, in a registry of its own
        store.FEATURE_TTL = timedelta(days=args.ttl_days)
        project = f"bench_ttl{args.ttl_days}"
        config = load(folder, args.store if args.what == "feast" else "duckdb", project=project)
        if not Path(config.feature_store["registry"]).is_file():
            store.apply(config)
    else:
        config = load(folder, args.store if args.what == "feast" else "duckdb")
    rows = entity_rows(args.entities, args.months, int(args.rows))
    # Imports and the registry are not what we measure (an Airflow task pays them once).
    import duckdb  # noqa: F401

    if args.what == "feast":
        import dask.dataframe  # noqa: F401
        import feast.infra.offline_stores.dask  # noqa: F401
        import feast.infra.offline_stores.duckdb  # noqa: F401
        import ibis  # noqa: F401

        store.feature_store(config).get_feature_service(store.FEATURE_SERVICE)
    before = peak_mib()
    start = time.perf_counter()
    if args.what == "bare":
        result = bare_point_in_time(config, rows)
    elif args.chunk and args.chunk < len(rows):
        parts = [
            store.historical_features(config, rows.iloc[i : i + args.chunk])
            for i in range(0, len(rows), args.chunk)
        ]
        result = pd.concat(parts, ignore_index=True)
        del parts
    else:
        result = store.historical_features(config, rows)
    seconds = time.perf_counter() - start
    assert len(result) == len(rows), (len(result), len(rows))
    return {
        "seconds": seconds,
        "peak_mib": peak_mib(),
        "peak_before_mib": before,
        "result_mib": result.memory_usage(deep=True).sum() / 2**20,
        "null_rate": float(result["sales_lag_1"].isna().mean()),
    }


def measure_materialize(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from forecasting.features import store

    project = f"bench_{secrets.token_hex(4)}"
    if args.online == "redis":
        host, _, rest = args.redis.partition(":")
        port, _, db = rest.partition("/")
        online = {"type": "redis", "connection_string": f"{host}:{port},db={db or 15}"}
    else:
        online = {"type": "sqlite", "path": str(folder / "feast" / f"online-{project}.db")}
    config = load(folder, args.store, online=online, project=project)
    try:
        store.apply(config)
        before = peak_mib()
        start = time.perf_counter()
        loaded = store.materialize(config, pd.Period(END_MONTH, "M"))
        seconds = time.perf_counter() - start
        newest = pd.read_parquet(store.feature_files(config)[-1]).sample(100, random_state=1)
        online_values = store.online_features(config, newest[KEYS]).set_index(KEYS)["sales_lag_1"]
        expected = newest.set_index(KEYS)["sales_lag_1"]
        np.testing.assert_array_equal(
            online_values.loc[expected.index].to_numpy(np.float32), expected.to_numpy()
        )
        return {"seconds": seconds, "peak_mib": peak_mib(), "peak_before_mib": before, "loaded": loaded}
    finally:
        if args.online == "redis":
            import redis

            client = redis.Redis(host=host, port=int(port), db=int(db or 15))
            keys = list(client.scan_iter(match=b"*" + project.encode(), count=10000))
            for i in range(0, len(keys), 10000):
                client.delete(*keys[i : i + 10000])
            client.close()
        else:
            Path(online["path"]).unlink(missing_ok=True)
        Path(config.feature_store["registry"]).unlink(missing_ok=True)


def run_one(args: argparse.Namespace, **changes: Any) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--one", "--folder", args.folder]
    argv += ["--entities", str(args.entities), "--months", str(args.months), "--redis", args.redis]
    for key, value in changes.items():
        argv += [f"--{key}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    return {
        "seconds": statistics.median(r["seconds"] for r in ok),
        "min_s": min(r["seconds"] for r in ok),
        "max_s": max(r["seconds"] for r in ok),
        "peak_mib": statistics.median(r["peak_mib"] for r in ok),
        "before_mib": statistics.median(r["peak_before_mib"] for r in ok),
        "runs": len(ok),
    }


def check(args: argparse.Namespace) -> None:
    """Feast on DuckDB, Feast on dask and the bare join: the same value in every cell?"""
    from forecasting.features import store
    from forecasting.features.catalogue import TIMESTAMP, feature_names

    folder = Path(args.folder)
    rows = entity_rows(args.entities, args.months, args.check)
    # And some rows between month ends, within the TTL of the newest month and beyond it.
    newest = rows[TIMESTAMP].max()
    extra = rows.head(1000).assign(**{TIMESTAMP: newest})
    extra[TIMESTAMP] += pd.to_timedelta(np.arange(len(extra)) % 50, unit="D")
    rows = pd.concat([rows, extra], ignore_index=True).assign(**{ROW: lambda f: np.arange(len(f))})
    results = {"feast duckdb": store.historical_features(load(folder, "duckdb"), rows)}
    if len(rows) <= args.skip_file_above:
        results["feast file"] = store.historical_features(load(folder, "file"), rows)
    results["bare duckdb"] = bare_point_in_time(load(folder, "duckdb"), rows)
    names = feature_names(load(folder, "duckdb"))
    base = None
    for label, frame in results.items():
        frame = frame.sort_values(ROW).reset_index(drop=True)
        assert frame[ROW].tolist() == list(range(len(rows))), label
        nulls = int(frame["sales_lag_1"].isna().sum())
        print(f"{label}: {len(frame)} rows, {nulls} null; {sorted({str(frame[n].dtype) for n in names})}")
        if base is None:
            base = frame
            continue
        for n in [*KEYS, *names]:
            a, b = base[n], frame[n]
            same = (a.isna() == b.isna()).all() and (a[a.notna()].to_numpy() == b[b.notna()].to_numpy()).all()
            assert same, f"{label}: {n} differs from feast duckdb"
        print(f"  identical to feast duckdb in all {len(names)} features")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000, help="series (store x item) per month")
    parser.add_argument("--months", type=int, default=49, help="monthly feature files")
    parser.add_argument("--rows", default="100000,1000000,2400000", help="entity-row counts to time")
    parser.add_argument("--stores", default="duckdb,file", help="offline stores to time")
    parser.add_argument("--chunks", default="", help="also time calls of this many rows each (a list)")
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-stores", default="duckdb", help="offline stores to time in chunks")
    parser.add_argument(
        "--skip-file-above", type=int, default=1_000_000, help="dask is slow: skip it above this"
    )
    parser.add_argument("--ttl-days", type=int, default=0, help="also time DuckDB with this feature TTL")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--materialize", action="store_true", help="also time materialize (SQLite, Redis)")
    parser.add_argument("--materialize-stores", default="duckdb", help="offline stores to materialize from")
    parser.add_argument(
        "--redis", default="127.0.0.1:6379/15", help="host:port/db for the Redis online store"
    )
    parser.add_argument("--check", type=int, default=0, help="only compare the three joins on this many rows")
    parser.add_argument("--folder", default="", help="where the data goes (default: a temp folder)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--what", default="feast", help=argparse.SUPPRESS)
    parser.add_argument("--store", default="duckdb", help=argparse.SUPPRESS)
    parser.add_argument("--online", default="sqlite", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args)))
        return 0

    if not args.folder:
        args.folder = tempfile.mkdtemp(prefix="feast-retrieval-")
    folder = Path(args.folder)
    (folder / "feast").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    generate(folder, args.entities, args.months)
    print(f"offline table ready in {time.perf_counter() - start:.1f} s ({folder})", file=sys.stderr)
    if args.check:
        check(args)
        return 0

    plan: list[tuple[str, dict[str, Any]]] = []
    for n in [int(x) for x in args.rows.split(",") if x]:
        for s in args.stores.split(","):
            if s == "file" and n > args.skip_file_above:
                continue
            plan.append((f"feast {s:6} {n:>9,} rows", {"what": "feast", "store": s, "rows": n}))
            for chunk in [int(c) for c in args.chunks.split(",") if c]:
                if n > chunk and s in args.chunk_stores.split(","):
                    label = f"feast {s:6} {n:>9,} rows, {chunk:,}/call"
                    plan.append((label, {"what": "feast", "store": s, "rows": n, "chunk": chunk}))
        plan.append((f"bare duckdb  {n:>9,} rows", {"what": "bare", "rows": n}))
        if args.ttl_days:
            ttl = {"ttl-days": args.ttl_days}
            plan.append(
                (f"feast duckdb {n:>9,} rows, TTL {args.ttl_days} d", {"what": "feast", "rows": n, **ttl})
            )
            plan.append(
                (f"bare duckdb  {n:>9,} rows, TTL {args.ttl_days} d", {"what": "bare", "rows": n, **ttl})
            )
    if args.materialize:
        for s in args.materialize_stores.split(","):
            for online in ("sqlite", "redis"):
                plan.append(
                    (
                        f"materialize {args.entities:,} ({s} -> {online})",
                        {"what": "materialize", "store": s, "online": online},
                    )
                )

    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in plan}
    for _ in range(args.repeat):  # interleaved, so a busy spell on the machine spreads over all
        for label, changes in plan:
            result = run_one(args, **changes)
            results[label].append(result)
            print(f"  {label}: {json.dumps(result)}  load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(f"load after: {os.getloadavg()}", file=sys.stderr)

    print("\n| measurement | median s | min s | max s | peak RSS MiB | RSS before call MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        m = median_of(runs)
        if "error" in m:
            print(f"| {label} | failed: {m['error']} | | | | |")
        else:
            print(
                f"| {label} | {m['seconds']:.2f} | {m['min_s']:.2f} | {m['max_s']:.2f} "
                f"| {m['peak_mib']:,.0f} | {m['before_mib']:,.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
