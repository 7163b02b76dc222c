"""The Forecasts view as a person uses it: a real `airflow api-server` with the plugin, Debian's
Chromium driven by Playwright, no network beyond this machine.

A viewer logs in, opens Browse → Forecasts (the planners' overview), then the Runs page, whose
monitoring sections show the
realised-accuracy chart's lines (the model and every naive baseline) with the accuracy table's
points, the latest drift table's flagged features highlighted, and the alerts newest first, all
as the predictions database holds them. The viewer picks an entity in the explorer, and the chart's
points are the database's rows and the snapshot's actuals; the CSV download holds the shown rows;
a failed month's link opens its own validation page, which runs the vendored jQuery (the CDN
would be unreachable: every request off 127.0.0.1 is aborted); a month's "Airflow run" link opens
the run's page in the whole window. No console errors in the view.
Screenshots go to the test's temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.helpers.forecasts_view_data import FAILED_VALIDATION, RUN_MONTHS, add_monitoring, build_deployment
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # starts an api-server and a browser (about 30 s each test)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWER, PASSWORD = "viewer", "viewer-password"
PLANNER, PLANNER_PASSWORD = "planner", "planner-password"  # Airflow's User role: may record overrides


def readme_pictures(shots: Path) -> Path:
    """Where the pictures of README.md and docs/ go: FORECAST_SCREENSHOTS when it is set (docs/testing.md
    regenerates them with `FORECAST_SCREENSHOTS=docs/images pytest tests/ui/test_explorer_browser.py
    tests/ui/test_data_docs_offline.py`), else the test's own screenshots folder; the other
    screenshots are test artifacts only."""
    folder = Path(os.environ.get("FORECAST_SCREENSHOTS") or shots)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _browser_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed: make browser (or apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (it is in requirements.lock)")
    return sync_playwright


@pytest.fixture
def api_server(airflow_db, tmp_path):
    """An api-server with the plugin, for a deployment built by forecasts_view_data."""
    from forecasting.orchestration.localrun import free_port

    config = build_deployment(tmp_path / "deployment", hierarchy=True)  # levels for the planners' pages
    add_monitoring(config)  # what forecast_monitoring writes: accuracy, drift, alerts
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({VIEWER: PASSWORD, PLANNER: PLANNER_PASSWORD}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FORECAST_CONFIG": str(config.path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{VIEWER}:viewer,{PLANNER}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API_AUTH__JWT_SECRET": "forecasts-view-test-secret-0123456789abcdef",
        "AIRFLOW__API__SECRET_KEY": "forecasts-view-test-key",
    }
    log = open(tmp_path / "api-server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_up(base, server, tmp_path / "api-server.log")
        yield base, config, tmp_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_until_up(base: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the api-server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the api-server did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def test_a_viewer_explores_an_entity_downloads_it_and_opens_a_failed_validation(api_server):
    sync_playwright = _browser_or_skip()
    base, config, folder = api_server
    shots = folder / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pictures = readme_pictures(shots)
    store, item = 2, 3
    errors: list[str] = []
    offsite: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            laptop = {"width": 1280, "height": 800}
            context = browser.new_context(viewport=laptop, accept_downloads=True)

            def local_only(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:  # as on a machine without internet
                    offsite.append(route.request.url)
                    route.abort()

            context.route("**/*", local_only)
            page = context.new_page()
            page.on(
                "console",
                lambda m: errors.append(f"{m.location.get('url')}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Log in as a viewer; the view opens where the nav link points.
            page.goto(f"{base}/auth/login/?next={base}/plugin/forecasts")
            page.fill("input[name=username]", VIEWER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/plugin/forecasts**", timeout=30_000)
            view = page.frame_locator("iframe[title=Forecasts]")
            view.locator("#totals-by-level").wait_for(timeout=30_000)  # the planners' overview
            assert "/forecast-quality/forecast-quality" not in page.url
            tabs = view.locator("nav.tabs")
            tabs.get_by_role("link", name="Runs", exact=True).click()
            view.locator("#month-status").wait_for(timeout=30_000)
            page.screenshot(path=str(pictures / "runs.png"), full_page=True)
            _assert_monitoring_is_the_database(view, config)
            _assert_readable_on_a_laptop(view)

            # Explorer: search by one column, pick the entity from the list.
            view.get_by_role("link", name="Explorer").click()
            view.locator("input[name=item_id]").fill(str(item))
            view.get_by_role("button", name="Find").click()
            view.get_by_role("link", name=f"store_id {store}, item_id {item}").click()
            view.locator("svg.chart").first.wait_for(timeout=15_000)  # the sales chart, then the price panel
            page.screenshot(path=str(pictures / "explorer.png"), full_page=True)
            _assert_readable_on_a_laptop(view)

            drawn: dict[str, dict[str, float]] = {}
            for series, month, value in view.locator("svg.chart circle[data-series]").evaluate_all(
                "cs => cs.map(c => [c.dataset.series, c.dataset.month, c.dataset.value])"
            ):
                drawn.setdefault(series, {})[month] = float(value)
            _assert_points_are_the_database(drawn, config, store, item)
            _assert_drivers_and_revisions_are_the_database(view, config, store, item)

            with page.expect_download() as download:
                view.get_by_role("link", name="Download CSV").click()
            csv = pd.read_csv(io.StringIO(Path(download.value.path()).read_text()))
            _assert_csv_is_what_is_shown(csv, drawn, store, item)

            # A failed month: its own validation report, rendered with local assets only.
            tabs.get_by_role("link", name="Runs", exact=True).click()
            failed = view.locator(f"tr[data-month='{FAILED_VALIDATION[0]}']")
            assert "failed validation" in failed.inner_text()
            failed.get_by_role("link", name="validation result").click()
            view.locator("#jq").wait_for(timeout=15_000)
            assert view.locator("h1").inner_text() == f"validation of {FAILED_VALIDATION[0]}, " + (
                failed_attempt_name()
            )
            assert view.locator("#jq").inner_text() == "jQuery 3.7.1"  # the vendored copy ran
            page.screenshot(path=str(shots / "failed-validation-link.png"), full_page=True)  # a stand-in page

            # A month's "Airflow run" link opens the run's page in the whole window. Airflow's
            # iframe is sandboxed without allow-top-navigation (target="_top" did nothing).
            page.goto(f"{base}/plugin/forecasts")
            tabs.get_by_role("link", name="Runs", exact=True).click()
            view.locator("#month-status").wait_for(timeout=30_000)
            published = view.locator(f"tr[data-month='{RUN_MONTHS[-1]}'][data-status='published']")
            run_id = published.locator("code").inner_text()
            published.get_by_role("link", name="Airflow run").click()
            page.wait_for_url(f"**/dags/monthly_forecast/runs/{quote(run_id, safe='')}", timeout=15_000)
            # Airflow's own page replaces the view (its router loads the page's code first).
            page.locator("iframe[title=Forecasts]").wait_for(state="detached", timeout=30_000)
            assert page.url.startswith(base)

            # The Runs page on its own (as the iframe shows it, without Airflow's frame): the
            # docs' picture of the monitoring sections (docs/ui.md).
            alone = context.new_page()
            alone.on(
                "console",
                lambda m: errors.append(f"{m.location.get('url')}: {m.text}") if m.type == "error" else None,
            )
            alone.on("pageerror", lambda e: errors.append(str(e)))
            alone.goto(f"{base}/forecast-quality/runs")
            alone.locator("#monitoring svg.chart").first.wait_for(timeout=15_000)
            alone.screenshot(path=str(shots / "overview-page.png"), full_page=True)
            alone.locator("#monitoring").screenshot(path=str(pictures / "monitoring.png"))
        finally:
            browser.close()

    ours = [e for e in errors if "/forecast-quality/" in e or "http" not in e]
    assert not ours, ours
    assert not [u for u in offsite if "/forecast-quality/" in u], offsite


def _db(config, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(sql), conn)
    finally:
        engine.dispose()


def _assert_readable_on_a_laptop(view) -> None:
    """In a laptop-sized window, every table of numbers beside a chart shows all its columns (the
    chart gives way, or goes above the table), not some of them behind a scroll bar; and every
    chart's text is at least 9 px on screen, its month labels apart."""
    cut = view.locator(".numbers").evaluate_all(
        "boxes => boxes.filter(b => b.scrollWidth > b.clientWidth)"
        ".map(b => `${b.className}: ${b.scrollWidth} px in ${b.clientWidth}`)"
    )
    assert not cut, cut
    charts = view.locator("svg.chart").evaluate_all(
        """svgs => svgs.filter(s => s.getBoundingClientRect().width > 0).map(s => {
            const scale = s.getBoundingClientRect().width / s.viewBox.baseVal.width;
            const sizes = [...s.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize));
            const months = [...s.querySelectorAll('text.month')].map(t => t.getBoundingClientRect());
            return {
                chart: s.getAttribute('aria-label'),
                smallest_px: Math.min(...sizes) * scale,
                overlapping: months.slice(1).filter((r, i) => r.left < months[i].right).length,
            };
        })"""
    )
    assert charts
    assert not [c for c in charts if c["smallest_px"] < 9 or c["overlapping"]], charts


