# The one image of the production profile (docker-compose.yml): Airflow 3.3 with the Celery
# executor, the forecasting library and the DAG bundle. Build: docker compose build
# The base is an argument so a mirror or a pinned digest can stand in:
#   docker build --build-arg BASE_IMAGE=registry.example/python:3.11-slim .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG AIRFLOW_UID=50000
ENV AIRFLOW_HOME=/opt/airflow \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    GX_ANALYTICS_ENABLED=false

# Tasks run as an unprivileged user (group 0, as the official Airflow image does).
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow
WORKDIR /opt/airflow

# Exact pins first, so code changes do not reinstall the dependencies. Only the runtime lock:
# pytest, ruff, mypy, playwright and the other dev tools stay out of the image.
COPY requirements.lock ./
RUN pip install "uv==0.13.9" \
 && uv pip install --system -r requirements.lock

# The forecasting library (include/forecasting), installed without touching the pins.
COPY pyproject.toml ./
COPY include/ include/
RUN pip install --no-deps -e .

COPY dags/ dags/
COPY plugins/ plugins/
COPY feature_repo/ feature_repo/
COPY config/ config/
COPY deploy/airflow/ deploy/airflow/

# Mount points of the named volumes: a new volume takes this ownership.
RUN mkdir -p logs forecast-data auth \
 && chown -R airflow:0 /opt/airflow \
 && chmod -R g+rwX /opt/airflow

USER airflow
EXPOSE 8080
CMD ["airflow", "version"]
