"""``python -m forecasting.publishing.query`` against a hostile analyst (issue 23, faults 1-3).

* PostgreSQL, as a superuser and as the pipeline's own non-superuser role (which may write its
  tables and end its own sessions): COPY to a program or a file, server functions that read
  files, reload the config, switch the WAL, end other sessions or store large objects are all
  refused before anything is sent; a superuser's query runs as pg_read_all_data.
* SQLite: a single huge value is refused at once (it ran 21 s and took 1.7 GB despite
  --timeout 1), and so is a result too large to hold.
* The command reads only the config's predictions section and reports a bad config in one line.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.publishing import query
from forecasting.publishing.read_only_sql import ALLOWED_FUNCTIONS
from tests.helpers.config import demo_config_dict, write_config
from tests.publishing.test_query import build, state

READ_ONLY = "is read-only"
HOSTILE = [  # {marker}: a file the statement would make on the server; {victim}: another session's pid
    "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "COPY forecasts TO '{marker}'",
    "COPY (SELECT * FROM forecasts) TO '{marker}' WITH (FORMAT csv)",
    "SELECT pg_reload_conf()",
    "SELECT pg_switch_wal()",
    "SELECT pg_read_file('PG_VERSION') AS version",
    "SELECT * FROM pg_ls_dir('.') AS f",
    "SELECT pg_terminate_backend({victim}) AS ended",
    "SELECT s.store_id FROM forecasts AS s WHERE pg_cancel_backend({victim})",
    "SELECT lo_from_bytea(0, 'kept for ever') AS oid",
    "SELECT lo_create(0) AS oid",
    "SELECT set_config('default_transaction_read_only', 'off', false) AS v",
    "SELECT pg_catalog.pg_read_file('PG_VERSION') AS version",
    "WITH x AS (SELECT pg_terminate_backend({victim}) AS ended) SELECT * FROM x",
    "SELECT * FROM (SELECT * FROM forecasts FOR SHARE) AS f",
    "SELECT * INTO evil FROM forecasts",
    "EXPLAIN ANALYZE SELECT pg_reload_conf()",
    "SELECT pg_logical_emit_message(false, 'x', 'y') AS lsn",
]
ROLES = ["superuser", "pipeline"]


@pytest.fixture(scope="module", params=ROLES)
def hostile_db(request, tmp_path_factory, postgres_server):
    """Both published runs on a fresh PostgreSQL database; the config connects as a superuser or
    as a non-superuser pipeline role that may write every table (made here, dropped after).
    Shared by the module's tests: each checks that it changed nothing."""
    tmp_path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with ExitStack() as stack:
        db = build("postgresql", tmp_path, stack, request)
        if request.param == "pipeline":
            role, password = f"forecast_test_pipeline_{secrets.token_hex(4)}", secrets.token_hex(8)
            admin = sa.create_engine(db.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
                conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')

            @stack.callback
            def drop_role():
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                    conn.exec_driver_sql(f'DROP ROLE "{role}"')
                admin.dispose()

            raw = demo_config_dict(tmp_path)
            url = sa.make_url(db.url).set(username=role, password=password)
            raw["predictions"] = {"url": url.render_as_string(hide_password=False), "table": "forecasts"}
            db.query_config = load_config(write_config(tmp_path / "pipeline", raw))
            db.query_url = url.render_as_string(hide_password=False)
        else:
            db.query_config, db.query_url = db.config, db.url
        db.role = request.param
        yield db


def large_objects(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT count(*) FROM pg_largeobject_metadata").scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("sql", HOSTILE, ids=[re.sub(r"\W+", "_", s)[:40].strip("_") for s in HOSTILE])
def test_server_side_commands_and_functions_are_refused(hostile_db, sql):
    marker = Path(f"/tmp/forecast_test_query_{secrets.token_hex(6)}")
    before, objects = state(hostile_db), large_objects(hostile_db.url)
    victim = sa.create_engine(hostile_db.query_url)  # a session of the same role, to be spared
    try:
        with victim.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            statement = sql.format(marker=marker, victim=pid)
            with pytest.raises(query.QueryRefused, match=READ_ONLY):
                query.run_query(hostile_db.query_config, statement)
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1, "the other session was ended"
    finally:
        victim.dispose()
        if marker.exists():
            marker.unlink()
            pytest.fail(f"the server wrote {marker}")
    assert state(hostile_db) == before
    assert large_objects(hostile_db.url) == objects


def test_a_refused_statement_never_reaches_the_server(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["predictions"] = {"url": "postgresql://nobody@127.0.0.1:1/nothing", "table": "forecasts"}  # refuses
    config = load_config(write_config(tmp_path, raw))
    with pytest.raises(query.QueryRefused, match=READ_ONLY):
        query.run_query(config, "COPY forecasts TO PROGRAM 'id'")


def test_a_superuser_reads_as_pg_read_all_data(hostile_db):
    who = query.run_query(
        hostile_db.query_config,
        "SELECT current_user AS who, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su, "
        "(SELECT count(*) FROM forecasts) AS n",
    ).to_dict(orient="records")
    expected = (
        "pg_read_all_data" if hostile_db.role == "superuser" else sa.make_url(hostile_db.query_url).username
    )
    assert who == [{"who": expected, "su": False, "n": 72}]


def test_every_allowed_function_is_a_builtin_that_is_immutable_or_stable(postgres_server):
    engine = sa.create_engine(postgres_server)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT proname, array_agg(DISTINCT provolatile::text) AS kinds FROM pg_proc "
                    "WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY(:names) GROUP BY proname"
                ),
                {"names": sorted(ALLOWED_FUNCTIONS)},
            ).all()
    finally:
        engine.dispose()
    assert {name for name, _ in found} == ALLOWED_FUNCTIONS  # each a real built-in
    volatile = sorted(name for name, kinds in found if "v" in kinds)
    assert volatile == []


# --- SQLite: time and memory bounded for real ------------------------------------------------


def run_command(db, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float, int]:
    """The command in its own process: its result, the seconds its ``main`` took (the imports
    before it take longer on a busy machine than any query here) and its peak memory (MiB)."""
    probe = (
        "import resource, sys, time\n"
        "from forecasting.publishing.query import main\n"
        "start = time.monotonic()\n"
        "code = main(sys.argv[1:])\n"
        "print(f'took={time.monotonic() - start} maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', "
        "file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        env={**os.environ, "FORECAST_CONFIG": str(db.path)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    stderr, _, measured = done.stderr.rpartition("took=")
    took, rss = measured.split(" maxrss=")
    done.stderr = stderr
    return done, float(took), int(rss) // 1024


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory, request):
    with ExitStack() as stack:
        yield build("sqlite", tmp_path_factory.mktemp("hostile-sqlite"), stack, request)


@pytest.fixture(scope="module")
def baseline_rss(sqlite_db) -> int:
    """The command's peak memory (MiB) for SELECT 1 in this environment: its imports' share."""
    done, _, rss = run_command(sqlite_db, "SELECT 1 AS one")
    assert done.returncode == 0, done
    return rss


def test_a_huge_value_is_refused_at_once(sqlite_db, baseline_rss):
    done, seconds, rss = run_command(sqlite_db, "--timeout", "1", "SELECT length(randomblob(400000000)) AS n")
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr == ("error: string or blob too big: a string or blob may hold at most 1 MiB here\n"), (
        done.stderr
    )
    # It took 21 s and 1.7 GB before; now no more than SELECT 1 (the imports: ~150 MB alone).
    assert seconds < 5 and rss - baseline_rss < 250, (seconds, rss, baseline_rss)


def test_a_result_too_large_to_hold_is_refused(sqlite_db, baseline_rss):
    many = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        "SELECT i, randomblob(1000000) AS b FROM n"  # 2 GB in 2,000 rows of 1 MB
    )
    done, _, rss = run_command(sqlite_db, many)
    assert done.returncode == 1, done
    assert re.fullmatch(r"error: the result is larger than 256 MiB after \d+ rows: .*\n", done.stderr), (
        done.stderr
    )
    assert rss - baseline_rss < 650, (rss, baseline_rss)


