"""The stand-in's own controls, which a real API server has no counterpart of: injected faults and compaction.

Everything the stand-in serves is held to a real kube-apiserver in test_sandbox_kube.py; these are the
levers tests and the demo pull to make it fail on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.sandbox.kube import KubeStandIn


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as server:
        yield server


@pytest.fixture
def dyn(kube: KubeStandIn, tmp_path: Path) -> Iterator[Any]:
    from kubernetes import dynamic
    from kubernetes.client import ApiClient, Configuration

    api = ApiClient(Configuration(host=kube.url))
    try:
        yield dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    finally:
        api.close()


def test_fault_injection(kube: KubeStandIn, dyn: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    kube.cluster.faults.fail(500, verb="list")
    with pytest.raises(ApiException) as failure:
        configmaps.get(namespace="default")
    assert failure.value.status == 500 and json.loads(failure.value.body)["reason"] == "InternalError"
    assert [i.metadata.name for i in configmaps.get(namespace="default").items] == ["kube-root-ca.crt"]  # only once

    kube.cluster.faults.throttle(retry_after=2, path="/configmaps")
    throttled = httpx.get(f"{kube.url}/api/v1/namespaces/default/configmaps")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["details"]["retryAfterSeconds"] == 2

    with httpx.stream("GET", f"{kube.url}/api/v1/namespaces?watch=true&timeoutSeconds=5") as stream:
        lines = stream.iter_lines()
        assert json.loads(next(lines))["type"] == "ADDED"
        assert kube.cluster.faults.drop_watches() == 1
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)


def test_expired_watches_answer_410(kube: KubeStandIn, dyn: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    since = configmaps.get(namespace="default").metadata.resourceVersion
    configmaps.create(body={"metadata": {"name": "a"}}, namespace="default")
    kube.cluster.faults.expire_watches()  # as after an etcd compaction
    with pytest.raises(ApiException) as expired:
        list(dyn.watch(configmaps, namespace="default", resource_version=since, timeout=1))
    assert expired.value.status == 410 and "Expired" in str(expired.value.reason)
    page = httpx.get(f"{kube.url}/api/v1/namespaces/default/configmaps", params={"limit": 1}).json()
    configmaps.create(body={"metadata": {"name": "b"}}, namespace="default")
    kube.cluster.compact()  # the page's resourceVersion is history now
    stale = httpx.get(
        f"{kube.url}/api/v1/namespaces/default/configmaps",
        params={"limit": 1, "continue": page["metadata"]["continue"]},
    )
    assert stale.status_code == 410 and stale.json()["reason"] == "Expired"
