"""Feast definitions of the demand-forecast features: entities, sources, feature views, services.

The pipeline applies these same objects itself (``forecasting.features.store.apply``); this module is
for the ``feast`` CLI. They are built from the deployment's config (``FORECAST_CONFIG``), so the
entity columns and the feature schema always match the data:

    feast -c feature_repo plan                                               # the demo
    feast -c feature_repo -f <data_dir>/feast/feature_store.yaml plan        # any deployment
"""

from forecasting.core import paths
from forecasting.core.config import load_config
from forecasting.features.store import build_definitions

_config = load_config()
# Feast's file registry makes its own folder but not the folders above it: on a fresh checkout
# (no data_dir yet) `feast plan` would stop there.
paths.feast_dir(_config).mkdir(parents=True, exist_ok=True)
_definitions = build_definitions(_config)

# Feast collects the Feast objects it finds at module level.
# FileSource (parquet): <data_dir>/features/entity_month/[!._]*.parquet
sales_history_source = _definitions.source
sales_history = _definitions.view  # FeatureView, TTL 40 days, one row per entity and month
demand_model = _definitions.service  # FeatureService read by training and prediction
# One Entity per configured entity column (store_id and item_id in the demo).
globals().update({entity.name: entity for entity in _definitions.entities})
# With a plans: section (docs/data.md, Plans): the target_month Entity, the plans' FileSource
# (<data_dir>/features/plans/), the offline-only `plans` FeatureView stamped with planned_at,
# and its FeatureService `demand_model_plans`. Without one, nothing.
globals().update({plan_object.name: plan_object for plan_object in _definitions.plan_objects})
