"""The Feast feature store: definitions, apply, materialize, point-in-time retrieval.

Feast's settings come from the ``feature_store`` section of the forecast config (same keys as
``feature_store.yaml``), so one file still drives a deployment. The definitions read their
schema from the offline table that ``features.build_features`` wrote, so they always match it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

from forecasting import paths
from forecasting.config import REPO_ROOT, Config
from forecasting.features import CREATED, TIMESTAMP, feature_names
from forecasting.months import month_end

log = logging.getLogger(__name__)

FEATURE_VIEW = "sales_history"
FEATURE_SERVICE = "demand_model"
FEATURE_REPO = REPO_ROOT / "feature_repo"
# A feature row describes one month; an older one must not stand in for a missing month.
FEATURE_TTL = timedelta(days=40)


@contextlib.contextmanager
def _quiet_dask():
    """Feast's dask offline store triggers a pandas FutureWarning (downcasting) we can't act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask\.")
        yield


def repo_config(config: Config):
    from feast.repo_config import RepoConfig

    settings = {"provider": "local", "entity_key_serialization_version": 3, **config.feature_store}
    repo = RepoConfig(**settings)
    repo.repo_path = FEATURE_REPO
    return repo


def feature_store(config: Config):
    from feast import FeatureStore

    return FeatureStore(config=repo_config(config))


def write_feature_store_yaml(config: Config) -> Path:
    """Write this deployment's feature_store.yaml, for the ``feast`` CLI (``feast -f PATH ...``)."""
    path = config.data_dir / "feast" / "feature_store.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.feature_store, sort_keys=False))
    return path


@dataclass
class Definitions:
    entities: list
    source: object
    view: object
    service: object

    def objects(self) -> list:
        return [*self.entities, self.source, self.view, self.service]


def offline_schema(config: Config):
    folder = paths.feature_table(config)
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no feature files in {folder}: build the features before applying Feast")
    return pq.read_schema(files[-1])


def build_definitions(config: Config) -> Definitions:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    schema = offline_schema(config)
    keys = config.source.entity_columns
    entities = [
        Entity(name=key, join_keys=[key], value_type=ValueType.STRING, description=f"source column {key}")
        for key in keys
    ]
    source = FileSource(
        name=f"{FEATURE_VIEW}_source",
        path=str(paths.feature_table(config)),
        timestamp_field=TIMESTAMP,
        created_timestamp_column=CREATED,
    )
    fields = [Field(name=key, dtype=String) for key in keys]
    for name in feature_names(config):
        kind = schema.field(name).type
        fields.append(Field(name=name, dtype=String if str(kind) in ("string", "large_string") else Float64))
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=entities,
        ttl=FEATURE_TTL,
        schema=fields,
        source=source,
        online=True,
        description="Sales history, calendar, covariates and attributes of an entity as of a month's end.",
    )
    service = FeatureService(name=FEATURE_SERVICE, features=[view],
                             description="Everything the demand model reads.")
    return Definitions(entities=entities, source=source, view=view, service=service)


def apply(config: Config) -> Definitions:
    """Register (or update) the definitions; applying twice is a no-op."""
    definitions = build_definitions(config)
    Path(config.data_dir / "feast").mkdir(parents=True, exist_ok=True)
    feature_store(config).apply(definitions.objects())
    write_feature_store_yaml(config)
    return definitions


def materialize(config: Config, month: pd.Period) -> int:
    """Load the features as of the end of M into the online store; returns entities loaded.

    The online store serves the newest month. A backfill of an older month leaves it alone
    (Feast would overwrite newer rows with older ones).
    """
    folder = paths.feature_table(config)
    newest = max(p.stem for p in folder.glob("*.parquet"))
    if newest > str(month):
        log.info("Online store left at %s: %s is older", newest, month)
        return 0
    store = feature_store(config)
    end = month_end(month).tz_localize("UTC").to_pydatetime()
    # Feast prints coloured progress to stdout; keep task logs readable by logging it plainly.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), _quiet_dask():
        store.materialize(start_date=end - FEATURE_TTL, end_date=end, feature_views=[FEATURE_VIEW])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", printed.getvalue()).strip()
    if plain:
        log.info("Feast: %s", " ".join(plain.split()))
    return len(pd.read_parquet(folder / f"{month}.parquet", columns=config.source.entity_columns))


def historical_features(config: Config, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each row gets the latest features stamped at or before its timestamp."""
    store = feature_store(config)
    service = store.get_feature_service(FEATURE_SERVICE)
    frame = entity_rows.copy()
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    job = store.get_historical_features(entity_df=frame, features=service)
    with _quiet_dask():
        return job.to_df()


def online_features(config: Config, entities: pd.DataFrame) -> pd.DataFrame:
    store = feature_store(config)
    service = store.get_feature_service(FEATURE_SERVICE)
    rows = entities.astype(str).to_dict(orient="records")
    return store.get_online_features(features=service, entity_rows=rows).to_df()
