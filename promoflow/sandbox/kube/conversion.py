"""Objects served in another version of their kind than the one stored.

Kinds served in several versions share one storage: a CRD's versions differ only in apiVersion (conversion
strategy None), and HorizontalPodAutoscalers are stored as autoscaling/v2 and converted for autoscaling/v1
(the CPU utilization target and status; other v2 metrics and behaviour are not carried into v1's
round-trip annotations as the real conversion does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promoflow.sandbox.kube.resources import ResourceType

Obj = dict[str, Any]


def _cpu_target(metrics: Any) -> int | None:
    for metric in metrics or []:
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and "averageUtilization" in target:
            return int(target["averageUtilization"])
    return None


def _hpa_to_v1(obj: Obj) -> Obj:
    spec, status = dict(obj.get("spec") or {}), dict(obj.get("status") or {})
    target = _cpu_target(spec.pop("metrics", None))
    spec.pop("behavior", None)
    if target is not None:
        spec["targetCPUUtilizationPercentage"] = target
    current = None
    for metric in status.pop("currentMetrics", None) or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            current = (resource.get("current") or {}).get("averageUtilization")
    status.pop("conditions", None)
    if current is not None:
        status["currentCPUUtilizationPercentage"] = current
    status.setdefault("currentReplicas", 0)
    status.setdefault("desiredReplicas", 0)
    return {**obj, "spec": spec, "status": status}


def _hpa_to_v2(obj: Obj) -> Obj:
    spec, status = dict(obj.get("spec") or {}), dict(obj.get("status") or {})
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}
        spec["metrics"] = [{"type": "Resource", "resource": cpu}]
    current = status.pop("currentCPUUtilizationPercentage", None)
    if current is not None:
        cpu_now = {"name": "cpu", "current": {"averageUtilization": current}}
        status["currentMetrics"] = [{"type": "Resource", "resource": cpu_now}]
    return {**obj, "spec": spec, "status": status}


def convert(obj: Obj, rt: ResourceType) -> Obj:
    """`obj` as `rt`'s version serves it (the same object if it is already in that version)."""
    if obj.get("apiVersion") == rt.api_version:
        return obj
    if rt.kind == "HorizontalPodAutoscaler" and not rt.custom:
        obj = _hpa_to_v1(obj) if rt.version == "v1" else _hpa_to_v2(obj)
    return {**obj, "apiVersion": rt.api_version}
