# syntax=docker/dockerfile:1
# mogulflow on the official Airflow image, for docker-compose.yaml (a LOCAL set-up: see its header).
# The image gets the mogulflow wheel, which brings everything: the `chartmogul` connection type (its
# provider entry point), the monitoring page (its airflow.plugins entry point), the default SQL
# (package data) and the `mogulflow` command; the DAG files are written by `mogulflow dags`.
# Versions are held to requirements.txt, the repository's tested lock, used here as constraints.
# Rebuild after any change in the repository: `docker compose up --build`.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# ---- build the wheel, as `make dist` does ------------------------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS wheel
RUN mkdir -p /tmp/src/plugins
COPY --chown=airflow:0 pyproject.toml setup.cfg README.md LICENSE /tmp/src/
COPY --chown=airflow:0 plugins/mogulflow /tmp/src/plugins/mogulflow
COPY --chown=airflow:0 plugins/mogulflow_sandbox /tmp/src/plugins/mogulflow_sandbox
COPY --chown=airflow:0 plugins/mogulflow_demo /tmp/src/plugins/mogulflow_demo
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /tmp/src

# ---- the image every service of docker-compose.yaml runs -----------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
# The extras: the CeleryExecutor, the PostgreSQL warehouse, and `sandbox` (the local ChartMogul
# sandbox and the sample data of the compose file's demo profile). A production image leaves the
# sandbox out: --build-arg MOGULFLOW_EXTRAS=celery,postgres
ARG MOGULFLOW_EXTRAS=celery,postgres,sandbox
COPY --from=wheel /tmp/dist/ /tmp/dist/
COPY requirements.txt /tmp/requirements.txt
# pip takes no extras in a constraints file: strip them from the lock. Pinning apache-airflow keeps
# pip from touching the image's Airflow.
RUN sed -E 's/\[[^]]*\]//' /tmp/requirements.txt > /tmp/constraints.txt \
 && pip install --no-cache-dir --constraint /tmp/constraints.txt \
      "apache-airflow==${AIRFLOW_VERSION}" \
      "$(ls /tmp/dist/mogulflow-*.whl)[${MOGULFLOW_EXTRAS}]" \
 && rm -rf /tmp/dist /tmp/requirements.txt /tmp/constraints.txt
# The thin DAG files (the DAGs themselves are defined in the installed package).
RUN mogulflow dags --into /opt/airflow/dags
# owned by airflow, so that the compose file's named volumes mounted here start out writable
RUN mkdir -p /opt/airflow/secrets /opt/airflow/sandbox \
 && chmod 700 /opt/airflow/secrets
# Your own SQL (edited extract templates): mount a folder and set MOGULFLOW_SQL_DIR to it; a file
# there replaces the package's file of the same name (`mogulflow sql --into DIR` starts one).
