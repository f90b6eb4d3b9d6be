"""Validation (422 Invalid), as kube-apiserver's pkg/apis/*/validation words it, for what promoters run into.

Names, labels, the selector and containers of workloads, immutable fields (a workload's selector, a
RoleBinding's roleRef, `immutable` ConfigMaps and Secrets), finalizers of an object being deleted, and the
shape of a CRD. Not every rule of the real server is here: what is, is worded as the real server words it.
"""

from __future__ import annotations

import re
from typing import Any

from promoflow.sandbox.kube.errors import forbidden_value, invalid, invalid_value, required
from promoflow.sandbox.kube.resources import ResourceType

Obj = dict[str, Any]
LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN_FMT = LABEL_FMT + r"(\." + LABEL_FMT + ")*"
LABEL = re.compile(f"^{LABEL_FMT}$")
SUBDOMAIN = re.compile(f"^{SUBDOMAIN_FMT}$")
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME = re.compile(f"^{QUALIFIED_NAME_FMT}$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PATH_SEGMENT_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
LABEL_NAMED = {"Namespace", "Service"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{fmt}')"


def name_errors(kind: str, name: str) -> list[str]:
    if kind in PATH_SEGMENT_KINDS:
        if name in (".", ".."):
            return [f"may not be '{name}'"]
        return [f"may not contain '{c}'" for c in "/%" if c in name]
    errors = []
    if kind in LABEL_NAMED:
        if len(name) > 63:
            errors.append("must be no more than 63 characters")
        if not LABEL.match(name):
            if SUBDOMAIN.match(name):
                errors.append("must not contain dots")
            else:
                message = (
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character"
                )
                errors.append(_regex_error(message, LABEL_FMT, "my-name", "123-abc"))
        return errors
    if len(name) > 253:
        errors.append("must be no more than 253 characters")
    if not SUBDOMAIN.match(name):
        message = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character"
        )
        errors.append(_regex_error(message, SUBDOMAIN_FMT, "example.com"))
    return errors


def _qualified_name_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not SUBDOMAIN.match(prefix)):
        errors.append("prefix part " + name_errors("", prefix)[-1])
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 bytes")
    elif not QUALIFIED_NAME.match(name):
        message = (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            f"'{QUALIFIED_NAME_FMT}')"
        )
        errors.append(message)
    return errors


def _labels(labels: Any, path: str) -> list[Obj]:
    causes = []
    for key, value in (labels or {}).items():
        causes += [invalid_value(path, key, why) for why in _qualified_name_errors(key)]
        if len(value) > 63:
            causes.append(invalid_value(path, value, "must be no more than 63 characters"))
        elif not LABEL_VALUE.match(value):
            message = (
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            )
            causes.append(invalid_value(path, value, message))
    return causes


def _selector_matches(selector: Obj, labels: Obj) -> bool:
    from promoflow.sandbox.kube.selectors import label_selector_matches

    return label_selector_matches(selector, labels)


def _pod_template(template: Obj, path: str) -> list[Obj]:
    causes = []
    containers = (template.get("spec") or {}).get("containers")
    if not containers:
        causes.append(required(f"{path}.spec.containers"))
    for i, container in enumerate(containers or []):
        for key in ("name", "image"):
            if not container.get(key):
                causes.append(required(f"{path}.spec.containers[{i}].{key}"))
    return causes


def _workload(obj: Obj, old: Obj | None) -> list[Obj]:
    spec = obj.get("spec") or {}
    causes: list[Obj] = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels")
    if not selector:
        causes.append(required("spec.selector"))
    if not selector or not _selector_matches(selector, labels or {}) or not labels:
        why = "`selector` does not match template `labels`"
        causes.append(invalid_value("spec.template.metadata.labels", labels, why))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(invalid_value("spec.selector", selector, "field is immutable"))
    return causes + _pod_template(template, "spec.template")


def _immutable_data(obj: Obj, old: Obj | None) -> list[Obj]:
    if old is None or not old.get("immutable"):
        return []
    why = "field is immutable when `immutable` is set"
    causes = [forbidden_value(k, why) for k in ("data", "binaryData") if obj.get(k) != old.get(k)]
    if not obj.get("immutable"):
        causes.append(forbidden_value("immutable", why))
    return causes


def _job(obj: Obj, old: Obj | None) -> list[Obj]:
    spec = obj.get("spec") or {}
    causes = _pod_template(spec.get("template") or {}, "spec.template")
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                "field": "spec.template.spec.restartPolicy",
            }
        )
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        causes.append(invalid_value("spec.selector", spec.get("selector"), "field is immutable"))
    return causes


def _cron_job(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    causes = []
    if not spec.get("schedule"):
        causes.append(required("spec.schedule"))
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    causes += _pod_template(template, "spec.jobTemplate.spec.template")
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                "field": "spec.jobTemplate.spec.template.spec.restartPolicy",
            }
        )
    return causes


def _service(obj: Obj, old: Obj | None) -> list[Obj]:
    spec = obj.get("spec") or {}
    causes = []
    headless = spec.get("clusterIP") == "None"
    if spec.get("type") != "ExternalName" and not spec.get("ports") and not headless:
        causes.append(required("spec.ports"))
    if old is not None:
        before = (old.get("spec") or {}).get("clusterIP")
        if spec.get("clusterIP") not in (None, "", before):
            causes.append(invalid_value("spec.clusterIPs[0]", spec.get("clusterIP"), "may not change once set"))
    return causes


def _role_binding(obj: Obj, old: Obj | None) -> list[Obj]:
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        return [invalid_value("roleRef", obj.get("roleRef"), "cannot change roleRef")]
    return []


def _crd(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    name = obj["metadata"]["name"]
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if name != expected:
        causes.append(invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(required(f"spec.names.{key}"))
    if not spec.get("group"):
        causes.append(required("spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{spec.get("scope") or ""}": supported values: "Cluster", "Namespaced"',
                "field": "spec.scope",
            }
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(required("spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            invalid_value("spec.versions", versions, "must have exactly one version marked as storage version")
        )
    return causes


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Raise 422 Invalid with every cause found, in the real server's order (metadata first)."""
    meta = obj["metadata"]
    name = meta.get("name", "")
    causes = [invalid_value("metadata.name", name, why) for why in name_errors(rt.kind, name)] if name else []
    causes += _labels(meta.get("labels"), "metadata.labels")
    if old is not None and old["metadata"].get("deletionTimestamp"):
        added = [f for f in meta.get("finalizers") or [] if f not in (old["metadata"].get("finalizers") or [])]
        if added:
            listed = ", ".join(f'"{f}"' for f in added)
            why = (
                "no new finalizers can be added if the object is being deleted, "
                f"found new finalizers []string{{{listed}}}"
            )
            causes.append(forbidden_value("metadata.finalizers", why))
    if not rt.custom:
        if rt.kind in WORKLOADS:
            causes += _workload(obj, old)
        elif rt.kind in ("ConfigMap", "Secret"):
            causes += _immutable_data(obj, old)
        elif rt.kind == "Job":
            causes += _job(obj, old)
        elif rt.kind == "CronJob":
            causes += _cron_job(obj)
        elif rt.kind == "Service":
            causes += _service(obj, old)
        elif rt.kind in ("RoleBinding", "ClusterRoleBinding"):
            causes += _role_binding(obj, old)
        elif rt.kind == "CustomResourceDefinition":
            causes += _crd(obj)
    if causes:
        raise invalid(rt, name, causes)
