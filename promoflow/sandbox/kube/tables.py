"""Server-side printing: the Table `kubectl get` asks for (Accept: ...;as=Table), columns as kube-apiserver's.

Each built-in kind has its printer's columns (pkg/printers/internalversion, v1.37), priority 1 being those
`-o wide` adds; a custom resource has its CRD's `additionalPrinterColumns` (or just its age).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promoflow.sandbox.kube.resources import ResourceType

Obj = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[Obj], Any]
    type: str = "string"
    priority: int = 0


def _time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    return human((datetime.now(UTC) - _time(timestamp)).total_seconds())


def human(elapsed: float) -> str:
    """A duration as kubectl prints it (apimachinery's HumanDuration): 45s, 3m12s, 5h, 2d."""
    seconds = max(0, int(elapsed))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def at(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _selector(selector: Any) -> str:
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        values = ",".join(expression.get("values") or [])
        operator = {"In": "in", "NotIn": "notin"}.get(expression.get("operator"), "")
        terms.append(f"{expression.get('key')} {operator} ({values})" if operator else str(expression.get("key")))
    return ",".join(terms) or "<none>"


def _map_selector(selector: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items())) or "<none>"


def _pod_spec(obj: Obj, *path: str) -> Obj:
    found = at(obj, *path)
    return found if isinstance(found, dict) else {}


def _containers(*path: str) -> list[Column]:
    def names(obj: Obj) -> str:
        return ",".join(str(c.get("name", "")) for c in _pod_spec(obj, *path).get("containers") or [])

    def images(obj: Obj) -> str:
        return ",".join(str(c.get("image", "")) for c in _pod_spec(obj, *path).get("containers") or [])

    return [Column("Containers", names, priority=1), Column("Images", images, priority=1)]


def _service_ports(obj: Obj) -> str:
    ports = []
    for port in at(obj, "spec", "ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        ports.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _ingress_ports(obj: Obj) -> str:
    return "80, 443" if at(obj, "spec", "tls") else "80"


def _hosts(obj: Obj) -> str:
    hosts = [r.get("host") for r in at(obj, "spec", "rules") or [] if r.get("host")]
    return ",".join(hosts) if hosts else "*"


def _targets(obj: Obj) -> str:
    shown = []
    for metric in at(obj, "spec", "metrics") or []:
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if metric.get("type") == "Resource" and "averageUtilization" in target:
            shown.append(f"{resource.get('name')}: <unknown>/{target['averageUtilization']}%")
        else:
            shown.append("<unknown>")
    return ", ".join(shown) or "<none>"


def _int_or_string(value: Any) -> str:
    return "N/A" if value is None else str(value)


def _subjects(kind: str) -> Callable[[Obj], str]:
    def listed(obj: Obj) -> str:
        subjects = [s for s in obj.get("subjects") or [] if s.get("kind") == kind]
        if kind == "ServiceAccount":
            return ", ".join(f"{s.get('namespace', '')}/{s.get('name')}" for s in subjects)
        return ", ".join(str(s.get("name")) for s in subjects)

    return listed


def _job_status(obj: Obj) -> str:
    for condition in at(obj, "status", "conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed", "Suspended"):
            return {"Complete": "Complete", "Failed": "Failed", "Suspended": "Suspended"}[condition["type"]]
    return "Running"


def _job_completions(obj: Obj) -> str:
    wanted = at(obj, "spec", "completions")
    done = at(obj, "status", "succeeded") or 0
    return f"{done}/{wanted}" if wanted is not None else f"{done}/1 of {at(obj, 'spec', 'parallelism') or 1}"


def _duration(obj: Obj) -> str:
    start = at(obj, "status", "startTime")
    if not start:
        return ""
    end = at(obj, "status", "completionTime")
    return human(((_time(end) if end else datetime.now(UTC)) - _time(start)).total_seconds())


def _ready(obj: Obj, ready: str = "readyReplicas") -> str:
    return f"{at(obj, 'status', ready) or 0}/{at(obj, 'spec', 'replicas') or 0}"


def _versions(obj: Obj) -> str:
    return ",".join(
        f"{v['name']}(storage)" if v.get("storage") else str(v["name"])
        for v in at(obj, "spec", "versions") or []
        if v.get("served")
    )


def _established(obj: Obj) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True" for c in at(obj, "status", "conditions") or []
    )


AGE = Column("Age", lambda o: age(at(o, "metadata", "creationTimestamp")))
CREATED = Column("Created At", lambda o: at(o, "metadata", "creationTimestamp"), "date")
COLUMNS: dict[str, list[Column]] = {
    "Namespace": [Column("Status", lambda o: at(o, "status", "phase") or ""), AGE],
    "ConfigMap": [Column("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})), AGE],
    "Secret": [Column("Type", lambda o: o.get("type", "")), Column("Data", lambda o: len(o.get("data") or {})), AGE],
    "ServiceAccount": [AGE],
    "Service": [
        Column("Type", lambda o: at(o, "spec", "type") or ""),
        Column("Cluster-IP", lambda o: at(o, "spec", "clusterIP") or "<none>"),
        Column("External-IP", lambda o: ",".join(at(o, "spec", "externalIPs") or []) or "<none>"),
        Column("Port(s)", _service_ports),
        AGE,
        Column("Selector", lambda o: _map_selector(at(o, "spec", "selector")), priority=1),
    ],
    "PersistentVolumeClaim": [
        Column("Status", lambda o: at(o, "status", "phase") or ""),
        Column("Volume", lambda o: at(o, "spec", "volumeName") or ""),
        Column("Capacity", lambda o: (at(o, "status", "capacity") or {}).get("storage", "")),
        Column("Access Modes", lambda o: ",".join(at(o, "status", "accessModes") or [])),
        Column("StorageClass", lambda o: at(o, "spec", "storageClassName") or ""),
        Column("VolumeAttributesClass", lambda o: at(o, "spec", "volumeAttributesClassName") or "<unset>"),
        AGE,
        Column("VolumeMode", lambda o: at(o, "spec", "volumeMode") or "", priority=1),
    ],
    "Deployment": [
        Column("Ready", _ready),
        Column("Up-to-date", lambda o: at(o, "status", "updatedReplicas") or 0),
        Column("Available", lambda o: at(o, "status", "availableReplicas") or 0),
        AGE,
        *_containers("spec", "template", "spec"),
        Column("Selector", lambda o: _selector(at(o, "spec", "selector")), priority=1),
    ],
    "StatefulSet": [Column("Ready", _ready), AGE, *_containers("spec", "template", "spec")],
    "DaemonSet": [
        Column("Desired", lambda o: at(o, "status", "desiredNumberScheduled") or 0, "integer"),
        Column("Current", lambda o: at(o, "status", "currentNumberScheduled") or 0, "integer"),
        Column("Ready", lambda o: at(o, "status", "numberReady") or 0, "integer"),
        Column("Up-to-date", lambda o: at(o, "status", "updatedNumberScheduled") or 0, "integer"),
        Column("Available", lambda o: at(o, "status", "numberAvailable") or 0, "integer"),
        Column("Node Selector", lambda o: _map_selector(at(o, "spec", "template", "spec", "nodeSelector"))),
        AGE,
        *_containers("spec", "template", "spec"),
        Column("Selector", lambda o: _selector(at(o, "spec", "selector")), priority=1),
    ],
    "ReplicaSet": [
        Column("Desired", lambda o: at(o, "spec", "replicas") or 0, "integer"),
        Column("Current", lambda o: at(o, "status", "replicas") or 0, "integer"),
        Column("Ready", lambda o: at(o, "status", "readyReplicas") or 0, "integer"),
        AGE,
        *_containers("spec", "template", "spec"),
        Column("Selector", lambda o: _selector(at(o, "spec", "selector")), priority=1),
    ],
    "Job": [
        Column("Status", _job_status),
        Column("Completions", _job_completions),
        Column("Duration", _duration),
        AGE,
        *_containers("spec", "template", "spec"),
        Column("Selector", lambda o: _selector(at(o, "spec", "selector")), priority=1),
    ],
    "CronJob": [
        Column("Schedule", lambda o: at(o, "spec", "schedule") or ""),
        Column("Timezone", lambda o: at(o, "spec", "timeZone") or "<none>"),
        Column("Suspend", lambda o: "True" if at(o, "spec", "suspend") else "False", "boolean"),
        Column("Active", lambda o: len(at(o, "status", "active") or []), "integer"),
        Column(
            "Last Schedule",
            lambda o: age(at(o, "status", "lastScheduleTime")) if at(o, "status", "lastScheduleTime") else "<none>",
        ),
        AGE,
        *_containers("spec", "jobTemplate", "spec", "template", "spec"),
        Column("Selector", lambda o: _selector(at(o, "spec", "jobTemplate", "spec", "selector")), priority=1),
    ],
    "Ingress": [
        Column("Class", lambda o: at(o, "spec", "ingressClassName") or "<none>"),
        Column("Hosts", _hosts),
        Column(
            "Address",
            lambda o: ",".join(
                i.get("ip") or i.get("hostname", "") for i in at(o, "status", "loadBalancer", "ingress") or []
            ),
        ),
        Column("Ports", _ingress_ports),
        AGE,
    ],
    "NetworkPolicy": [Column("Pod-Selector", lambda o: _selector(at(o, "spec", "podSelector"))), AGE],
    "HorizontalPodAutoscaler": [
        Column(
            "Reference",
            lambda o: f"{at(o, 'spec', 'scaleTargetRef', 'kind')}/{at(o, 'spec', 'scaleTargetRef', 'name')}",
        ),
        Column("Targets", _targets),
        Column("MinPods", lambda o: str(at(o, "spec", "minReplicas") or "<unset>")),
        Column("MaxPods", lambda o: at(o, "spec", "maxReplicas") or 0),
        Column("Replicas", lambda o: at(o, "status", "currentReplicas") or 0),
        AGE,
    ],
    "PodDisruptionBudget": [
        Column("Min Available", lambda o: _int_or_string(at(o, "spec", "minAvailable"))),
        Column("Max Unavailable", lambda o: _int_or_string(at(o, "spec", "maxUnavailable"))),
        Column("Allowed Disruptions", lambda o: at(o, "status", "disruptionsAllowed") or 0, "integer"),
        AGE,
    ],
    "Role": [CREATED],
    "ClusterRole": [CREATED],
    "RoleBinding": [
        Column("Role", lambda o: f"{at(o, 'roleRef', 'kind')}/{at(o, 'roleRef', 'name')}"),
        AGE,
        Column("Users", _subjects("User"), priority=1),
        Column("Groups", _subjects("Group"), priority=1),
        Column("ServiceAccounts", _subjects("ServiceAccount"), priority=1),
    ],
    "CustomResourceDefinition": [
        Column("Scope", lambda o: at(o, "spec", "scope") or ""),
        Column("Versions", _versions),
        CREATED,
        Column("Group", lambda o: at(o, "spec", "group") or "", priority=1),
        Column("Kind", lambda o: at(o, "spec", "names", "kind") or "", priority=1),
        Column("ShortNames", lambda o: ",".join(at(o, "spec", "names", "shortNames") or []), priority=1),
        Column("Established", _established, "boolean", priority=1),
    ],
}
COLUMNS["ClusterRoleBinding"] = COLUMNS["RoleBinding"]


def _json_path(path: str) -> Callable[[Obj], Any]:
    """The subset of kubectl's JSONPath CRD printer columns use: `.a.b`, `.a[0].b`, `.a[?(@.type=="X")].b`."""
    steps = re.findall(r'\.([\w-]+)|\[(\d+)\]|\[\?\(@\.([\w-]+)=="([^"]*)"\)\]', path)

    def cell(obj: Obj) -> Any:
        node: Any = obj
        for key, index, field, value in steps:
            if key:
                node = node.get(key) if isinstance(node, dict) else None
            elif index:
                node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
            else:
                node = next((i for i in node or [] if isinstance(i, dict) and i.get(field) == value), None)
        return node

    return cell


def columns(rt: ResourceType, printer_columns: list[Obj] | None) -> list[Column]:
    name = Column("Name", lambda o: o["metadata"]["name"])
    if not rt.custom:
        return [name, *COLUMNS.get(rt.kind, [AGE])]
    if not printer_columns:
        return [name, Column("Age", lambda o: at(o, "metadata", "creationTimestamp"), "date")]
    found = [name]
    for column in printer_columns:
        cell = _json_path(str(column.get("jsonPath", "")))
        kind = str(column.get("type", "string"))
        found.append(Column(str(column.get("name")), cell, kind, int(column.get("priority", 0))))
    return found


def table(
    rt: ResourceType,
    objects: list[Obj],
    include: str,
    resource_version: int | None,
    printer_columns: list[Obj] | None = None,
) -> Obj:
    shown = columns(rt, printer_columns)
    rows = []
    for obj in objects:
        row: Obj = {"cells": [c.cell(obj) for c in shown]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    definitions = [
        {
            "name": c.name,
            "type": c.type,
            "format": "name" if c.name == "Name" else "",
            "description": c.name,
            "priority": c.priority,
        }
        for c in shown
    ]
    metadata = {"resourceVersion": str(resource_version)} if resource_version is not None else {}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
