"""Logging: a user mistake is one sentence in the run's logs, not a traceback."""

from __future__ import annotations

import logging

from promoflow.errors import PromoflowError
from promoflow.redact import redact


class _DropUserErrorTraceback(logging.Filter):
    """Also masks secrets in the message: a token must not reach the console or the Prefect API."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and isinstance(record.exc_info[1], PromoflowError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    """Strip tracebacks of promoflow's own errors from Prefect's log handlers (console and API)."""
    import prefect.main  # noqa: F401  (sets up Prefect's handlers)

    quiet = _DropUserErrorTraceback()
    for name in ["prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropUserErrorTraceback) for f in handler.filters):
                handler.addFilter(quiet)
