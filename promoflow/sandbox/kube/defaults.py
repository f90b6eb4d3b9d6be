"""Defaulting, as kube-apiserver runs its `SetDefaults_<Type>` functions (pkg/apis/*/v1/defaults.go, v1.37).

Defaults are per Go type, wherever the type occurs: a PodSpec is defaulted the same in a Deployment, a Job
or a CronJob's job template. `default` walks an object with its schema and calls the defaulter of each
definition it meets, parent before children, as the generated `SetObjectDefaults_*` do. A custom resource
gets the `default` values of its CRD's schema instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promoflow.sandbox.kube.fields import copy
from promoflow.sandbox.kube.schema import Schema

Obj = dict[str, Any]
CORE = "io.k8s.api.core.v1."


def _image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ("" if "@" in image else "latest")


def container(obj: Obj) -> None:
    if not obj.get("imagePullPolicy"):
        obj["imagePullPolicy"] = "Always" if _image_tag(str(obj.get("image", ""))) == "latest" else "IfNotPresent"
    obj.setdefault("terminationMessagePath", "/dev/termination-log")
    obj.setdefault("terminationMessagePolicy", "File")


def port(obj: Obj) -> None:
    obj.setdefault("protocol", "TCP")


def pod_spec(obj: Obj) -> None:
    if not obj.get("serviceAccountName") and obj.get("serviceAccount"):
        obj["serviceAccountName"] = obj["serviceAccount"]
    if obj.get("serviceAccountName"):
        obj["serviceAccount"] = obj["serviceAccountName"]
    obj.setdefault("dnsPolicy", "ClusterFirst")
    obj.setdefault("restartPolicy", "Always")
    obj.setdefault("securityContext", {})
    obj.setdefault("terminationGracePeriodSeconds", 30)
    obj.setdefault("schedulerName", "default-scheduler")


def pod(obj: Obj) -> None:
    spec = obj.get("spec") or {}
    for item in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = item.get("resources") or {}
        if resources.get("limits"):
            requests = resources.setdefault("requests", {})
            for name, value in resources["limits"].items():
                requests.setdefault(name, value)
            item["resources"] = resources
    spec.setdefault("enableServiceLinks", True)


def probe(obj: Obj) -> None:
    for name, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if not obj.get(name):
            obj[name] = value
    if isinstance(obj.get("grpc"), dict):
        obj["grpc"].setdefault("service", "")


def http_get(obj: Obj) -> None:
    obj.setdefault("path", "/")
    obj.setdefault("scheme", "HTTP")


def volume(obj: Obj) -> None:
    sources = [k for k in obj if k != "name"]
    if not sources:
        obj["emptyDir"] = {}


def default_mode(mode: int) -> Callable[[Obj], None]:
    def set_mode(obj: Obj) -> None:
        obj.setdefault("defaultMode", mode)

    return set_mode


def service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        client.setdefault("timeoutSeconds", 10800)
    spec.setdefault("type", "ClusterIP")
    for item in spec.get("ports") or []:
        item.setdefault("protocol", "TCP")
        if item.get("targetPort") in (None, 0, ""):
            item["targetPort"] = item.get("port")
    external = spec["type"] in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    if external:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def namespace(obj: Obj) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def namespace_status(obj: Obj) -> None:
    obj.setdefault("phase", "Active")


def secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def claim(obj: Obj) -> None:
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def claim_spec(obj: Obj) -> None:
    obj.setdefault("volumeMode", "Filesystem")


def persistent_volume(obj: Obj) -> None:
    obj.setdefault("status", {}).setdefault("phase", "Pending")
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")


def replication_controller(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    spec.setdefault("replicas", 1)


def object_field_selector(obj: Obj) -> None:
    obj.setdefault("apiVersion", "v1")


def _rolling_update(spec: Obj, field: str, unavailable: int | str, surge: int | str) -> None:
    strategy = spec.setdefault(field, {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", unavailable)
        rolling.setdefault("maxSurge", surge)
    spec.setdefault("revisionHistoryLimit", 10)


def deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _rolling_update(spec, "strategy", "25%", "25%")
    spec.setdefault("progressDeadlineSeconds", 600)


def daemon_set(obj: Obj) -> None:
    _rolling_update(obj.setdefault("spec", {}), "updateStrategy", 1, 0)


def stateful_set(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
        strategy["rollingUpdate"].setdefault("maxUnavailable", 1)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)


def replica_set(obj: Obj) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)


def job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2147483647 if "backoffLimitPerIndex" in spec else 6)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = obj.setdefault("metadata", {})
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if "podFailurePolicy" in spec else "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)


def cron_job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)


def pod_condition_pattern(obj: Obj) -> None:
    obj.setdefault("status", "True")


def network_policy(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def ingress_class(obj: Obj) -> None:
    parameters = (obj.get("spec") or {}).get("parameters")
    if isinstance(parameters, dict):
        parameters.setdefault("scope", "Cluster")


def role_binding(obj: Obj) -> None:
    ref = obj.setdefault("roleRef", {})
    if not ref.get("apiGroup"):
        ref["apiGroup"] = "rbac.authorization.k8s.io"


def subject(obj: Obj) -> None:
    if not obj.get("apiGroup") and obj.get("kind") in ("User", "Group"):
        obj["apiGroup"] = "rbac.authorization.k8s.io"


def storage_class(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def csi_driver(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    for name, value in (
        ("attachRequired", True),
        ("podInfoOnMount", False),
        ("storageCapacity", False),
        ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
        ("requiresRepublish", False),
        ("seLinuxMount", False),
    ):
        spec.setdefault(name, value)
    if not spec.get("volumeLifecycleModes"):
        spec["volumeLifecycleModes"] = ["Persistent"]


def priority_class(obj: Obj) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _scaling_rules(rules: Any, up: bool) -> Obj:
    rules = dict(rules or {})
    if "policies" not in rules:
        rules["policies"] = (
            [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]
            if up
            else [{"type": "Percent", "value": 100, "periodSeconds": 15}]
        )
    rules.setdefault("selectPolicy", "Max")
    rules.setdefault("stabilizationWindowSeconds", 0 if up else 300)
    return rules


def autoscaler_v2(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        target = {"type": "Utilization", "averageUtilization": 80}
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    if isinstance(spec.get("behavior"), dict):
        spec["behavior"]["scaleUp"] = _scaling_rules(spec["behavior"].get("scaleUp"), up=True)
        spec["behavior"]["scaleDown"] = _scaling_rules(spec["behavior"].get("scaleDown"), up=False)


def autoscaler_v1(obj: Obj) -> None:
    obj.setdefault("spec", {}).setdefault("minReplicas", 1)


def custom_resource_definition(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("listKind", names["kind"] + "List")
    if names.get("kind") and not names.get("singular"):
        names["singular"] = names["kind"].lower()
    spec.setdefault("conversion", {"strategy": "None"})


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    CORE + "Container": container,
    CORE + "EphemeralContainer": container,
    CORE + "ContainerPort": port,
    CORE + "ServicePort": port,
    CORE + "EndpointPort": port,
    CORE + "PodSpec": pod_spec,
    CORE + "Pod": pod,
    CORE + "Probe": probe,
    CORE + "HTTPGetAction": http_get,
    CORE + "Volume": volume,
    CORE + "SecretVolumeSource": default_mode(420),
    CORE + "ConfigMapVolumeSource": default_mode(420),
    CORE + "DownwardAPIVolumeSource": default_mode(420),
    CORE + "ProjectedVolumeSource": default_mode(420),
    CORE + "Service": service,
    CORE + "Namespace": namespace,
    CORE + "NamespaceStatus": namespace_status,
    CORE + "Secret": secret,
    CORE + "PersistentVolumeClaim": claim,
    CORE + "PersistentVolumeClaimSpec": claim_spec,
    CORE + "PersistentVolume": persistent_volume,
    CORE + "ReplicationController": replication_controller,
    CORE + "ObjectFieldSelector": object_field_selector,
    "io.k8s.api.apps.v1.Deployment": deployment,
    "io.k8s.api.apps.v1.DaemonSet": daemon_set,
    "io.k8s.api.apps.v1.StatefulSet": stateful_set,
    "io.k8s.api.apps.v1.ReplicaSet": replica_set,
    "io.k8s.api.batch.v1.Job": job,
    "io.k8s.api.batch.v1.CronJob": cron_job,
    "io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern": pod_condition_pattern,
    "io.k8s.api.networking.v1.NetworkPolicyPort": port,
    "io.k8s.api.networking.v1.NetworkPolicy": network_policy,
    "io.k8s.api.networking.v1.IngressClass": ingress_class,
    "io.k8s.api.rbac.v1.RoleBinding": role_binding,
    "io.k8s.api.rbac.v1.ClusterRoleBinding": role_binding,
    "io.k8s.api.rbac.v1.Subject": subject,
    "io.k8s.api.storage.v1.StorageClass": storage_class,
    "io.k8s.api.storage.v1.CSIDriver": csi_driver,
    "io.k8s.api.scheduling.v1.PriorityClass": priority_class,
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler": autoscaler_v2,
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler": autoscaler_v1,
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition": custom_resource_definition,
}


def default(value: Any, schema: Schema) -> None:
    """Default `value` (in place) and everything in it."""
    if schema.shape == "struct" and isinstance(value, dict):
        defaulter = DEFAULTERS.get(schema.name or "")
        if defaulter is not None:
            defaulter(value)
        for name, prop in schema.fields.items():
            if isinstance(prop, dict) and "default" in prop and name not in value:
                value[name] = copy(prop["default"])  # a CRD's structural default
        for key, item in list(value.items()):
            sub = schema.field(key)
            if sub is not None:
                default(item, sub)
    elif schema.shape == "list" and isinstance(value, list):
        for item in value:
            default(item, schema.items)
    elif schema.shape == "map" and isinstance(value, dict):
        for item in value.values():
            default(item, schema.values)