def _assert_monitoring_is_the_database(view, config) -> None:
    """The accuracy chart's lines and points, the drift table's flags and the alerts, as shown in
    the browser, against the monitoring tables."""
    from forecasting.modeling.baselines import NAIVE_BASELINES as BASELINES

    # Realised accuracy: one chart per horizon, a line per forecaster, its points the table's.
    view.locator("details.accuracy[data-horizon='1'] svg.chart").wait_for(timeout=15_000)
    drawn: dict[tuple[int, str], dict[str, float]] = {}
    for horizon, series, month, value in view.locator(
        "details.accuracy svg.chart circle[data-series]"
    ).evaluate_all(
        "cs => cs.map(c => [c.closest('details').dataset.horizon, c.dataset.series, c.dataset.month,"
        " c.dataset.value])"
    ):
        drawn.setdefault((int(horizon), series), {})[month] = float(value)
    stored = _db(
        config,
        "SELECT forecast_month, horizon, wape, "
        + ", ".join(f"{b}_wape" for b in BASELINES)
        + " FROM forecasts_accuracy WHERE segment_column = '(all)'",
    )
    stored["month"] = pd.to_datetime(stored["forecast_month"]).dt.strftime("%Y-%m")
    expected = {}
    for horizon, rows in stored.groupby("horizon"):
        expected[(int(horizon), "model")] = dict(zip(rows["month"], rows["wape"], strict=True))
        for b in BASELINES:
            expected[(int(horizon), b)] = dict(zip(rows["month"], rows[f"{b}_wape"], strict=True))
    assert drawn == expected
    first = view.locator("details.accuracy[data-horizon='1']")
    assert first.locator("svg.chart polyline").count() == 1 + len(BASELINES)  # a line each
    legend = first.locator(".legend-item").evaluate_all("items => items.map(i => i.dataset.series)")
    assert legend == ["model", *BASELINES]
    assert first.locator("svg.chart").is_visible() and first.locator("table.accuracy-numbers").is_visible()
    months = first.locator("table.accuracy-numbers tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.month)"
    )
    assert months == sorted(expected[(1, "model")], reverse=True)

    # Drift: the newest month's flagged rows, highlighted and named.
    newest = _db(config, "SELECT max(run_month) AS m FROM forecasts_drift")["m"].iloc[0]
    drift = _db(config, "SELECT feature, drifted FROM forecasts_drift")
    latest = _db(config, f"SELECT feature, drifted FROM forecasts_drift WHERE run_month = '{newest}'")
    flagged = sorted(latest.loc[latest["drifted"].astype(bool), "feature"])
    assert flagged and len(drift) > len(latest)  # an earlier month is in the table, not shown
    shown = view.locator("#drift tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.feature, r.classList.contains('flagged'),"
        " getComputedStyle(r.cells[0]).backgroundColor])"
    )
    assert sorted(f for f, is_flagged, _ in shown if is_flagged) == flagged
    assert sorted(f for f, _, _ in shown) == sorted(latest["feature"])
    highlight = {colour for _, is_flagged, colour in shown if is_flagged}
    plain = {colour for _, is_flagged, colour in shown if not is_flagged}
    assert len(highlight) == 1 and not highlight & plain  # the flagged rows stand out
    named = view.locator("#drifted").inner_text()
    assert all(f in named for f in flagged) and f"{pd.Timestamp(newest):%Y-%m}" in named

    # Alerts: every row, newest first.
    alerts = _db(
        config,
        "SELECT alert_id, kind, metric, subject FROM forecasts_alerts ORDER BY raised_at DESC, alert_id DESC",
    )
    rows = view.locator("#alerts tbody tr").evaluate_all(
        "rs => rs.map(r => [Number(r.dataset.alert), r.dataset.kind, r.cells[3].innerText, r.cells[4].innerText])"
    )
    assert rows == [list(r) for r in alerts.itertuples(index=False)]


