"""The Kubernetes API servers the tests run against: a real kube-apiserver and promoflow's stand-in.

`real_kube` is one real control plane per test process (etcd, kube-apiserver, kube-controller-manager and
the simulated kubelet, `promoflow.sandbox.control_plane`), with Argo CD's and Flux's CRDs installed; tests
share it and isolate by namespace. `kube_server` gives a test either server behind one interface, so a
test parametrized over it holds the stand-in to what the real server does:

    def test_x(kube_server: KubeServer, tmp_path: Path) -> None:
        namespace = kube_server.namespace()
        kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)

A test for the real server only: `@pytest.mark.parametrize("kube_server", ["real"], indirect=True)`.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
import yaml

from promoflow.errors import TerminalError
from promoflow.sandbox.control_plane import ControlPlane
from promoflow.sandbox.kube import KubeStandIn
from promoflow.sandbox.kube_controllers import ArgoCD, Behaviour, Flux

ROOT = Path(__file__).resolve().parent.parent
CRD_PINS = ROOT / "tools" / "kube" / "crds"
BUILD_HINT = "run scripts/kube-build and export PROMOFLOW_KUBE_BIN=$(scripts/kube-build) (scripts/test does both)"
_names = itertools.count(1)


class KubeServer(ABC):
    """One Kubernetes API to test against."""

    kind: Literal["real", "stand-in"]

    def __init__(self) -> None:
        self._namespaces: list[str] = []

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def write_kubeconfig(self, path: Path, context: str = "sandbox", *, namespace: str = "default") -> Path:
        """A kubeconfig whose current context reaches this server as an admin, in `namespace`."""

    @abstractmethod
    def api_client(self) -> Any:
        """An official-client `kubernetes.client.ApiClient`, as an admin; the caller closes it."""

    @abstractmethod
    def behave(self, pattern: str, behaviour: Behaviour, *, seconds: float = 2.0) -> None:
        """How pods of matching workloads behave from now on (`kube_controllers.Behaviours`).

        On the real server `never_ready` pods never get ready and the deployment controller reports
        ProgressDeadlineExceeded after the Deployment's own `progressDeadlineSeconds`; `seconds` is for the stand-in.
        """

    @abstractmethod
    def find(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, by `plural.group` (e.g. "deployments.apps"; namespace "" if cluster-scoped), or None."""

    @property
    @abstractmethod
    def argocd(self) -> ArgoCD:
        """Argo CD's application controller, simulated: `report(name, revision=..., namespace=...)`."""

    @property
    @abstractmethod
    def flux(self) -> Flux:
        """Flux's kustomize-controller, simulated: `report(name, revision=..., namespace=...)`."""

    def namespace(self, prefix: str = "t") -> str:
        """A fresh namespace for one test, created (and deleted after the test)."""
        from kubernetes import client

        name = f"{prefix}-{next(_names)}-{secrets.token_hex(3)}"
        with self.api_client() as api:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            client.CoreV1Api(api).create_namespace(body, _preload_content=False)
        self._namespaces.append(name)
        return name

    def close(self) -> None:
        """Delete the namespaces this test made (the namespace controller empties them in the background)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core: Any = client.CoreV1Api(api)
            for name in self._namespaces:
                try:
                    core.delete_namespace(name, _preload_content=False)
                except ApiException as error:
                    if error.status != 404:
                        raise

    def __enter__(self) -> KubeServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class StandIn(KubeServer):
    """promoflow's Kubernetes API stand-in, started for one test."""

    kind = "stand-in"

    def __init__(self) -> None:
        super().__init__()
        self.server = KubeStandIn().start()
        self.cluster = self.server.cluster  # its store and Python controls: faults, requests, resource_version

    @property
    def url(self) -> str:
        return self.server.url

    def write_kubeconfig(self, path: Path, context: str = "sandbox", *, namespace: str = "default") -> Path:
        written = self.server.write_kubeconfig(path, context)
        config = yaml.safe_load(written.read_text())
        config["contexts"][0]["context"]["namespace"] = namespace
        written.write_text(yaml.safe_dump(config, sort_keys=False))
        return written

    def api_client(self) -> Any:
        from kubernetes.client import ApiClient, Configuration

        return ApiClient(Configuration(host=self.url))

    def behave(self, pattern: str, behaviour: Behaviour, *, seconds: float = 2.0) -> None:
        self.server.cluster.rollouts.behave(pattern, behaviour, seconds=seconds)

    def find(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.server.cluster.find(resource, namespace, name)

    @property
    def argocd(self) -> ArgoCD:
        return self.server.cluster.argocd

    @property
    def flux(self) -> Flux:
        return self.server.cluster.flux

    def close(self) -> None:
        self.server.stop()  # its objects go with it


class Real(KubeServer):
    """The real control plane of this test process, seen by one test."""

    kind = "real"

    def __init__(self, plane: ControlPlane) -> None:
        super().__init__()
        self.plane = plane
        plane.kubelet.reset()  # behaviours set by an earlier test no longer apply

    @property
    def url(self) -> str:
        return self.plane.url

    def write_kubeconfig(self, path: Path, context: str = "sandbox", *, namespace: str = "default") -> Path:
        return self.plane.write_kubeconfig(path, context, namespace=namespace)

    def api_client(self) -> Any:
        return self.plane.api_client()

    def behave(self, pattern: str, behaviour: Behaviour, *, seconds: float = 2.0) -> None:
        self.plane.kubelet.behave(pattern, behaviour, seconds=seconds)

    def find(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.plane.objects.find(resource, namespace, name)

    @property
    def argocd(self) -> ArgoCD:
        return self.plane.argocd

    @property
    def flux(self) -> Flux:
        return self.plane.flux


def gitops_crds() -> list[dict[str, Any]]:
    """Argo CD's Application and Flux's Kustomization CRDs, from the Go modules tools/kube/crds pins."""
    definitions = []
    for line in CRD_PINS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        module, path = line.split()
        found = subprocess.run(
            ["go", "mod", "download", "-json", module],
            cwd=CRD_PINS.parent,
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""},
            capture_output=True,
            text=True,
            check=False,
        )
        directory = json.loads(found.stdout or "{}").get("Dir") if found.returncode == 0 else None
        if not directory:
            pytest.fail(f"cannot read {module} from the Go module cache: {BUILD_HINT}", pytrace=False)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # Argo CD's CRD is 400 kB
        definitions.append(yaml.load((Path(directory) / path).read_text(), Loader=loader))
    return definitions


@pytest.fixture(scope="session")
def real_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane per test process, torn down at its end."""
    bin_dir = os.environ.get("PROMOFLOW_KUBE_BIN")
    if not bin_dir:
        pytest.fail(f"PROMOFLOW_KUBE_BIN is not set: {BUILD_HINT}", pytrace=False)
    plane = ControlPlane(Path(bin_dir), tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
    except TerminalError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        plane.install_crds(gitops_crds())
        yield plane
    finally:
        plane.stop()


@pytest.fixture(params=["stand-in", "real"])
def kube_server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    """The stand-in (started for this test) or the real server (shared; this test's namespaces removed after)."""
    server: KubeServer = Real(request.getfixturevalue("real_kube")) if request.param == "real" else StandIn()
    with server:
        yield server
