"""Named crash points for the crash/re-run tests: PROMOFLOW_FAILPOINTS=after-merge kills the process there."""

from __future__ import annotations

import os
import signal


def hit(name: str) -> None:
    if name in os.environ.get("PROMOFLOW_FAILPOINTS", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
