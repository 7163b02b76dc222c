"""Forecast quality in the Airflow UI.

Adds "Forecast quality" to the navigation: each published month's model beside its best naive
baseline, with a link to the month's Great Expectations Data Docs. A FastAPI app mounted by the
api-server at /forecast-quality; only users who may read monthly_forecast's runs can open it.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

app = FastAPI(
    title="Forecast quality",
    dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id="monthly_forecast"))],
)


@app.get("/", response_class=HTMLResponse)
def quality_page() -> str:
    from forecasting.config import load_config
    from forecasting.report import render

    return render(load_config())


@app.get("/data-docs/{month}/{attempt}/{path:path}")
def data_docs(month: str, attempt: str, path: str) -> FileResponse:
    from forecasting.config import load_config
    from forecasting.report import BadRequest, data_docs_file

    try:
        found = data_docs_file(load_config(), month, attempt, path)
    except BadRequest as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    if found is None:
        raise HTTPException(status_code=404, detail="no such Data Docs file")
    return FileResponse(found)


class ForecastQualityPlugin(AirflowPlugin):
    name = "forecast_quality"
    fastapi_apps = [{"app": app, "url_prefix": "/forecast-quality", "name": "Forecast quality"}]
    external_views = [
        {
            "name": "Forecast quality",
            "href": "forecast-quality/",  # relative: works behind a reverse proxy's path prefix
            "url_route": "forecast-quality",  # shown inside the Airflow UI (an iframe)
            "destination": "nav",
            "category": "browse",
        }
    ]
