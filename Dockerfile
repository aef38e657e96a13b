# Two images from one file:
#   light  - API server and device agent: no torch (fastapi, onnxruntime, httpx, pydantic)
#   worker - the Celery worker with the pruning engine (torch, timm)
FROM python:3.11-slim AS light
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY budgetprune budgetprune
COPY api api
COPY worker worker
COPY device_agents device_agents
COPY latency_tables latency_tables
COPY vitprune vitprune
RUN pip install .
RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
USER app
ENV BUDGETPRUNE_DATA_DIR=/data

FROM light AS worker
USER root
RUN pip install ".[engine]"
USER app
