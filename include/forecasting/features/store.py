"""The Feast feature store: definitions, apply, materialize, point-in-time retrieval.

Feast's settings come from the ``feature_store`` section of the forecast config (same keys as
``feature_store.yaml``), so one file still drives a deployment. The definitions read their
schema from the offline table that ``features.build_features`` wrote, so they always match it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from forecasting.core import paths
from forecasting.core.config import REPO_ROOT, Config
from forecasting.core.months import month_end
from forecasting.features.catalogue import CREATED, TIMESTAMP, catalogue, plan_catalogue
from forecasting.features.feast_config import feast_repo_config
from forecasting.features.plans import PLAN_MONTH

log = logging.getLogger(__name__)

FEATURE_VIEW = "sales_history"
FEATURE_SERVICE = "demand_model"
# The planned covariates (config ``plans:``): a view keyed by entity and target month, stamped
# with planned_at, and the service the training rows ask it through (as of their origin).
PLAN_VIEW = "plans"
PLAN_SERVICE = "demand_model_plans"
# A plan stays the plan until revised, however long ago it was made (0: no TTL in Feast).
PLAN_TTL = timedelta(0)
FEATURE_REPO = REPO_ROOT / "feature_repo"
# A feature row describes one month; an older one must not stand in for a missing month.
FEATURE_TTL = timedelta(days=40)
# The feature files Feast reads: every parquet file in the folder but hidden ones. A file being
# written (paths.write_parquet_atomically's ".tmp-*.parquet") is not a feature file, and both of
# Feast's file-based offline stores would fail on it: DuckDB's read_parquet and dask's
# read_parquet read every file a folder or a plain "*.parquet" holds. Both take this glob.
FEATURE_FILES = "[!._]*.parquet"
_GROUP = "__entity_group"  # a column of the dask store's distinct entity rows


@contextlib.contextmanager
def _quiet_dask():
    """Feast's dask offline store triggers a pandas FutureWarning (downcasting) we can't act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask\.")
        yield


@contextlib.contextmanager
def _offline_session(store):
    """Feast's DuckDB offline store runs its queries on ibis's default backend, a DuckDB
    connection that lives as long as the process and keeps hundreds of MB after a big join
    (and the entity rows Feast registered in it). Each retrieval or materialization gets a
    connection of its own instead, closed afterwards, so a task's later work (a model fit)
    has that memory back. The dask store does not use ibis."""
    if store.config.offline_store.type != "duckdb":
        with _quiet_dask():
            yield
        return
    import ibis

    previous = ibis.options.default_backend
    con = ibis.duckdb.connect(":memory:")
    ibis.options.default_backend = con
    try:
        yield
    finally:
        ibis.options.default_backend = previous
        con.disconnect()


def repo_config(config: Config):
    """Feast's settings from the config's feature_store section, checked by Feast's own models:
    an unknown key or a bad value anywhere in it is a ConfigError naming it."""
    repo = feast_repo_config(config)
    repo.repo_path = FEATURE_REPO
    return repo


def feature_store(config: Config):
    from feast import FeatureStore

    return FeatureStore(config=repo_config(config))


def registry_snapshot(config: Config) -> bytes:
    """Feast's registry as it stands now, serialized: the definitions Dask workers join with,
    read once here, so no worker needs the registry's URL (and its password)."""
    return bytes(feature_store(config).registry.proto().SerializeToString())


def write_feature_store_yaml(config: Config) -> Path:
    """Write this deployment's feature_store.yaml, for the ``feast`` CLI (``feast -f PATH ...``).

    The section goes in as the config file has it, ``${VAR}`` and all: Feast's
    ``load_repo_config`` fills those in from the environment of whoever runs the CLI, so a
    password from the environment (the SQL registry's URL) never reaches the disk. The file
    may still hold what the config itself spells out: only its owner may read it (0600, in a
    0700 folder where the pipeline owns the folder).
    """
    settings = config.feature_store_unexpanded
    if settings is None:  # a Config built by hand, without its unexpanded section
        settings = config.feature_store
    path = paths.feast_settings(config)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a folder set up by someone else keeps its mode
        if path.parent.stat().st_uid == os.getuid():
            path.parent.chmod(0o700)
    text = yaml.safe_dump(settings, sort_keys=False)
    # mkstemp creates the file 0600; the rename replaces an older copy whole (whatever its mode).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        read_back = yaml.safe_load(os.path.expandvars(text))
    except yaml.YAMLError:
        read_back = None
    if read_back != config.feature_store:
        # Feast substitutes ${VAR} into the text before parsing it: a value with YAML syntax in
        # it (or a literal $NAME) reads differently there. Say so, without quoting any value.
        log.warning(
            "%s: with this environment, Feast reads settings other than the pipeline's "
            "(a ${VAR} value that is not plain YAML text, or a literal $ in a value?)",
            path,
        )
    return path


