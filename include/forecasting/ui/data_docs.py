"""An attempt's Great Expectations Data Docs, served offline by the Forecasts view.

* ``data_docs_file``: a file inside one attempt's Data Docs (never outside it).
* ``data_docs_html``: a Data Docs page with its CDN links rewritten to the copies in ``assets/``
  (served by the plugin at ``<mount>/assets/``), so it renders with no network.
* ``asset_file``: one of those vendored copies, by name.
"""

from __future__ import annotations

import re
from pathlib import Path

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_of

ASSETS = Path(__file__).parent / "assets"

MONTH_PATTERN = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
ATTEMPT_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


class BadRequest(ValueError):
    """A month or run that is not even well-formed (the UI answers 400)."""


def data_docs_file(config: Config, month: str, attempt: str, relative: str) -> Path | None:
    """A file inside the Data Docs of one attempt of month, or None (also for paths that try to
    leave it). Raises BadRequest unless ``month`` is YYYY-MM and ``attempt`` an attempt's name.
    """
    if not MONTH_PATTERN.fullmatch(month):
        raise BadRequest(f"not a month (YYYY-MM): {month!r}")
    if not ATTEMPT_PATTERN.fullmatch(attempt) or paths.run_key(attempt) != attempt:
        raise BadRequest(f"not a run attempt: {attempt!r}")
    if "\x00" in relative:  # no file name holds one; the OS refuses it (ValueError, not 404)
        raise BadRequest("a path with a NUL byte")
    root = paths.data_docs(config, month_of(month), attempt).resolve()
    try:
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
    except OSError:  # e.g. a name longer than the file system allows: no such file
        return None
    return target


# CDN files GX's pages load, by file name, and the vendored copy that stands in for each.
VENDORED = {
    "jquery-3.7.1.min.js": "jquery.min.js",
    "popper.min.js": "popper.min.js",
    "bootstrap.min.js": "bootstrap.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
    "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table.min.css": "bootstrap-table.min.css",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "vega@5": "vega.min.js",
    "vega-lite@5": "vega-lite.min.js",
    "vega-embed@6": "vega-embed.min.js",
    "all.min.css": "fontawesome-all.min.css",  # font-awesome 6.6.0
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
}
# Fonts the vendored stylesheets load from beside themselves (served, never linked from a page).
FONTS = ("fa-solid-900.woff2",)
# GX draws charts with Vega (a vegaEmbed call in the page); a page without one skips their 0.8 MB.
CHART_SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
_EXTERNAL_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="(https?://[^"]+)"[^>]*>\s*</script>', re.I)
_EXTERNAL_LINK = re.compile(r'<link\b[^>]*\bhref="(https?://[^"]+)"[^>]*>', re.I)
_GX_IMAGE = re.compile(r'https://great-expectations-web-assets\.[^"\')\s]+')


def asset_file(name: str) -> Path | None:
    """A vendored asset by name (only the files listed in VENDORED and FONTS)."""
    known = name in set(VENDORED.values()) or name in FONTS
    return ASSETS / name if known and (ASSETS / name).is_file() else None


def data_docs_html(text: str, relative: str) -> str:
    """A Data Docs page that needs no network: CDN scripts and stylesheets point at the vendored
    copies (served at ``<mount>/assets/``) or, where none is vendored, are dropped; Vega's only
    on pages that draw a chart; GX's logos come from the site's own static folder. ``relative`` is
    the page's path inside the Data Docs."""
    depth = relative.count("/")
    to_mount = "../" * (3 + depth)  # data-docs/<month>/<attempt>/<relative>
    to_site = "../" * depth

    def local(url: str) -> str | None:
        name = VENDORED.get(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
        return f"{to_mount}assets/{name}" if name else None

    charts = "vegaEmbed(" in text

    def script(match: re.Match) -> str:
        found = local(match.group(1))
        if found and not charts and found.rsplit("/", 1)[-1] in CHART_SCRIPTS:
            return "<!-- no chart on this page: Vega not loaded -->"
        return f'<script src="{found}"></script>' if found else f"<!-- offline: {match.group(1)} left out -->"

    def link(match: re.Match) -> str:
        found = local(match.group(1))
        if found:
            return f'<link rel="stylesheet" href="{found}">'
        if "stylesheet" in match.group(0):
            return f"<!-- offline: {match.group(1)} left out -->"
        return match.group(0)

    text = _EXTERNAL_SCRIPT.sub(script, text)
    text = _EXTERNAL_LINK.sub(link, text)
    return _GX_IMAGE.sub(f"{to_site}static/images/logo-long.png", text)
