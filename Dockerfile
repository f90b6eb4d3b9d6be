# The promoflow worker image: serves the promote, pipeline and rollback deployments (deployments/serve.py).
FROM python:3.11-slim

# git: promoflow clones and commits to the manifest repository (GitPython calls the git binary).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY promoflow ./promoflow
COPY flows ./flows
COPY tasks ./tasks
COPY deployments ./deployments
RUN pip install ".[postgres]"

# Run as a user, with the state directory (git checkouts) in /var/lib/promoflow (a volume in docker-compose.yml).
RUN useradd --create-home --uid 10001 promoflow \
    && mkdir -p /var/lib/promoflow \
    && chown promoflow /var/lib/promoflow
USER promoflow
ENV PROMOFLOW_HOME=/var/lib/promoflow

CMD ["python", "-m", "deployments.serve"]
