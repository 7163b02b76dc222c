"""A real Great Expectations validation report, served by the Forecasts view, on a machine
without internet: a real `airflow api-server` with the plugin and Debian's Chromium, every
request off 127.0.0.1 aborted.

The report is GX's own (validate_snapshot on a snapshot with null keys, so it has failed
expectations), whose pages link jQuery, Bootstrap, bootstrap-table, the date picker, the dark
theme, Vega, Vega-Lite, Vega-Embed and Font Awesome from CDNs. Served through the view, every
one comes from the vendored copies: the index and the validation page render with no console
error, no failed request and no request leaving the machine; each library runs, and the failed
expectation's icon is drawn in Font Awesome's font. Vega is loaded only by pages with a chart:
a page GX renders with one (its page view, from an Altair chart as GX makes them) draws it.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.helpers.forecasts_view_data import snapshot

# The browser test's api-server (a viewer's login, the plugin, a deployment built in a second).
from tests.ui.test_explorer_browser import (  # noqa: F401
    PASSWORD,
    VIEWER,
    _browser_or_skip,
    api_server,
    readme_pictures,
)

pytestmark = pytest.mark.slow  # starts an api-server and a browser

MONTH = "2024-12"
RUN_ID = "manual__2025-01-07T00:00:00+00:00"


def real_data_docs(config) -> tuple[str, str]:
    """GX's Data Docs of a failed validation of MONTH, as the validate stage builds them, in an
    attempt of their own: (attempt, the validation page's path inside the site)."""
    from forecasting.core import paths
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.data.validate import validate_snapshot

    month = pd.Period(MONTH, "M")
    attempt = f"{paths.run_key(RUN_ID)}__20250107T000000000000Z"
    bad = snapshot()
    bad.loc[bad.index[-3:], "store_id"] = None  # 3 null keys: one failed expectation
    site = paths.data_docs(config, month, attempt)
    with pytest.raises(DataValidationError, match="expect_column_values_to_not_be_null"):
        validate_snapshot(bad, config, month, site)
    (page,) = (site / "validations").rglob("*.html")
    return attempt, page.relative_to(site).as_posix()


def gx_chart_page(site, beside: str) -> str:
    """A page rendered by GX's own page view with a chart (a Vega-Lite spec, which GX draws with
    vegaEmbed), written beside the validation page; its path inside the site."""
    import json

    from great_expectations.render import (
        RenderedDocumentContent,
        RenderedGraphContent,
        RenderedSectionContent,
    )
    from great_expectations.render.view import DefaultJinjaPageView

    # Vega-Lite 5, which GX's pages load (the installed Altair writes 6: Vega-Lite 5 warns on it).
    chart = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"store": "1", "nulls": 0}, {"store": "2", "nulls": 3}]},
        "mark": "bar",
        "encoding": {
            "x": {"field": "store", "type": "nominal"},
            "y": {"field": "nulls", "type": "quantitative"},
        },
    }
    document = RenderedDocumentContent(
        renderer_type="ValidationResultsPageRenderer",
        expectation_suite_name=f"snapshot_{MONTH}",
        sections=[
            RenderedSectionContent(
                section_name="chart",
                content_blocks=[RenderedGraphContent(graph=json.dumps(chart), header="null keys by store")],
            )
        ],
    )
    relative = beside.rsplit("/", 1)[0] + "/chart.html"
    (site / relative).write_text(DefaultJinjaPageView().render(document))
    return relative


