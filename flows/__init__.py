"""Prefect flows: promote, pipeline, rollback (the imperative shell around promoflow's core)."""

from promoflow.logs import quiet_user_error_tracebacks

# Wherever a flow runs (CLI, served deployment, worker), a user mistake is logged as one sentence.
quiet_user_error_tracebacks()
