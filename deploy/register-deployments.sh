#!/bin/sh
# Register promoflow with the Prefect server at $PREFECT_API_URL, idempotently: the process work pool `promoflow`,
# the deployments of deployments/prefect.yaml (promote, pipeline, rollback, watch, reconcile, report, with their
# schedules, triggers and concurrency limits) and the automation that crashes runs whose worker died
# (deployments/heartbeats.py). Run it before the first worker starts and after every upgrade of promoflow;
# docker-compose.yml's `deploy` service runs it on every `up`.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefect work-pool create promoflow --type process --overwrite
prefect --no-prompt deploy --all --prefect-file "$here/deployments/prefect.yaml"
cd "$here" && python -m deployments.heartbeats