def test_a_validation_report_renders_offline_from_the_vendored_assets(api_server):  # noqa: F811
    sync_playwright = _browser_or_skip()
    from forecasting.core import paths
    from tests.ui.test_explorer_browser import CHROMIUM

    base, config, folder = api_server
    attempt, validation_page = real_data_docs(config)
    chart_page = gx_chart_page(paths.data_docs(config, pd.Period(MONTH, "M"), attempt), validation_page)
    site = f"{base}/forecast-quality/data-docs/{MONTH}/{attempt}"
    shots = folder / "screenshots"
    shots.mkdir(exist_ok=True)
    errors: list[str] = []
    offsite: list[str] = []
    failed: list[str] = []
    fetched: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})

            def local_only(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:  # as on a machine without internet
                    offsite.append(route.request.url)
                    route.abort()

            context.route("**/*", local_only)
            page = context.new_page()
            # errors, and warnings (GX logs a chart that fails to draw with console.warn)
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.on(
                "response",
                lambda r: failed.append(f"{r.url}: {r.status}") if r.status >= 400 else fetched.append(r.url),
            )

            page.goto(f"{base}/auth/login/?next={site}/index.html")
            page.fill("input[name=username]", VIEWER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{site}/index.html", timeout=30_000)

            # The index: bootstrap-table (on jQuery) builds the list of validations from its data,
            # each row a link; following it opens the validation page.
            page.wait_for_load_state("load")
            row = page.locator(".bootstrap-table tr[data-href*='validations/']").first
            row.wait_for(timeout=15_000)
            assert row.get_attribute("data-href") == validation_page
            page.screenshot(path=str(shots / "data-docs-index.png"), full_page=True)
            row.locator("td").first.click()
            page.wait_for_url(f"{site}/{validation_page}", timeout=15_000)
            page.wait_for_load_state("load")
            assert "store_id" in page.locator("body").inner_text()
            ran = page.evaluate(
                """() => ({
                    jquery: window.jQuery && jQuery.fn.jquery,
                    bootstrap: typeof jQuery.fn.tooltip,
                    bootstrapTable: typeof jQuery.fn.bootstrapTable,
                    datepicker: typeof jQuery.fn.datepicker,
                    popper: typeof window.Popper,
                    vega: typeof window.vega,
                })"""
            )
            assert ran == {
                "jquery": "3.7.1",
                "bootstrap": "function",
                "bootstrapTable": "function",
                "datepicker": "function",
                "popper": "function",
                "vega": "undefined",  # no chart on this page: its 0.8 MB of Vega is not loaded
            }
            # The failed expectation's cross, in Font Awesome's solid font (loaded, not a box).
            icon_font = page.evaluate(
                """async () => {
                    await document.fonts.ready;
                    const icon = document.querySelector(".fas.fa-times");
                    return [getComputedStyle(icon, "::before").fontFamily,
                            document.fonts.check('900 16px "Font Awesome 6 Free"')];
                }"""
            )
            assert "Font Awesome 6 Free" in icon_font[0] and icon_font[1] is True, icon_font
            page.screenshot(path=str(shots / "data-docs-validation.png"), full_page=True)
            served = page.content()
            assert not [u for u in fetched if "/assets/vega" in u]

            # A page with a chart: Vega, Vega-Lite and Vega-Embed (the vendored copies) draw it.
            page.goto(f"{site}/{chart_page}")
            page.wait_for_load_state("load")
            page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=15_000)
            versions = page.evaluate("() => [vega.version, vegaLite.version, vegaEmbed.version]")
            assert versions == ["5.33.1", "5.23.0", "6.29.0"]
            page.screenshot(path=str(shots / "data-docs-chart.png"), full_page=True)
            charted = page.content()

            # The report inside Airflow's UI, where the overview's "validation result" link opens
            # it (Airflow's own console is not this test's business: a page of its own).
            inside = context.new_page()
            inside.set_viewport_size({"width": 1280, "height": 800})
            inside.goto(
                f"{base}/plugin/forecasts/forecast-quality/data-docs/{MONTH}/{attempt}/{validation_page}"
            )
            report = inside.frame_locator("iframe[title=Forecasts]")
            report.locator(".fas.fa-times").first.wait_for(timeout=30_000)  # a failed expectation
            inside.screenshot(path=str(readme_pictures(shots) / "validation.png"))
        finally:
            browser.close()

    assert not offsite, offsite  # nothing even tried to leave the machine
    assert not errors, errors
    assert not failed, failed
    assert any(u.endswith("/assets/fa-solid-900.woff2") for u in fetched), fetched
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        assert any(u.endswith(f"/assets/{name}") for u in fetched), fetched
    for html in (served, charted):
        assert not re.search(r'(src|href)="https?://', html.replace('href="https://greatexpectations.io', ""))
        assert "offline:" not in html  # no CDN tag was left out: every one has its local copy
