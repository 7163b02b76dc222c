"""The Forecasts view in the Airflow UI.

Adds "Forecasts" to Browse: an overview for planners (the newest run's forecast by level, the
biggest changes, the biased series, the alerts), an explorer by level (any level's groups, a
group's chart and entities, CSV and Parquet downloads), the runs (every month's runs and status,
the model against every baseline), an explorer (one entity's history, forecasts and earlier forecasts vs actuals, as
a chart, a table and a CSV) and the planners' overrides (what the newest run applied and refused,
a form, the audit trail), plus each attempt's Great Expectations Data Docs served offline. A
FastAPI app mounted by the api-server at /forecast-quality; only users who may read
monthly_forecast's runs can open it, and only those who may trigger them can record an override
(forecasting.ui.overrides). The pages are rendered by forecasting.ui.planner,
forecasting.ui.levels, forecasting.ui.overview and forecasting.ui.explorer (from the Jinja2 templates in forecasting/ui/templates, the stylesheet
inlined); the Data Docs and their vendored assets are served by forecasting.ui.data_docs.
"""

from __future__ import annotations

from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from forecasting.core.names import FORECAST_DAG as DAG_ID
from forecasting.orchestration.warm_up import warm_up

app = FastAPI(
    title="Forecasts",
    # Not for everyone to browse: the app's API is its pages.
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))],
    lifespan=warm_up,  # the pages' imports, when the api-server starts (forecasting.orchestration.warm_up)
)


def _run_states() -> dict[str, str]:
    """Airflow's state of each run of the DAG (tells a running attempt from a stopped one)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == DAG_ID))
        return {run_id: str(state) for run_id, state in rows}


@app.get("/runs", response_class=HTMLResponse)
def runs() -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.overview import render

    return render(load_config(), _run_states())


@app.get("/explorer", response_class=HTMLResponse)
def explorer(request: Request) -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.explorer import render_explorer

    return render_explorer(load_config(), dict(request.query_params))


@app.get("/explorer.csv")
def explorer_csv(request: Request) -> Response:
    from forecasting.core.config import load_config
    from forecasting.ui.explorer import BadEntity, entity_csv

    try:
        found = entity_csv(load_config(), dict(request.query_params))
    except BadEntity as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    if found is None:
        raise HTTPException(status_code=404, detail="no forecasts for that entity")
    filename, text = found
    return Response(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


# --- what-if scenarios: the forecast_scenarios DAG's forecasts beside the base plan's ----------


@app.get("/scenarios", response_class=HTMLResponse)
def scenarios(request: Request) -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.scenarios import render_scenarios

    return render_scenarios(load_config(), dict(request.query_params))


# --- the planners' pages: the overview, the explorer by level and its downloads -------------------


@app.get("/", response_class=HTMLResponse)
def overview() -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.planner import render_overview

    return render_overview(load_config())


@app.get("/levels", response_class=HTMLResponse)
def levels(request: Request) -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.levels import render_levels

    return render_levels(load_config(), dict(request.query_params))


@app.get("/levels.{kind}")
def levels_export(kind: str, request: Request) -> Response:
    from forecasting.core.config import load_config
    from forecasting.ui.export import export
    from forecasting.ui.levels import BadSelection

    try:
        found = export(load_config(), dict(request.query_params), kind)
    except BadSelection as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    if found is None:
        raise HTTPException(status_code=404, detail="nothing published yet")
    filename, media_type, content = found
    disposition = f'attachment; filename="{filename}"'
    return Response(content, media_type=media_type, headers={"Content-Disposition": disposition})


# --- overrides --------------------------------------------------------------------------------

# Recording an override takes Airflow's permission to trigger monthly_forecast runs (the User
# role and above with the simple auth manager): a viewer reads the page, and is refused (403) here.
may_override = [Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))]


@app.get("/overrides", response_class=HTMLResponse)
def overrides(request: Request) -> str:
    from forecasting.core.config import load_config
    from forecasting.ui.overrides import render_overrides

    return render_overrides(load_config(), recorded=request.query_params.get("recorded"))


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items()}


@app.post("/overrides", dependencies=may_override)
async def record_override(request: Request, user: GetUserDep) -> Response:
    """Record the form's override as the signed-in user; refused (400): the page with why."""
    from forecasting.core.config import load_config
    from forecasting.publishing.overrides import OverrideError
    from forecasting.ui.overrides import record_from_form, render_overrides

    config, form = load_config(), await _form(request)
    try:
        row = record_from_form(config, form, user.get_name())
    except OverrideError as err:
        return HTMLResponse(render_overrides(config, form=form, error=str(err)), status_code=400)
    return RedirectResponse(f"overrides?recorded={quote(row['override_id'])}", status_code=303)


@app.post("/withdraw", dependencies=may_override)
async def withdraw_override(request: Request, user: GetUserDep) -> Response:
    from forecasting.core.config import load_config
    from forecasting.publishing.overrides import OverrideError
    from forecasting.ui.overrides import render_overrides, withdraw_from_form

    config = load_config()
    try:
        row = withdraw_from_form(config, await _form(request), user.get_name())
    except OverrideError as err:
        return HTMLResponse(render_overrides(config, error=str(err)), status_code=400)
    return RedirectResponse(f"overrides?recorded={quote(row['override_id'])}", status_code=303)


@app.get("/assets/{name}")
def asset(name: str) -> FileResponse:
    from forecasting.ui.data_docs import asset_file

    found = asset_file(name)
    if found is None:
        raise HTTPException(status_code=404, detail="no such asset")
    return FileResponse(found, headers={"Cache-Control": "max-age=86400"})


@app.get("/data-docs/{month}/{attempt}/{path:path}")
def data_docs(month: str, attempt: str, path: str) -> Response:
    from forecasting.core.config import load_config
    from forecasting.ui.data_docs import BadRequest, data_docs_file, data_docs_html

    try:
        found = data_docs_file(load_config(), month, attempt, path)
    except BadRequest as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    if found is None:
        raise HTTPException(status_code=404, detail="no such Data Docs file")
    if found.suffix == ".html":  # CDN links rewritten to the vendored copies: works offline
        return HTMLResponse(data_docs_html(found.read_text(), path))
    return FileResponse(found)


class ForecastQualityPlugin(AirflowPlugin):
    name = "forecast_quality"
    fastapi_apps = [{"app": app, "url_prefix": "/forecast-quality", "name": "Forecasts"}]
    external_views = [
        {
            "name": "Forecasts",
            "href": "forecast-quality/",  # relative: works behind a reverse proxy's path prefix
            # The UI shows the iframe's own path after /plugin/<url_route>/, so a route named
            # like the mount point would read /plugin/forecast-quality/forecast-quality/.
            "url_route": "forecasts",
            "destination": "nav",
            "category": "browse",
        }
    ]
