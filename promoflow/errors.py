"""Errors as the pipeline sees them: terminal (fix something, do not retry) or transient (retry)."""

from __future__ import annotations


class PromoflowError(Exception):
    """An error whose message is meant for a person: one sentence saying what to do."""


class TerminalError(PromoflowError):
    """Retrying cannot help: bad input, a refusal, a missing thing."""


class TransientError(PromoflowError):
    """Worth retrying with backoff: a timeout, a 5xx, a lost race.

    `retry_after`: the seconds the other side asked us to wait (a 429's Retry-After); a step's retry
    waits at least that long instead of its own, possibly shorter, backoff.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type, tuple[str, float | None]]:  # keeps retry_after through pickling (results)
        return type(self), (str(self), self.retry_after)


class Superseded(TerminalError):
    """The promotion gave its environment up (a rollback took it): it ends without merging."""


class NotFound(TerminalError):
    """An app, environment, release or promotion that does not exist."""


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TransientError)
