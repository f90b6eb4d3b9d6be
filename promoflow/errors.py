"""Errors as the pipeline sees them: terminal (fix something, do not retry) or transient (retry)."""

from __future__ import annotations


class PromoflowError(Exception):
    """An error whose message is meant for a person: one sentence saying what to do."""


class TerminalError(PromoflowError):
    """Retrying cannot help: bad input, a refusal, a missing thing."""


class TransientError(PromoflowError):
    """Worth retrying with backoff: a timeout, a 5xx, a lost race."""


class NotFound(TerminalError):
    """An app, environment, release or promotion that does not exist."""


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TransientError)