def failed_attempt_name() -> str:
    from forecasting.core.paths import run_key

    return f"{run_key(FAILED_VALIDATION[1])}__20250203T100000000000Z"


def _assert_points_are_the_database(drawn, config, store: int, item: int) -> None:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        rows = pd.read_sql_query(
            sa.text("SELECT * FROM forecasts WHERE store_id = :s AND item_id = :i"),
            conn,
            params={"s": store, "i": item},
        )
    engine.dispose()
    rows["run"] = pd.to_datetime(rows["run_month"]).dt.strftime("%Y-%m")
    rows["month"] = pd.to_datetime(rows["forecast_month"]).dt.strftime("%Y-%m")
    latest = rows[rows["run"] == RUN_MONTHS[-1]]
    assert drawn["latest"] == dict(zip(latest["month"], latest["prediction"], strict=True))
    earlier = rows[(rows["run"] < RUN_MONTHS[-1]) & (rows["month"] <= RUN_MONTHS[-1])]
    for h in (1, 2, 3):
        at_h = earlier[earlier["horizon"] == h]
        assert drawn.get(f"ahead{h}", {}) == dict(zip(at_h["month"], at_h["prediction"], strict=True))
    from tests.helpers.forecasts_view_data import snapshot

    history = snapshot()
    mine = history[(history["store_id"] == store) & (history["item_id"] == item)]
    assert drawn["actual"] == dict(zip(mine["month"].dt.strftime("%Y-%m"), mine["units"], strict=True))


