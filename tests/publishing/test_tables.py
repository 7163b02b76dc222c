"""Every table of the predictions database is declared once (forecasting.publishing.tables), and
what is written about them elsewhere (docs/tables.md, deploy/postgres/init.sql) keeps up."""

from __future__ import annotations

import re

import sqlalchemy as sa

from forecasting.core.names import PUBLISH_LOCK, relation_name
from forecasting.publishing import tables, tables_doc
from tests.helpers.paths import REPO


def test_docs_tables_md_is_up_to_date():
    written = (REPO / "docs" / "tables.md").read_text()
    assert written == tables_doc.describe(), (
        "docs/tables.md is out of date: regenerate it with "
        "`python -m forecasting.publishing.tables_doc > docs/tables.md` (or make tables-doc)"
    )


def test_docs_name_every_table_and_view():
    written = (REPO / "docs" / "tables.md").read_text()
    declared = tables.declare("<table>", {"<entity>": sa.String(255)})
    for name in [*declared.metadata.tables, *(relation_name("<table>", v) for v in tables.VIEWS)]:
        assert f"## `{name}`" in written, name


def test_init_sql_names_every_table_the_analyst_reads_and_the_publish_locks():
    """init.sql grants SELECT on everything the pipeline creates; its comment lists them, and it
    takes the publish locks back."""
    init = (REPO / "deploy" / "postgres" / "init.sql").read_text()
    suffixes = [name.removeprefix("t_") for name in tables.analyst_relations("t") if name != "t"]
    missing = [s for s in suffixes if not re.search(rf"\b_{s}\b", init)]
    assert not missing, f"deploy/postgres/init.sql does not name {missing}"
    # LIKE '%\_publish\_lock': the underscores escaped (else any character matches)
    escaped = "\\_" + PUBLISH_LOCK.replace("_", "\\_")
    assert escaped in init, f"deploy/postgres/init.sql does not take {escaped} back from the analyst"


def test_the_analyst_reads_everything_but_the_publish_locks():
    readable = tables.analyst_relations("forecasts")
    declared = tables.declare("forecasts", {})
    assert set(readable) == {
        *(t for t in declared.metadata.tables if t != "forecasts_publish_lock"),
        "forecasts_latest",
        "forecasts_tracking_signal",
        "forecasts_revisions",
        "forecasts_churn",
        "forecasts_levels_latest",
    }
    # the tables but the locks (fva, level errors, overrides, outcomes, scenario totals), and five views
    assert len(readable) == 20


def test_entity_columns_follow_the_config_in_order_and_type():
    declared = tables.declare("demand", {"store": sa.BigInteger(), "sku": sa.String(255)}, schema="analytics")
    assert declared.forecasts.name == "demand" and declared.forecasts.schema == "analytics"
    for table in (declared.forecasts, declared.errors, declared.scenarios, declared.drivers):
        keys = [c.name for c in table.columns if c.name in ("store", "sku")]
        assert keys == ["store", "sku"], table.name
        assert isinstance(table.c.store.type, sa.BigInteger) and not table.c.store.nullable
    # An override names an entity or a level's group: its entity columns, typed alike, may be NULL.
    assert isinstance(declared.overrides.c.store.type, sa.BigInteger) and declared.overrides.c.store.nullable
    assert [c.name for c in declared.forecasts.primary_key.columns] == [
        "run_month",
        "store",
        "sku",
        "horizon",
    ]
    assert set(declared.metadata.tables) == {
        f"analytics.demand{suffix}"
        for suffix in (
            "",
            "_runs",
            "_models",
            "_accuracy",
            "_errors",
            "_fva",
            "_drift",
            "_alerts",
            "_scenarios",
            "_scenario_totals",
            "_drivers",
            "_levels",
            "_level_errors",
            "_overrides",
            "_override_outcomes",
        )
    } | {"analytics.demand_publish_lock"}


def test_create_makes_only_the_tables_asked_for(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    declared = tables.declare("forecasts", {"store_id": sa.BigInteger()})
    with engine.begin() as conn:
        tables.create(conn, declared.drift)
        assert sa.inspect(conn).get_table_names() == ["forecasts_drift"]
    engine.dispose()
