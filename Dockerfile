# syntax=docker/dockerfile:1
# mogulflow on the official Airflow image, for docker-compose.yaml (README: "Running as a cluster").
# The image gets the mogulflow wheel (its provider entry point registers the `chartmogul` connection
# type), its declared dependencies and the CeleryExecutor extra, all held to the versions of
# requirements.txt (the tested lock), plus dags/ and include/sql/.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# ---- build the wheel, as `uv build` / tests/test_packaging.py do ---------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS wheel
RUN mkdir -p /tmp/src/plugins
COPY --chown=airflow:0 pyproject.toml README.md LICENSE /tmp/src/
COPY --chown=airflow:0 plugins/mogulflow /tmp/src/plugins/mogulflow
COPY --chown=airflow:0 plugins/mogulflow_sandbox /tmp/src/plugins/mogulflow_sandbox
COPY --chown=airflow:0 plugins/mogulflow_demo /tmp/src/plugins/mogulflow_demo
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /tmp/src

# ---- the image every service of docker-compose.yaml runs -----------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
COPY --from=wheel /tmp/dist/ /tmp/dist/
COPY requirements.txt /tmp/requirements.txt
# pip takes no extras in a constraints file: strip them from the lock. Pinning apache-airflow keeps
# pip from touching the image's Airflow. Extras: `celery` (the executor, celery < 5.7) and `demo`
# (the sample warehouse and the ChartMogul sandbox of the compose file's demo profile).
RUN sed -E 's/\[[^]]*\]//' /tmp/requirements.txt > /tmp/constraints.txt \
 && pip install --no-cache-dir --constraint /tmp/constraints.txt \
      "apache-airflow==${AIRFLOW_VERSION}" \
      "$(ls /tmp/dist/mogulflow-*.whl)[celery,demo]" \
 && rm -rf /tmp/dist /tmp/requirements.txt /tmp/constraints.txt
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/sql/ /opt/airflow/include/sql/
# owned by airflow, so that the compose file's named volumes mounted here start out writable
RUN mkdir -p /opt/airflow/secrets /opt/airflow/sandbox \
 && chmod 700 /opt/airflow/secrets
ENV MOGULFLOW_SQL_DIR=/opt/airflow/include/sql
