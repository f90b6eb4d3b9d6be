"""How an API server's refusal becomes promoflow's error: terminal (say what to fix) or transient (retry), from the
status and the Status body a real kube-apiserver sends. The end-to-end tests meet a few of these on the real
server; this table holds every branch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from promoflow.clusters.kubernetes import Throttled, _api_error
from promoflow.errors import TerminalError, TransientError

WHAT = "apply Deployment shop/web"
WHERE = "context kind-dev"


@dataclass
class Refusal:
    """The parts of kubernetes.client's ApiException that _api_error reads."""

    status: int | None
    body: str | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def status_body(code: int, message: str, reason: str = "", causes: list[dict[str, Any]] | None = None) -> str:
    details = {"name": "web", "kind": "deployments"} | ({"causes": causes} if causes is not None else {})
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
         "details": details, "code": code}
    )  # fmt: skip


CONFLICT = [
    {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas",
    }
]
MODIFIED = 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified'
RBAC = 'deployments.apps "web" is forbidden: User "ci" cannot patch resource "deployments" in API group "apps"'


@pytest.mark.parametrize(
    ("refusal", "kind", "message"),
    [
        (
            Refusal(409, status_body(409, "Apply failed with 1 conflict", "Conflict", CONFLICT)),
            TerminalError,
            f"{WHAT}: apply conflicts: .spec.replicas owned by kubectl-client-side-apply: re-run with force or fix "
            "the manifest",
        ),
        (Refusal(409, status_body(409, MODIFIED, "Conflict")), TransientError, f"{WHAT}: the API server answered 409"),
        # a conflict cause in another status is not an apply conflict
        (Refusal(422, status_body(422, "invalid", "Invalid", CONFLICT)), TerminalError, "invalid: .spec.replicas: "),
        (Refusal(500, status_body(500, "etcdserver: leader changed")), TransientError, "answered 500: etcdserver"),
        (Refusal(503, None, "Service Unavailable"), TransientError, "answered 503: Service Unavailable"),
        (Refusal(0, None, None), TransientError, "answered 0: HTTP 0"),
        (Refusal(408, None, "Request Timeout"), TransientError, "answered 408"),
        (Refusal(404, status_body(404, 'deployments.apps "web" not found')), TerminalError, "refused it (404)"),
        (Refusal(400, "not json {", "Bad Request"), TerminalError, "refused it (400): Bad Request"),
        (
            Refusal(403, status_body(403, RBAC + ' in the namespace "shop"', "Forbidden")),
            TerminalError,
            f"{WHAT}: ci may not patch deployments.apps in namespace shop ({WHERE}): grant it that verb",
        ),
        (
            Refusal(403, status_body(403, RBAC.replace('in API group "apps"', 'in API group ""'))),
            TerminalError,
            f"{WHAT}: ci may not patch deployments cluster-wide ({WHERE})",
        ),
        (Refusal(403, status_body(403, "admission webhook denied the request")), TerminalError, "refused it (403)"),
        (
            Refusal(401, status_body(401, "Unauthorized", "Unauthorized")),
            TerminalError,
            f"{WHAT}: not authenticated (401) in {WHERE}: Unauthorized: check the credentials",
        ),
        (
            Refusal(
                422, status_body(422, "invalid", "Invalid", [{"field": "spec.replicas", "message": "must be >= 0"}])
            ),
            TerminalError,
            f"{WHAT}: invalid: spec.replicas: must be >= 0: fix the manifest",
        ),
        # a cause without a field (an admission policy's) is not a manifest field to fix
        (
            Refusal(422, status_body(422, "denied by policy", "Invalid", [{"message": "no latest tags"}])),
            TerminalError,
            f"{WHAT}: the API server refused it (422): denied by policy",
        ),
        (Refusal(422, status_body(422, "invalid", "Invalid", [])), TerminalError, "refused it (422): invalid"),
    ],
    ids=[
        "apply-conflict",
        "modified-409",
        "conflict-cause-422",
        "500",
        "503",
        "no-status",
        "408",
        "404",
        "400-not-json",
        "rbac-namespaced",
        "rbac-cluster",
        "403-other",
        "401",
        "422-fields",
        "422-policy",
        "422-no-causes",
    ],
)
def test_a_refusal_is_terminal_or_transient_and_says_what_to_do(
    refusal: Refusal, kind: type[Exception], message: str
) -> None:
    error = _api_error(WHAT, refusal, WHERE)
    assert type(error) is kind, error
    assert message in str(error)


@pytest.mark.parametrize(("header", "seconds"), [({"Retry-After": "7"}, 7.0), ({}, None), ({"Retry-After": "x"}, None)])
def test_a_429_is_throttled_no_sooner_than_the_server_asks(header: dict[str, str], seconds: float | None) -> None:
    error = _api_error(WHAT, Refusal(429, status_body(429, "too many requests"), headers=header), WHERE)
    assert isinstance(error, Throttled) and error.retry_after == seconds
    assert str(error).startswith(f"{WHAT}: the API server is throttling requests")
    assert ("retry after 7 s" in str(error)) == (seconds is not None)
