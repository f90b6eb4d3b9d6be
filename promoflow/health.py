"""HTTP health checks: the verification of an environment whose cluster target is `none`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import httpx

from promoflow.config import HealthCheck
from promoflow.redact import redact


@dataclass(frozen=True)
class CheckResult:
    url: str
    healthy: bool
    attempts: int
    last_status: int | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_check(check: HealthCheck) -> CheckResult:
    """GET the URL until `successes` consecutive healthy answers, or `attempts` run out."""
    streak, status, message = 0, None, ""
    with httpx.Client(timeout=check.timeout_seconds, follow_redirects=True) as client:
        for attempt in range(1, check.attempts + 1):
            try:
                response = client.get(check.url)
                status = response.status_code
                healthy = status == check.expect_status and (check.contains is None or check.contains in response.text)
                message = "healthy" if healthy else _why(check, status)
            except httpx.HTTPError as error:
                healthy, message = False, f"request failed: {type(error).__name__}"
            except (httpx.InvalidURL, ValueError) as error:  # `validate` refuses it; an older config may hold it
                healthy, message = False, f"invalid URL: {redact(str(error))}"
            streak = streak + 1 if healthy else 0
            if streak >= check.successes:
                return CheckResult(redact(check.url), True, attempt, status, message)
            if attempt < check.attempts:
                time.sleep(check.interval_seconds)
    return CheckResult(redact(check.url), False, check.attempts, status, message)


def _why(check: HealthCheck, status: int) -> str:
    if status != check.expect_status:
        return f"answered {status}, expected {check.expect_status}"
    return f"body does not contain {check.contains!r}"