def test_a_long_query_stops_at_the_timeout(sqlite_db):
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(length(hex(randomblob(1000)))) AS m FROM n"
    done, seconds, _ = run_command(sqlite_db, "--timeout", "1", endless)
    assert done.returncode == 1 and done.stderr == "error: cancelled after 1 s (--timeout)\n", done
    assert seconds < 10


# --- the config: only the predictions section ----------------------------------------------


def test_only_the_predictions_section_is_read(sqlite_db, tmp_path):
    """Other sections may hold ${VAR}s that are not set (the registry's password, say) and even
    be wrong: the command only needs where the predictions are."""
    raw = demo_config_dict(tmp_path)
    raw["predictions"] = {"url": f"sqlite:///{sqlite_db.folder}/predictions.db", "table": "forecasts"}
    raw["source"]["url"] = "postgresql://reader:${FORECAST_TEST_UNSET_SOURCE_PASSWORD}@db.invalid/sales"
    raw["model"] = {"no_such_key": 1}
    path = write_config(tmp_path, raw)
    done = subprocess.run(
        [sys.executable, "-m", "forecasting.publishing.query", "SELECT count(*) AS n FROM forecasts"],
        env={**os.environ, "FORECAST_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["n", "72"], "")


@pytest.mark.parametrize(
    "predictions, message",
    [
        ({"url": "sqlite:///x.db", "tabel": "forecasts"}, r"predictions\.tabel: unknown key"),
        (
            {"url": "postgresql://u:${FORECAST_TEST_UNSET_PW}@h/db"},
            "environment variables not set: FORECAST_TEST_UNSET_PW",
        ),
        ("not a section", "predictions"),
        (None, "predictions: is required"),
    ],
    ids=["typo", "unset-variable", "not-a-mapping", "missing"],
)
def test_a_bad_config_is_one_line_without_a_traceback(tmp_path, predictions, message):
    raw = demo_config_dict(tmp_path)
    if predictions is None:
        del raw["predictions"]
    else:
        raw["predictions"] = predictions
    path = write_config(tmp_path, raw)
    done = subprocess.run(
        [sys.executable, "-m", "forecasting.publishing.query", "SELECT 1 AS x"],
        env={**os.environ, "FORECAST_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert "Traceback" not in done.stderr
