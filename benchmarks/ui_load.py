"""How long the Forecasts view takes to load inside Airflow's UI, in headless Chromium.

Starts a real ``airflow api-server`` with this repository's plugins over a deployment (the demo
that ``make run`` leaves by default: FORECAST_CONFIG and AIRFLOW_HOME as the Makefile sets them),
then opens three pages of the view the way people do: the overview, the explorer with one
entity, and a validation report (GX Data Docs); then, as the floor of any page inside Airflow's
UI, Airflow's own DAG list (on screen once its link to ``monthly_forecast`` is). Each page is
reached

* ``1st``: at its address inside the UI (``/plugin/forecasts/...``: Airflow's page, the view in
  its iframe), the server's first request for it (the overview's: right after the api-server
  started);
* ``same tab``: at its address again in that tab (a reload, or a bookmark opened there);
* ``new tab``: at its address in a new tab of that browser, whose profile on disk has used the
  UI before (Airflow's scripts in its HTTP and code caches, a new page and JavaScript heap);
* ``fresh``: at its address in a new browser profile (nothing cached: a first visit);
* ``in app``: by a click, Airflow's UI already open: Browse → Forecasts from the DAG list, an
  entity's link in the explorer's search results, a month's "validation result" in the overview;
  Dags in Airflow's navigation from the overview.

``--loads`` times each (but 1st). Prints, per page, the median and worst, in milliseconds from
the navigation's start (the click's, in app), of:

* ``ui load``: Airflow's page fired its load event (not in app: Airflow's page stays);
* ``view start``: the view's iframe starts loading the page (all before this is Airflow's own:
  its scripts, then its config, user, menus and plugins from its API);
* ``view load``: the view's iframe fired its load event;
* ``visible``: the view's content is on screen (the overview's status table, the explorer's
  chart, the validation report's tables; Airflow's DAG list, which has no view, its link to
  ``monthly_forecast``), polled every animation frame;

and the view's own server time (request to first byte, inside the iframe). Chromium's time spent
running scripts on Airflow's page (``Performance.getMetrics`` ScriptDuration) is printed beside
each kind: it is how much of a load is Airflow's own JavaScript, which no plugin can shorten.

    make run                                   # once: the demo, published
    .venv/bin/python benchmarks/ui_load.py     # FORECAST_CONFIG / AIRFLOW_HOME as make sets them
    .venv/bin/python benchmarks/ui_load.py --config /path/forecast.yaml --airflow-home /path/airflow
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IFRAME = "iframe[title=Forecasts]"

# Polled every animation frame on Airflow's page: the view's iframe has loaded the page asked
# for and ``selector`` is laid out in it (no ``path``: Airflow's own page shows ``selector``).
# Times are from the navigation's start (the top page's time origin), or from the click
# (``clickedAt``, set by CLICK_TIMER) when there was one: then only a page that the click started
# counts.
READY = """([path, selector]) => {
    const shown = (doc) => [...doc.querySelectorAll(selector)].some(e => e.getBoundingClientRect().height > 0);
    const top = performance.getEntriesByType("navigation")[0];
    const clicked = window.clickedAt;
    const from = clicked === undefined ? 0 : clicked;
    const uiLoad = clicked === undefined ? top.loadEventEnd || null : null;
    if (path === null) {
        return shown(document) ? {"ui load": uiLoad, "visible": performance.now() - from} : null;
    }
    const frame = document.querySelector('iframe[title=Forecasts]');
    const win = frame && frame.contentWindow;
    if (!win || !win.location.pathname.includes(path)) return null;
    const nav = win.performance.getEntriesByType("navigation")[0];
    if (!nav || !nav.loadEventEnd || !shown(win.document)) return null;
    const offset = win.performance.timeOrigin - performance.timeOrigin;
    if (clicked !== undefined && offset < clicked) return null;
    return {
        "ui load": uiLoad,
        "view start": offset - from,
        "view load": offset + nav.loadEventEnd - from,
        "visible": performance.now() - from,
        "view server": nav.responseStart - nav.requestStart,
    };
}"""
# On the element about to be clicked: when the click happens, in Airflow's page's time.
CLICK_TIMER = """(element) => {
    const win = element.ownerDocument.defaultView;
    win.addEventListener("click", () => {
        win.top.clickedAt = win.performance.timeOrigin - win.top.performance.timeOrigin + win.performance.now();
    }, {capture: true, once: true});
}"""
MEASURES = ("ui load", "view start", "view load", "visible", "view server", "ui scripts")
VIEWPORT = {"width": 1400, "height": 900}


@dataclass(frozen=True)
class ViewPage:
    name: str
    address: str  # inside the UI
    path: str | None  # the view's own path, to wait for (None: a page of Airflow's own)
    shows: str  # what shows it is on screen
    comes_from: str  # the address inside the UI a person clicks from
    clicks: tuple[str, ...]  # what they click, in order
    in_view: bool  # the clicks are inside the view's iframe (else on Airflow's page)


def pages(config) -> list[ViewPage]:
    """The three pages of the deployment's view, and how a person reaches each by a click; then
    Airflow's own DAG list, the same way, as the floor: what any page inside Airflow's UI takes
    before a plugin's part starts."""
    from forecasting.ui.data_docs import MONTH_PATTERN
    from forecasting.ui.explorer import find_entities

    entities = find_entities(config, {})  # the newest run's, in order
    if not entities:
        raise SystemExit("nothing is published: run `make run` first")
    entity = urlencode(entities[0])
    first_column, first_value = next(iter(entities[0].items()))
    runs = config.data_dir / "runs"
    reports = sorted(
        (
            p
            for p in runs.glob("*/*/data_docs/validations/**/*.html")
            if MONTH_PATTERN.fullmatch(p.parts[len(runs.parts)])
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not reports:
        raise SystemExit(f"no validation report under {runs}: run `make run` first")
    month, attempt = reports[-1].relative_to(runs).parts[:2]
    report = reports[-1].relative_to(runs / month / attempt / "data_docs").as_posix()
    docs = f"forecast-quality/data-docs/{month}/{attempt}/{report}"
    return [
        ViewPage(
            "overview",
            "/plugin/forecasts",
            "/forecast-quality/",
            "#month-status",
            comes_from="/dags",
            clicks=("role=button[name='Browse']", "role=menuitem[name='Forecasts']"),
            in_view=False,
        ),
        ViewPage(
            "explorer (one entity)",
            f"/plugin/forecasts/forecast-quality/explorer?{entity}",
            "/forecast-quality/explorer",
            "svg.chart",
            comes_from="/plugin/forecasts/forecast-quality/explorer?"
            + urlencode({first_column: first_value}),
            clicks=(f'a[href="explorer?{entity}"]',),
            in_view=True,
        ),
        ViewPage(
            "validation report",
            f"/plugin/forecasts/{docs}",
            "/data-docs/",
            "table",
            comes_from="/plugin/forecasts",
            clicks=(f"tr[data-month='{month}'] >> role=link[name='validation result']",),
            in_view=True,
        ),
        ViewPage(
            "Airflow's DAG list",
            "/dags",
            None,
            'a[href="/dags/monthly_forecast"]',
            comes_from="/plugin/forecasts",
            clicks=("role=link[name='Dags']",),
            in_view=False,
        ),
    ]


@contextmanager
def api_server(config_path: Path, home: Path, log: Path) -> Iterator[str]:
    """An api-server with this repository's plugins for the deployment, as ``make ui`` starts it
    (everyone an admin, no login); its base URL."""
    from forecasting.orchestration.localrun import Api, api_server_settings, free_port, stop

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(home),
        "FORECAST_CONFIG": str(config_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        **api_server_settings(port),
        "GX_ANALYTICS_ENABLED": "false",
    }
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def alive() -> None:
                if server.poll() is not None:
                    raise RuntimeError(f"the api-server exited with {server.returncode}: see {log}")

            Api(base).wait_until_up(300, alive)
            yield base
        finally:
            stop([server])


def script_ms(cdp) -> float:
    """Chromium's time running scripts on the page (since its navigation), in milliseconds."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return 1000 * next(m["value"] for m in metrics if m["name"] == "ScriptDuration")


def timed(page, view: ViewPage, act: Callable[[], object], navigates: bool) -> dict[str, float]:
    """Does ``act`` in ``page``, a navigation or a click; the times once the view's page is on
    screen, and Chromium's script time on the page since (a navigation starts the page's count
    afresh, a click adds to the count so far)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    before = 0.0 if navigates else script_ms(cdp)
    act()
    handle = page.wait_for_function(READY, arg=[view.path, view.shows], polling="raf", timeout=60_000)
    times = handle.json_value()
    times["ui scripts"] = script_ms(cdp) - before
    cdp.detach()
    return times


def load(page, url: str, view: ViewPage) -> dict[str, float]:
    """Opens ``url`` in ``page``; the times once the view's page is on screen."""
    return timed(page, view, lambda: page.goto(url, wait_until="commit"), navigates=True)


def click_through(page, base: str, view: ViewPage) -> dict[str, float]:
    """Opens where a person comes from, waits until it has settled, then clicks to the view's
    page; the times from the last click."""
    page.goto(base + view.comes_from)
    page.wait_for_load_state("networkidle")
    where = page.frame_locator(IFRAME) if view.in_view else page
    for step in view.clicks[:-1]:
        where.locator(step).click()
    target = where.locator(view.clicks[-1])
    target.wait_for()
    target.evaluate(CLICK_TIMER)
    return timed(page, view, target.click, navigates=False)


@contextmanager
def browser_profile(playwright) -> Iterator:
    """Chromium with a new profile on disk (its caches kept as a person's browser keeps them),
    removed after."""
    folder = Path(tempfile.mkdtemp(prefix="ui-load-profile-"))
    context = playwright.chromium.launch_persistent_context(
        str(folder), executable_path=CHROMIUM, args=["--no-sandbox"], viewport=VIEWPORT
    )
    try:
        yield context
    finally:
        context.close()
        shutil.rmtree(folder, ignore_errors=True)


def summary(name: str, kind: str, samples: list[dict[str, float]]) -> str:
    cells = []
    for measure in MEASURES:
        values = [s[measure] for s in samples if s.get(measure) is not None]
        cells.append(f"{statistics.median(values):7.0f} {max(values):7.0f}" if values else f"{'-':>15}")
    return f"{name:<22} {kind:<9} " + " ".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=os.environ.get("FORECAST_CONFIG", str(REPO / "config" / "demo.yaml"))
    )
    parser.add_argument("--airflow-home", default=os.environ.get("AIRFLOW_HOME", str(REPO / ".airflow")))
    parser.add_argument("--loads", type=int, default=7, help="loads per page and kind (default 7)")
    parser.add_argument("--screenshots", help="folder for a screenshot of each page")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from forecasting.core.config import load_config

    if not Path(CHROMIUM).is_file():
        raise SystemExit("no Chromium: make browser (or apt-get install -y chromium)")
    config_path = Path(args.config).resolve()
    config = load_config(config_path)
    to_load = pages(config)
    log = Path(tempfile.mkdtemp(prefix="ui-load-")) / "api-server.log"
    print(f"deployment {config_path}, AIRFLOW_HOME {args.airflow_home}; api-server log {log}")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{args.loads} loads per page and kind; milliseconds from the navigation's start, median and worst")
    print(f"{'page':<22} {'reached':<9} " + " ".join(f"{m:>15}" for m in MEASURES))
    with api_server(config_path, Path(args.airflow_home), log) as base, sync_playwright() as p:
        with browser_profile(p) as used:  # the browser a person uses Airflow in
            page = used.new_page()
            for view in to_load:
                url = base + view.address
                print(summary(view.name, "1st", [load(page, url, view)]))
                print(summary(view.name, "same tab", [load(page, url, view) for _ in range(args.loads)]))
                if args.screenshots:
                    Path(args.screenshots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(args.screenshots) / f"{view.name.split()[0]}.png"))
                new_tab = []
                for _ in range(args.loads):
                    tab = used.new_page()
                    new_tab.append(load(tab, url, view))
                    tab.close()
                print(summary(view.name, "new tab", new_tab))
                fresh = []
                for _ in range(args.loads):
                    with browser_profile(p) as first_visit:
                        fresh.append(load(first_visit.new_page(), url, view))
                print(summary(view.name, "fresh", fresh))
                in_app = [click_through(page, base, view) for _ in range(args.loads)]
                print(summary(view.name, "in app", in_app), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