@dataclass
class Definitions:
    entities: list
    source: Any  # feast.FileSource
    view: Any  # feast.FeatureView
    service: Any  # feast.FeatureService
    # The plans' source, view and service (config ``plans:``), else empty.
    plan_objects: list = field(default_factory=list)

    def objects(self) -> list:
        return [*self.entities, self.source, self.view, self.service, *self.plan_objects]


def feature_files(config: Config) -> list[Path]:
    """The files of the offline table that Feast reads (``FEATURE_FILES``), in name order."""
    return sorted(paths.feature_table(config).glob(FEATURE_FILES))


def offline_schema(config: Config) -> pa.Schema:
    files = feature_files(config)
    if not files:
        folder = paths.feature_table(config)
        raise FileNotFoundError(f"no feature files in {folder}: build the features before applying Feast")
    return pq.read_schema(files[-1])


def _attribute_types(config: Config) -> dict:
    """Feast's type of each entity attribute: as the newest feature file stores it (a number or
    text, as in the source). Before any file is built (``feast plan`` on a fresh checkout) they
    cannot be known: String, and the log says so; the pipeline applies after build_features."""
    from feast.types import String

    attributes = config.source.attributes
    if not attributes:
        return {}
    if not feature_files(config):
        log.warning(
            "No feature files in %s yet: attributes %s are shown as String until features are built",
            paths.feature_table(config),
            ", ".join(attributes),
        )
        return dict.fromkeys(attributes, String)
    schema = offline_schema(config)
    return {a: feast_type(schema.field(a).type, a) for a in attributes}


def feast_type(kind: pa.DataType, column: str):
    """Feast's type of a parquet column: float32 stays Float32 (offline, online and in between)."""
    from feast import types

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_float32(kind):
        return types.Float32
    if pa.types.is_float64(kind):
        return types.Float64
    if pa.types.is_int32(kind):
        return types.Int32
    if pa.types.is_int64(kind):
        return types.Int64
    if pa.types.is_boolean(kind):
        return types.Bool
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return types.String
    raise TypeError(f"feature column {column}: parquet type {kind} has no Feast type here")


def parquet_source(name: str, folder: Path):
    """A FileSource over the one-file-per-month parquet files in ``folder``, stamped
    event_timestamp (and created).

    DuckDB's offline store reads a FileSource only with an explicit ParquetFormat (or a path
    ending in .parquet) and hands the path to read_parquet, which needs a file or a glob, not a
    folder; dask's offline store (type: file) ignores the format and reads the same glob.
    """
    from feast import FileSource
    from feast.data_format import ParquetFormat

    if glob.has_magic(str(folder)):  # the source's path is a glob: the folder's name must not be one
        raise ValueError(f"{folder}: data_dir must not contain *, ? or [ (Feast reads its files by a glob)")
    return FileSource(
        name=name,
        path=str(folder / FEATURE_FILES),
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP,
        created_timestamp_column=CREATED,
    )


def build_definitions(config: Config) -> Definitions:
    from feast import Entity, FeatureService, FeatureView, Field, ValueType
    from feast.types import Float32, String

    keys = config.source.entity_columns
    entities = [
        Entity(name=key, join_keys=[key], value_type=ValueType.STRING, description=f"source column {key}")
        for key in keys
    ]
    source = parquet_source(f"{FEATURE_VIEW}_source", paths.feature_table(config))
    fields = [Field(name=key, dtype=String, description=f"source column {key}") for key in keys]
    attribute_types = _attribute_types(config)
    for feature in catalogue(config):
        kind = attribute_types[feature.name] if feature.attribute else Float32  # build_features' float32
        fields.append(Field(name=feature.name, dtype=kind, description=feature.description))
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=entities,
        ttl=FEATURE_TTL,
        schema=fields,
        source=source,
        online=True,
        description="Sales history, calendar, covariates and attributes of an entity as of a month's end.",
    )
    service = FeatureService(
        name=FEATURE_SERVICE, features=[view], description="Everything the demand model reads."
    )
    plan_objects = _plan_definitions(config, entities) if config.plans is not None else []
    return Definitions(
        entities=entities, source=source, view=view, service=service, plan_objects=plan_objects
    )