def _assert_drivers_and_revisions_are_the_database(view, config, store: int, item: int) -> None:
    """Beside the chart: each family's contribution of the newest run, summing to its forecast of
    each month, and each month's forecasts by every run, as the database has them."""
    entity = f"store_id = {store} AND item_id = {item}"
    drivers = _db(
        config, f"SELECT * FROM forecasts_drivers WHERE {entity} AND run_month = '{RUN_MONTHS[-1]}-01'"
    )
    drivers["month"] = pd.to_datetime(drivers["forecast_month"]).dt.strftime("%Y-%m")
    months = view.locator("#drivers-table thead th.n").all_inner_texts()
    assert months == sorted(set(drivers["month"]))
    for family, part in drivers.groupby("family"):
        cells = view.locator(f"#drivers-table tr[data-family='{family}'] td").evaluate_all(
            "cs => cs.map(c => Number(c.dataset.value))"
        )
        assert cells == pytest.approx(part.sort_values("month")["contribution"].tolist(), rel=1e-5)
    latest = _db(config, f"SELECT * FROM forecasts WHERE {entity} AND run_month = '{RUN_MONTHS[-1]}-01'")
    totals = view.locator("#drivers-table tfoot td").all_inner_texts()
    assert [float(t.replace(",", "")) for t in totals] == pytest.approx(
        latest.sort_values("forecast_month")["prediction"].tolist(), abs=0.05
    )
    revisions = _db(config, f"SELECT * FROM forecasts_revisions WHERE {entity}")
    revisions["month"] = pd.to_datetime(revisions["forecast_month"]).dt.strftime("%Y-%m")
    revisions["run"] = pd.to_datetime(revisions["run_month"]).dt.strftime("%Y-%m")
    shown = view.locator("#revisions-table tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.forecastMonth)"
    )
    revised = revisions.groupby("month").filter(lambda g: len(g) > 1)
    assert shown == sorted(set(revised["month"]), reverse=True)
    for month, runs in revised.groupby("month"):
        steps = view.locator(f"#revisions-table tr[data-forecast-month='{month}'] span[data-run]")
        assert steps.evaluate_all("ss => ss.map(s => s.dataset.run)") == sorted(runs["run"])
        values = [float(t.replace(",", "")) for t in steps.all_inner_texts()]
        assert values == pytest.approx(runs.sort_values("run")["prediction"].tolist(), abs=0.05)


