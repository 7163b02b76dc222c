"""Monthly demand forecasting: the library behind the three DAGs (``monthly_forecast``,
``forecast_monitoring``, ``forecast_scenarios``) and the plugins, one module per stage."""

from __future__ import annotations

import sys
from typing import Any


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``typeguard.typechecked`` as it is under ``python -O``: the target unchanged."""
    return _unchecked if target is None else target


class _FeastWithoutTypeguard:
    """Feast decorates its classes with typeguard's ``@typechecked``, which recompiles every
    method when Feast is imported: about half of Feast's import time, paid by every task that touches
    Feast. typeguard itself skips this under ``python -O`` ("meant for selectively introducing
    type checking [...] where the checks aren't meant to be run in production"); so do we,
    just before the first ``import feast`` of the process (nothing else here uses typeguard).
    Importing typeguard up front would slow the DAG files' parse, hence the import hook.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "feast":
            sys.meta_path.remove(self)
            import typeguard

            typeguard.typechecked = _unchecked
        return None  # the normal finders import it


if "feast" not in sys.modules:
    sys.meta_path.insert(0, _FeastWithoutTypeguard())
