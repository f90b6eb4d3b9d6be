"""Instant queries to a Prometheus HTTP API (`POST /api/v1/query`): one number per query, or None for no data.

What the answer means is decided by `value_of`, apart from the request: unreachable servers, timeouts, 429 and
5xx are transient (`TransientError`); a refused query, refused credentials, no Prometheus API at the URL or an
answer that is not one number are terminal, each said in one sentence. Header values are read from their secret
references at each query and never appear in a message.
"""

from __future__ import annotations

import json
import math
from typing import Protocol

import httpx

from promoflow import config
from promoflow.errors import TerminalError, TransientError
from promoflow.redact import redact
from promoflow.secrets import resolve

MAX_ANSWER_BYTES = 1024 * 1024  # one number is a few hundred bytes; a bigger answer is refused unread


class Metrics(Protocol):
    """Where metric checks look (a Prometheus; a fake in unit tests)."""

    def query(self, promql: str) -> float | None:
        """The query's value now; None when it has none (no series, NaN)."""
        ...


class Prometheus:
    def __init__(self, server: config.Prometheus) -> None:
        self.server = server
        self.where = f"Prometheus at {redact(server.url)}"

    def query(self, promql: str) -> float | None:
        server = self.server
        headers = {name: resolve(reference, f"Prometheus header {name}") for name, reference in server.headers.items()}
        try:
            with (
                httpx.Client(timeout=server.query_timeout_seconds) as client,
                client.stream(
                    "POST", server.url.rstrip("/") + "/api/v1/query", data={"query": promql}, headers=headers
                ) as response,
            ):
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise TerminalError(
                            f"{self.where} answered more than {MAX_ANSWER_BYTES // 1024} KiB to one query: "
                            "a metric check's query must give one number."
                        )
        except httpx.TimeoutException:
            raise TransientError(
                f"{self.where} did not answer within {server.query_timeout_seconds:g} s (query_timeout_seconds)."
            ) from None
        except httpx.HTTPError as error:
            raise TransientError(f"{self.where} cannot be reached ({type(error).__name__}).") from None
        return value_of(response.status_code, body, self.where)


def value_of(status: int, body: bytes, where: str) -> float | None:
    """The number in a Prometheus API answer; None for no data. Raises what the answer means otherwise."""
    said = _error_text(body)
    if status == 429 or status >= 500:
        raise TransientError(f"{where} answered {status}{f': {said}' if said else ''}.")
    if status in (401, 403):
        raise TerminalError(
            f"{where} refused promoflow's credentials ({status}): check the secrets its `headers` name."
        )
    if status == 404:
        raise TerminalError(f"{where} has no query API (404): `url` must be the base of the Prometheus HTTP API.")
    if status in (400, 422):
        raise TerminalError(f"{where} refused the query ({status}): {said or 'no reason given'}.")
    if status != 200:
        raise TerminalError(f"{where} answered {status} to a query.")
    try:
        answer = json.loads(body)
        data = answer["data"]
        kind, result = data["resultType"], data["result"]
    except (ValueError, KeyError, TypeError):
        raise TerminalError(f"{where} answered with something that is not the Prometheus API's JSON.") from None
    if kind == "vector" and isinstance(result, list):
        if len(result) > 1:
            raise TerminalError(
                f"{where} returned {len(result)} series for the query: aggregate them into one number "
                "(`sum(...)`, `max(...)`)."
            )
        return _number(result[0].get("value") if result and isinstance(result[0], dict) else None, where)
    if kind == "scalar":
        return _number(result, where)
    if kind == "matrix":
        raise TerminalError(
            f"{where} returned a range vector: a check needs an instant value (`rate(...[5m])`, not `...[5m]`)."
        )
    raise TerminalError(f"{where} returned a {kind} where a check needs a number.")


def _number(pair: object, where: str) -> float | None:
    """`[timestamp, "value"]` as a float; None when there is no pair or its value is NaN."""
    if pair is None:
        return None
    try:
        value = float(pair[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        raise TerminalError(f"{where} answered a sample that is not a number.") from None
    return None if math.isnan(value) else value


def _error_text(body: bytes) -> str:
    """Prometheus's own `error` sentence of a refusal, bounded and with secrets masked."""
    try:
        said = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    return redact(said[:300]) if isinstance(said, str) else ""