def _plan_definitions(config: Config, entities: list) -> list:
    """The target-month entity, the plans' source, view and service (see forecasting.features.plans).

    Offline only: training and prediction read plans point in time from the offline table, as
    of each row's origin (the online store serves the newest sales features alone)."""
    from feast import Entity, FeatureService, FeatureView, Field, ValueType
    from feast.types import Float32, String

    target = Entity(
        name=PLAN_MONTH,
        join_keys=[PLAN_MONTH],
        value_type=ValueType.STRING,
        description="the month a plan is for (YYYY-MM): a training row's target month",
    )
    source = parquet_source(f"{PLAN_VIEW}_source", paths.plan_table(config))  # stamped planned_at
    keys = config.source.entity_columns
    fields = [Field(name=key, dtype=String, description=f"source column {key}") for key in keys]
    fields.append(Field(name=PLAN_MONTH, dtype=String, description="the month planned for (YYYY-MM)"))
    fields += [
        Field(name=f.name, dtype=Float32, description=f.description)
        for f in plan_catalogue(config)
        if not f.derived
    ]
    view = FeatureView(
        name=PLAN_VIEW,
        entities=[*entities, target],
        ttl=PLAN_TTL,
        schema=fields,
        source=source,
        online=False,
        description="Planned covariates of an entity's month, one row per revision, stamped when it was made.",
    )
    service = FeatureService(
        name=PLAN_SERVICE, features=[view], description="The plans the demand model reads, as of the origin."
    )
    return [target, source, view, service]


def apply(config: Config) -> Definitions:
    """Register (or update) the definitions; applying twice is a no-op."""
    definitions = build_definitions(config)
    paths.feast_dir(config).mkdir(parents=True, exist_ok=True)
    feature_store(config).apply(definitions.objects())
    write_feature_store_yaml(config)
    return definitions


def materialize(config: Config, month: pd.Period) -> int:
    """Load the features as of the end of M into the online store; returns entities loaded.

    The online store serves the newest month. A backfill of an older month leaves it alone
    (Feast would overwrite newer rows with older ones).
    """
    newest = max(p.stem for p in feature_files(config))
    if newest > str(month):
        log.info("Online store left at %s: %s is older", newest, month)
        return 0
    store = feature_store(config)
    if store.config.offline_store.type == "duckdb":
        _check_timestamp_units(config)
    end = month_end(month).tz_localize("UTC").to_pydatetime()
    # Feast prints coloured progress to stdout; keep task logs readable by logging it plainly.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), _offline_session(store):
        store.materialize(start_date=end - FEATURE_TTL, end_date=end, feature_views=[FEATURE_VIEW])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", printed.getvalue()).strip()
    if plain:
        log.info("Feast: %s", " ".join(plain.split()))
    return len(pd.read_parquet(paths.feature_file(config, month), columns=config.source.entity_columns))


def _check_timestamp_units(config: Config) -> None:
    """Feast's DuckDB store materializes by casting the timestamps to a naive TIMESTAMP, which
    DuckDB cannot do from nanoseconds (TIMESTAMPTZ_NS); it reads every file as the first one's
    types. So the first feature file must hold microseconds (as build_features writes them), not
    the nanoseconds pandas writes by default: say so instead of DuckDB's ConversionException."""
    first = feature_files(config)[0]
    schema = pq.read_schema(first)
    for column in (c for c in (TIMESTAMP, CREATED) if c in schema.names):
        kind = schema.field(column).type
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            raise ValueError(
                f"{first}: {column} is in nanoseconds, which Feast's DuckDB offline store cannot "
                "materialize; rewrite the feature files with microsecond timestamps "
                "(datetime64[us, UTC], as features.build_features writes them)"
            )


def offline_store_type(config: Config) -> str:
    """The configured offline store: ``duckdb``, or ``file``/``dask`` (the same store)."""
    return str(repo_config(config).offline_store.type)