def _assert_csv_is_what_is_shown(csv: pd.DataFrame, drawn, store: int, item: int) -> None:
    assert (csv["store_id"] == store).all() and (csv["item_id"] == item).all()
    for column, series in (
        ("actual", "actual"),
        ("latest_forecast", "latest"),
        ("forecast_1m_ahead", "ahead1"),
    ):
        present = csv.dropna(subset=[column])
        assert dict(zip(present["month"], present[column], strict=True)) == drawn[series]


def test_a_planner_sees_totals_by_level_drills_from_a_group_to_an_entity_and_downloads_the_list(api_server):
    """The planners' overview inside Airflow shows the newest run's forecast by level as
    ``<table>_levels`` holds it; a click on a group opens its chart and its entities, whose
    download holds the listed rows, and a click on an entity opens it in the explorer."""
    sync_playwright = _browser_or_skip()
    base, config, folder = api_server
    pictures = readme_pictures(folder / "screenshots")
    newest, errors = RUN_MONTHS[-1], []
    levels = _db(config, f"SELECT * FROM forecasts_levels WHERE run_month = '{newest}-01' AND horizon = 1")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text)
                    if m.type == "error" and "/forecast-quality/" in (m.location.get("url") or "")
                    else None
                ),
            )
            page.goto(f"{base}/auth/login/?next={base}/plugin/forecasts")
            page.fill("input[name=username]", VIEWER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            view = page.frame_locator("iframe[title=Forecasts]")
            totals = view.locator("#totals-by-level")
            totals.wait_for(timeout=30_000)
            page.screenshot(path=str(pictures / "overview.png"), full_page=True)
            first_month = str(pd.Period(newest, "M") + 1)
            for row in levels.itertuples():  # every group's next month, as the table holds it
                shown = totals.locator(
                    f"tr[data-level='{row.level}'][data-key='{row.level_key}'] td[data-month='{first_month}'] b"
                )
                assert shown.inner_text() == f"{row.prediction:,.1f}", (row.level, row.level_key)

            # A group: its chart and its entities; the download holds the listed rows.
            totals.locator("tr[data-level='category'][data-key='snacks']").get_by_role(
                "link", name="snacks"
            ).click()
            view.locator("#group-title").wait_for(timeout=15_000)
            view.locator("svg.chart").wait_for(timeout=15_000)
            page.screenshot(path=str(pictures / "levels.png"), full_page=True)
            listed = view.locator("#level-rows tbody tr")
            shown = [r.split("\t")[:2] for r in listed.evaluate_all("rs => rs.map(r => r.innerText)")]
            assert len(shown) == 4  # the odd items of both stores
            with page.expect_download() as download:
                view.locator("a[data-export=csv]").click()
            csv = pd.read_csv(io.StringIO(Path(download.value.path()).read_text()))
            assert [[str(s), str(i)] for s, i in zip(csv["store_id"], csv["item_id"], strict=True)] == shown
            assert set(csv["category"]) == {"snacks"} and set(csv["run_month"]) == {newest}

            # An entity of the group opens in the explorer.
            store, item = shown[0]
            listed.first.get_by_role("link").click()
            view.locator("#shown-rows").wait_for(timeout=15_000)  # the explorer's numbers beside its chart
            assert view.locator("h3").first.inner_text() == f"store_id {store}, item_id {item}"
        finally:
            browser.close()
    assert not errors, errors


def test_a_planner_records_an_override_in_the_view_the_publish_applies_it_and_a_viewer_may_not(api_server):
    """The Overrides page inside Airflow: the planner's form post goes through Airflow's login
    (the session cookie, in the sandboxed iframe) and is recorded with the planner's name; the
    next publish applies it and the page says so; the same form from a viewer is refused (403)."""
    from datetime import UTC, datetime

    from forecasting.publishing.overrides import read_overrides
    from forecasting.publishing.publish import publish
    from tests.helpers.forecasts_view_data import RUN_IDS, forecasts

    sync_playwright = _browser_or_skip()
    base, config, folder = api_server
    pictures = readme_pictures(folder / "screenshots")
    newest = RUN_MONTHS[-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for user, password in ((PLANNER, PLANNER_PASSWORD), (VIEWER, PASSWORD)):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.route(
                    "**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort()
                )
                page = context.new_page()
                page.goto(f"{base}/auth/login/?next={base}/plugin/forecasts")
                page.fill("input[name=username]", user)
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.wait_for_url("**/plugin/forecasts**", timeout=30_000)
                view = page.frame_locator("iframe[title=Forecasts]")
                view.locator("nav.tabs").get_by_role("link", name="Overrides").click()
                form = view.locator("#override-form")
                form.wait_for(timeout=30_000)
                form.locator("input[name=store_id]").fill("2")
                form.locator("input[name=item_id]").fill("3")
                form.locator("input[name=first_month]").fill("2025-02")
                form.locator("select[name=kind]").select_option("absolute")
                form.locator("input[name=value]").fill("500")
                form.locator("input[name=reason]").fill(f"a new shelf, says {user}")
                form.get_by_role("button", name="Record").click()
                if user == PLANNER:
                    recorded = view.locator("#override-recorded")
                    recorded.wait_for(timeout=15_000)
                    assert "version 1 (active): the next publish applies it" in recorded.inner_text()
                    [row] = read_overrides(config).to_dict(orient="records")
                    assert (row["created_by"], row["value"], row["store_id"]) == (PLANNER, 500.0, 2)
                    publish(
                        forecasts(newest),
                        config,
                        pd.Period(newest, "M"),
                        model_version="again",
                        run_id=RUN_IDS[newest],
                        created_at=datetime(2025, 1, 2, tzinfo=UTC),
                    )
                    view.locator("nav.tabs").get_by_role("link", name="Overrides").click()
                    view.locator("#outcomes-table").wait_for(timeout=15_000)
                    assert (
                        f"The run of {newest} applied 1 override"
                        in view.locator("#override-outcomes").inner_text()
                    )
                    page.screenshot(path=str(pictures / "overrides.png"), full_page=True)
                else:
                    view.locator("body").get_by_text("Forbidden").wait_for(timeout=15_000)
                    assert len(read_overrides(config)) == 1  # nothing written
                context.close()
        finally:
            browser.close()
    final = _db(
        config,
        f"SELECT final FROM forecasts WHERE run_month = '{newest}-01' AND store_id = 2 AND item_id = 3 AND forecast_month = '2025-02-01'",
    )
    assert final["final"].tolist() == [500.0]


def test_a_viewer_compares_a_scenario_with_the_base_and_zooms_into_an_entity_it_moves(api_server):
    """The Scenarios page inside Airflow: the scenarios listed, the chosen one's totals per month
    (the chart's points and the numbers) as forecasts_scenarios sums them; its biggest mover
    opens in the explorer, whose chart draws the entity's scenario beside the base, the same
    month last year, the price and the promotion months under it; the zoom to 12 months cuts the
    charts and the numbers. Offline, no console errors."""
    from tests.helpers.scenarios_view_data import add_scenarios

    sync_playwright = _browser_or_skip()
    base, config, folder = api_server
    config = add_scenarios(config)  # the running api-server reads the rewritten config
    pictures = readme_pictures(folder / "screenshots")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/auth/login/?next={base}/plugin/forecasts")
            page.fill("input[name=username]", VIEWER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/plugin/forecasts**", timeout=30_000)
            view = page.frame_locator("iframe[title=Forecasts]")
            view.locator("nav.tabs").get_by_role("link", name="Scenarios").click()
            view.locator("#scenario-list").wait_for(timeout=30_000)
            rows = _db(config, "SELECT * FROM forecasts_scenarios")
            rows["month"] = pd.to_datetime(rows["forecast_month"]).dt.strftime("%Y-%m")
            listed = view.locator("#scenario-list tr[data-scenario]").evaluate_all(
                "rs => rs.map(r => r.dataset.scenario)"
            )
            assert listed == sorted(set(rows["scenario"]) - {"base"})

            view.locator("#scenario-list").get_by_role("link", name="promo_snacks").click()
            view.locator("#chosen-scenario", has_text="promo_snacks").wait_for(timeout=15_000)
            totals = rows.pivot_table(index="month", columns="scenario", values="prediction", aggfunc="sum")
            for month, total in totals["promo_snacks"].items():
                cell = view.locator(f"#scenario-months tr[data-month='{month}'] td[data-column='difference']")
                assert float(cell.get_attribute("data-value")) == pytest.approx(
                    total - totals.at[month, "base"]
                )
            points = _points(view.locator("svg.chart circle[data-series]"))
            assert points["scenario"] == pytest.approx(totals["promo_snacks"].to_dict())
            assert points["base"] == pytest.approx(totals["base"].to_dict())
            _assert_readable_on_a_laptop(view)
            page.screenshot(path=str(pictures / "scenarios.png"), full_page=True)

            # The biggest mover, in the explorer: its scenario beside the base, its context.
            view.locator("#scenario-movers a").first.click()
            view.locator("#zoom").wait_for(timeout=15_000)
            mine = rows[
                (rows["store_id"] == 2) & (rows["item_id"] == 3) & (rows["scenario"] == "promo_snacks")
            ]
            drawn = _points(view.locator("svg.chart circle[data-series]"))
            assert drawn["scenario_promo_snacks"] == pytest.approx(
                dict(zip(mine["month"], mine["prediction"], strict=True))
            )
            assert set(drawn["last_year"]) == set(mine["month"])
            view.locator("#zoom").get_by_role("link", name="12 months").click()
            view.locator("#zoom b[data-zoom='12']").wait_for(timeout=15_000)
            zoomed = _points(view.locator("svg.chart circle[data-series]"))
            assert min(m for series in zoomed.values() for m in series) == "2024-01"
            assert min(view.locator("#shown-rows tbody tr td:first-child").all_inner_texts()) == "2024-01"
            promotions = view.locator("svg.chart rect[data-series='promo']").evaluate_all(
                "rs => rs.map(r => r.dataset.month)"
            )
            assert promotions == ["2024-03", "2024-11", "2025-02"]  # the snapshot's, then the plan's
            assert set(zoomed["price_planned"]) == set(mine["month"])
            _assert_readable_on_a_laptop(view)
            view.locator(".entity-charts").screenshot(path=str(pictures / "explorer-context.png"))
        finally:
            browser.close()
    assert not errors, errors


def _points(circles) -> dict[str, dict[str, float]]:
    drawn: dict[str, dict[str, float]] = {}
    for series, month, value in circles.evaluate_all(
        "cs => cs.map(c => [c.dataset.series, c.dataset.month, c.dataset.value])"
    ):
        drawn.setdefault(series, {})[month] = float(value)
    return drawn
