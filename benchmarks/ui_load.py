"""How long the Forecasts view takes to load inside Airflow's UI, in headless Chromium.

Starts a real ``airflow api-server`` with this repository's plugins over a deployment (the demo
that ``make run`` leaves by default: FORECAST_CONFIG and AIRFLOW_HOME as the Makefile sets them),
then opens three pages of the view the way a person does, at their addresses inside the UI
(``/plugin/forecasts/...``: Airflow's page, the view in its iframe): the overview, the explorer
with one entity, and a validation report (GX Data Docs). Each page is loaded once (``1st``: the
server's first request for it, right after the api-server started), then ``--loads`` times in
that browser (``cached``: Airflow's scripts cached, as for anyone who uses the UI) and as many
times in a fresh browser profile each (``fresh``: nothing cached). Prints, per page, the median
and worst, in milliseconds from the start of the navigation, of:

* ``ui load``: Airflow's page fired its load event;
* ``view start``: Airflow's UI made the view's iframe, which starts loading (all before this is
  Airflow's own: its scripts, then its config, user, menus and plugins from its API);
* ``view load``: the view's iframe fired its load event;
* ``visible``: the view's content is on screen (the overview's status table, the explorer's
  chart, the validation report's tables), polled every animation frame;

and the view's own server time (request to first byte, inside the iframe).

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IFRAME = "iframe[title=Forecasts]"

# Polled every animation frame on Airflow's page: the view's iframe has loaded the page asked
# for and ``selector`` is laid out in it. Times are from the navigation's start (the top page's
# time origin).
READY = """([path, selector]) => {
    const frame = document.querySelector('iframe[title=Forecasts]');
    const win = frame && frame.contentWindow;
    if (!win || !win.location.pathname.includes(path)) return null;
    const nav = win.performance.getEntriesByType("navigation")[0];
    const shown = [...win.document.querySelectorAll(selector)].some(e => e.getBoundingClientRect().height > 0);
    if (!nav || !nav.loadEventEnd || !shown) return null;
    const top = performance.getEntriesByType("navigation")[0];
    const offset = win.performance.timeOrigin - performance.timeOrigin;
    return {
        "ui load": top.loadEventEnd || null,
        "view start": offset,
        "view load": offset + nav.loadEventEnd,
        "visible": performance.now(),
        "view server": nav.responseStart - nav.requestStart,
    };
}"""
MEASURES = ("ui load", "view start", "view load", "visible", "view server")


def pages(config) -> list[tuple[str, str, str, str]]:
    """(name, address inside the UI, the view's own path to wait for, what shows it is there)."""
    from forecasting.explorer import find_entities
    from forecasting.report import MONTH_PATTERN

    entities = find_entities(config, {})  # the newest run's, in order
    if not entities:
        raise SystemExit("nothing is published: run `make run` first")
    entity = urlencode(entities[0])
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
        ("overview", "/plugin/forecasts", "/forecast-quality/", "#month-status"),
        (
            "explorer (one entity)",
            f"/plugin/forecasts/forecast-quality/explorer?{entity}",
            "/forecast-quality/explorer",
            "svg.chart",
        ),
        ("validation report", f"/plugin/forecasts/{docs}", "/data-docs/", "table"),
    ]


@contextmanager
def api_server(config_path: Path, home: Path, log: Path) -> Iterator[str]:
    """An api-server with this repository's plugins for the deployment, as ``make ui`` starts it
    (everyone an admin, no login); its base URL."""
    from forecasting.localrun import Api, api_server_settings, free_port, stop

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


def load(page, url: str, path: str, selector: str) -> dict[str, float]:
    page.goto(url, wait_until="commit")
    handle = page.wait_for_function(READY, arg=[path, selector], polling="raf", timeout=60_000)
    return handle.json_value()


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

    from forecasting.config import load_config

    if not Path(CHROMIUM).is_file():
        raise SystemExit("no Chromium: make browser (or apt-get install -y chromium)")
    config_path = Path(args.config).resolve()
    config = load_config(config_path)
    to_load = pages(config)
    log = Path(tempfile.mkdtemp(prefix="ui-load-")) / "api-server.log"
    print(f"deployment {config_path}, AIRFLOW_HOME {args.airflow_home}; api-server log {log}")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{args.loads} loads per page and kind; milliseconds from the navigation's start, median and worst")
    print(f"{'page':<22} {'browser':<9} " + " ".join(f"{m:>15}" for m in MEASURES))
    with api_server(config_path, Path(args.airflow_home), log) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            seen = browser.new_context(viewport={"width": 1400, "height": 900})
            page = seen.new_page()
            for name, address, path, selector in to_load:
                url = base + address
                first = load(page, url, path, selector)  # the server's first request for it
                print(summary(name, "1st", [first]))
                warm = [load(page, url, path, selector) for _ in range(args.loads)]
                print(summary(name, "cached", warm))
                if args.screenshots:
                    Path(args.screenshots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(args.screenshots) / f"{name.split()[0]}.png"))
                cold = []
                for _ in range(args.loads):
                    fresh = browser.new_context(viewport={"width": 1400, "height": 900})
                    try:
                        cold.append(load(fresh.new_page(), url, path, selector))
                    finally:
                        fresh.close()
                print(summary(name, "fresh", cold), flush=True)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
