"""Point-in-time features computed from the panel, standing in for Feast in tests that need none."""

from __future__ import annotations


def in_memory_features(config, panel, entity, origin, client=None):
    """What Feast's point-in-time join answers for (entity, origin) rows: the features of the
    entity's feature row at the origin month, computed from the panel (a stand-in for
    ``dataset.retrieve`` where a test needs no Feast)."""
    import numpy as np
    import pandas as pd

    from forecasting.features.catalogue import feature_arrays, feature_names

    arrays = feature_arrays(panel, config)
    column = np.asarray(origin) - panel.first_month
    return pd.DataFrame({name: arrays.values[name][entity, column] for name in feature_names(config)})


def in_memory_features_unordered(config, panel, entity, origin, client=None):
    """``dataset.retrieve_unordered``'s stand-in: ``in_memory_features`` answered in reverse
    order (Feast's order is not the pairs'), with each pair's position in that answer."""
    import numpy as np

    features = in_memory_features(config, panel, entity, origin)
    n = len(features)
    return features.iloc[::-1].reset_index(drop=True), n - 1 - np.arange(n)


def without_feast(patch) -> None:
    """Point-in-time features computed from the panel instead of asked of Feast (``patch``: a
    pytest MonkeyPatch), for tests that need no Feast."""
    from forecasting.features import dataset

    patch.setattr(dataset, "retrieve", in_memory_features)
    patch.setattr(dataset, "retrieve_unordered", in_memory_features_unordered)