def historical_features(config: Config, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each row gets the latest features stamped at or before its timestamp
    (and within ``FEATURE_TTL``; none, as nulls, where there is no such row).

    ``entity_rows`` holds the entity columns, ``event_timestamp`` and any other columns (such as
    a row number), which come back unchanged. Every entity row comes back exactly once, in no
    particular order; features keep their offline types (float32 stays float32, text is str).
    The caller's frame is not modified.
    """
    store = feature_store(config)
    service = store.get_feature_service(FEATURE_SERVICE)
    frame = entity_rows.copy(deep=False)  # a column replaced below never reaches the caller's frame
    stamps = frame[TIMESTAMP]
    if not (isinstance(stamps.dtype, pd.DatetimeTZDtype) and str(stamps.dtype.tz) == "UTC"):
        frame[TIMESTAMP] = pd.to_datetime(stamps, utc=True)
    if store.config.offline_store.type in ("file", "dask"):
        keys = config.source.entity_columns
        return _historical_features_dask(store, service, frame, keys, feature_files(config), FEATURE_VIEW)
    # DuckDB (through ibis): a left join of the entity rows to the latest feature row of each,
    # so every entity row, duplicates included, comes back once with its other columns.
    with _offline_session(store):
        result = _to_pandas(store.get_historical_features(entity_df=frame, features=service))
    if len(result) != len(frame):
        raise RuntimeError(f"Feast returned {len(result)} rows for {len(frame)} entity rows")
    if result[TIMESTAMP].dtype != frame[TIMESTAMP].dtype:  # DuckDB's are µs, the caller's ns
        result[TIMESTAMP] = result[TIMESTAMP].astype(frame[TIMESTAMP].dtype)
    return result


def _to_pandas(job) -> pd.DataFrame:
    """The job's result as pandas, never holding a whole second copy of it: the Arrow buffers
    are released column by column as they are converted."""
    table = job.to_arrow()
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    return frame


def plan_files(config: Config) -> list[Path]:
    """The files of the plans' offline table (one per target month), in name order."""
    return sorted(paths.plan_table(config).glob(FEATURE_FILES))


def plan_features(config: Config, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of the plans: each row (the entity columns, ``PLAN_MONTH`` and
    ``event_timestamp``: the origin's end) gets the revision of its entity's plan for that
    month with the latest ``planned_at`` at or before its timestamp (nulls where none was made
    by then). Other columns come back unchanged; every row exactly once, in no particular order.
    """
    frame = entity_rows.copy(deep=False)
    if not plan_files(config):  # no plan written yet (none known, every covariate filled)
        for feature in plan_catalogue(config):
            if not feature.derived:
                frame[feature.name] = np.full(len(frame), np.nan, dtype=np.float32)
        return frame
    store = feature_store(config)
    service = store.get_feature_service(PLAN_SERVICE)
    stamps = frame[TIMESTAMP]
    if not (isinstance(stamps.dtype, pd.DatetimeTZDtype) and str(stamps.dtype.tz) == "UTC"):
        frame[TIMESTAMP] = pd.to_datetime(stamps, utc=True)
    if store.config.offline_store.type in ("file", "dask"):
        keys = [*config.source.entity_columns, PLAN_MONTH]
        return _historical_features_dask(store, service, frame, keys, plan_files(config), PLAN_VIEW)
    with _offline_session(store):
        result = _to_pandas(store.get_historical_features(entity_df=frame, features=service))
    if len(result) != len(frame):
        raise RuntimeError(f"Feast returned {len(result)} plan rows for {len(frame)} entity rows")
    return result


def _historical_features_dask(
    store, service, frame: pd.DataFrame, keys: list[str], files: list[Path], view: str
) -> pd.DataFrame:
    """Feast's dask store keeps one row per entity and timestamp (it drops duplicates on them),
    drops an entity row whose entity's feature rows are all outside the TTL, and may fail on a
    row of an entity it has no feature row of (its sort on ``created`` meets nulls). So it is
    asked once per distinct (entity, timestamp) of a known entity, and the answer is spread
    back over every row (nulls where it has none)."""
    on = [*keys, TIMESTAMP]
    group = frame.groupby(on, sort=False).ngroup().to_numpy()
    first = np.unique(group, return_index=True)[1]  # groups are numbered by first appearance
    distinct = frame[on].take(first).reset_index(drop=True)
    distinct[_GROUP] = np.arange(len(distinct), dtype=np.int64)
    distinct = distinct[pd.MultiIndex.from_frame(distinct[keys]).isin(_known_entities(files, keys))]
    if len(distinct):
        with _quiet_dask():
            found = _to_pandas(store.get_historical_features(entity_df=distinct, features=service))
        features = found.drop(columns=on).set_index(_GROUP)
        del found
    else:
        dtypes = {f.name: f.type.to_pandas_dtype() for f in pq.read_schema(files[-1])}
        names = [f.name for f in store.get_feature_view(view).features]
        features = pd.DataFrame({n: pd.Series(dtype=dtypes[n]) for n in names})
    del distinct
    features = features.reindex(np.arange(len(first))).take(group).reset_index(drop=True)
    return pd.concat([frame.reset_index(drop=True), features], axis=1)


def _known_entities(files: list[Path], keys: list[str]) -> pd.MultiIndex:
    """Every distinct ``keys`` with a row in the offline table's ``files``."""
    import pyarrow.dataset as ds

    table = ds.dataset([str(p) for p in files], format="parquet").to_table(columns=keys)
    return pd.MultiIndex.from_frame(table.group_by(keys).aggregate([]).to_pandas())


def online_features(config: Config, entities: pd.DataFrame) -> pd.DataFrame:
    store = feature_store(config)
    service = store.get_feature_service(FEATURE_SERVICE)
    rows = entities.astype(str).to_dict(orient="records")
    return store.get_online_features(features=service, entity_rows=rows).to_df()
