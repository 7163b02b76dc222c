"""The Forecasts view's one Jinja2 environment: templates in ``templates/``, the stylesheet in
``static/forecasts.css``.

The page modules (overview, explorer, monitoring, charts) compute what a page shows and call
``render`` or ``render_page``; the markup is in the templates. Autoescape is on: every value is
escaped unless a template is handed markup that another template rendered.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape

from forecasting.core.config import Config

STATIC = Path(__file__).parent / "static"
TABS = (
    ("Overview", "./"),
    ("Levels", "levels"),
    ("Explorer", "explorer"),
    ("Scenarios", "scenarios"),
    ("Overrides", "overrides"),
    ("Runs", "runs"),
)


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted by a format spec (``"{:,}"``, ``".3f"``, ``"+.1%"`` ...); "" for None."""
    return "" if value is None else format(value, spec)


def wrappable(value: Any) -> Markup:
    """Escaped, with a line-break opportunity after each underscore (long snake_case names)."""
    return Markup(str(escape(value)).replace("_", "_<wbr>"))


def entity_name(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("forecasting.ui", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(fmt=fmt, wrappable=wrappable, query=urlencode, entity_name=entity_name)
    return env


ENV = _environment()


@cache
def stylesheet() -> Markup:
    """static/forecasts.css, inlined by base.html (read once)."""
    return Markup((STATIC / "forecasts.css").read_text())


def render(template: str, **context: Any) -> str:
    """A template (a page or a fragment) rendered with ``context``."""
    return ENV.get_template(template).render(**context)


def macro(template: str, name: str) -> Any:
    """A macro of a template, callable from Python (it returns markup)."""
    return getattr(ENV.get_template(template).module, name)


def render_page(config: Config, active: str, template: str, **context: Any) -> str:
    """A whole page of the view (``template`` extends base.html): tabs, which deployment, its body."""
    return render(
        template,
        active=active,
        tabs=TABS,
        deployment=str(config.path),
        predictions_table=config.predictions.table,
        stylesheet=stylesheet(),
        **context,
    )
