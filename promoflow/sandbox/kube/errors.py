"""API failures as kube-apiserver words them: a `kind: Status` body with reason, code and details."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promoflow.sandbox.kube.resources import ResourceType

Obj = dict[str, Any]


class ApiError(Exception):
    """An API failure answered with a `kind: Status` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


class Expired(Exception):
    """A watch or a continued list asked for a resourceVersion older than the kept history."""


def details(rt: ResourceType, name: str, kind: str | None = None, **extra: Any) -> Obj:
    found: Obj = {"name": name}
    if rt.group:
        found["group"] = rt.group
    found["kind"] = kind or rt.plural
    return {**found, **extra}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', details(rt, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def modified_conflict(rt: ResourceType, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[Obj]) -> ApiError:
    texts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{rt.qualified_kind} "{name}" is invalid: {summary}',
        details(rt, name, rt.kind, causes=causes),
    )


def forbidden(rt: ResourceType, name: str, why: str, causes: list[Obj] | None = None) -> ApiError:
    found = details(rt, name, causes=causes) if causes else details(rt, name)
    return ApiError(403, "Forbidden", f'{rt.qualified} "{name}" is forbidden: {why}', found)


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def required(path: str) -> Obj:
    return {"reason": "FieldValueRequired", "message": "Required value", "field": path}


def invalid_value(path: str, value: Any, why: str) -> Obj:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {go_value(value)}: {why}", "field": path}


def forbidden_value(path: str, why: str) -> Obj:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {why}", "field": path}


def unsupported_value(path: str, value: Any, supported: list[str]) -> Obj:
    allowed = ", ".join(json.dumps(s) for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {go_value(value)}: supported values: {allowed}",
        "field": path,
    }


def go_value(value: Any) -> str:
    """A value as field.ErrorList prints it: JSON, compact, map keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
