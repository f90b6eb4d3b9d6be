"""Links to a promotion's Prefect flow run, for pull requests, statuses and `promoflow status`.

Read from the environment (PREFECT_UI_URL, else PREFECT_API_URL without `/api`) so that commands which
never run a flow do not import Prefect for a link.
"""

from __future__ import annotations

import os
import sys

from promoflow.records import Promotion


def ui_url() -> str | None:
    base = os.environ.get("PREFECT_UI_URL") or os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    if not base and "prefect.settings" in sys.modules:  # a profile's settings, when Prefect is loaded anyway
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

        base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return base.rstrip("/") or None


def run_link(flow_run_id: object) -> str | None:
    """A flow run in the Prefect UI, if promoflow knows where that is."""
    base = ui_url()
    return f"{base}/runs/flow-run/{flow_run_id}" if base else None


def run_url(promotion: Promotion) -> str | None:
    """The promotion's flow run in the Prefect UI."""
    return run_link(promotion.flow_run_id) if promotion.flow_run_id else None
