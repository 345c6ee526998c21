# The pipeline's image (target `pipeline`: aegis-pipeline hot-path | scheduler | cold-path | sync | consistency |
# db upgrade ...) and Airflow with our DAGs (target `airflow`, for compose and the official Airflow chart).
#   docker build --target pipeline -t aegis/data-pipeline:1.0.0 .
#   docker build --target airflow  -t aegis/data-pipeline-airflow:1.0.0 .

FROM python:3.11-slim-bookworm AS pipeline
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src src
RUN pip install -c constraints.txt . \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin aegis
# Runs as a non-root user on a read-only root filesystem: only /tmp is written (an emptyDir in Kubernetes).
USER 10001:10001
ENV HOME=/tmp AEGIS_DATA_DIR=/tmp/aegis
EXPOSE 9090
ENTRYPOINT ["aegis-pipeline"]
CMD ["--help"]

FROM apache/airflow:3.3.2-python3.11 AS airflow
COPY --chown=airflow:0 . /opt/aegis
RUN pip install --no-cache-dir -c /opt/aegis/constraints.txt /opt/aegis \
    && cp -r /opt/aegis/dags/. /opt/airflow/dags/
