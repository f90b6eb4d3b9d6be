"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager.

The binaries come from `scripts/kube-build` (built from their Go modules). Certificates and keys are
made at start in the state directory; clients authenticate with static tokens (an admin in
system:masters, the controller manager as system:kube-controller-manager) or service account tokens,
and RBAC decides. No scheduler or kubelet runs: `kubelet.SimulatedKubelet` binds pods to a simulated
node and writes their status, so the real controllers (deployments, replica sets, stateful sets,
daemon sets, jobs, namespaces, garbage collection...) see pods come and go as in a cluster.

    with ControlPlane(bin_dir, state) as kube:
        kube.write_kubeconfig(state / "kubeconfig")
        kube.kubelet.behave("*:broken*", "never_ready")

Used by the tests and benchmarks (it needs the `cryptography` package of the `test` extra).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

from promoflow.errors import TerminalError
from promoflow.sandbox.kube_controllers import ArgoCD, Flux, Obj
from promoflow.server import free_port

START_TIMEOUT_SECONDS = 120
STOP_GRACE_SECONDS = 3
# What runs: the workload, namespace and garbage-collection controllers and those that keep RBAC,
# quotas, disruption budgets and volume claims working. Nothing that needs a cloud or a real kubelet.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
    "disruption-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager as child processes, plus the simulated kubelet."""

    bin_dir: Path
    state: Path  # certificates, tokens, etcd data and logs; the caller owns (and removes) it
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _processes: list[_Process] = field(default_factory=list)
    _port: int = 0
    _kubelet: Any = None
    _objects: ApiObjects | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> Path:
        return self.state / "ca.crt"

    @property
    def kubelet(self) -> Any:  # SimulatedKubelet (imported lazily with the kubernetes client)
        if self._kubelet is None:
            raise RuntimeError("the control plane is not running: call start() first")
        return self._kubelet

    @property
    def objects(self) -> ApiObjects:
        """Objects by `plural.group` name, as admin: what the Argo CD and Flux simulators read and write."""
        if self._objects is None:
            raise RuntimeError("the control plane is not running: call start() first")
        return self._objects

    @property
    def argocd(self) -> ArgoCD:
        """Argo CD's application controller, simulated: `argocd.report(name, revision=...)` as on the stand-in."""
        return ArgoCD(self.objects)

    @property
    def flux(self) -> Flux:
        """Flux's kustomize-controller, simulated: `flux.report(name, revision=...)` as on the stand-in."""
        return Flux(self.objects)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager") if not (self.bin_dir / b).is_file()]
        if missing:
            raise TerminalError(
                f"{self.bin_dir} has no {', '.join(missing)}: run scripts/kube-build and set PROMOFLOW_KUBE_BIN"
            )
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            self._write_credentials()
            etcd = self._start_etcd()
            self._start_apiserver(etcd)
            self._wait_ready()
            self._objects = ApiObjects(self.url, self.admin_token, self.ca_file)
            self._start_controller_manager()
            from promoflow.sandbox.kubelet import SimulatedKubelet

            self._kubelet = SimulatedKubelet(self.api_client).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the kubelet, then each process by its PID (controller manager, API server, etcd)."""
        if self._kubelet is not None:
            self._kubelet.stop()
            self._kubelet = None
        if self._objects is not None:
            self._objects.close()
            self._objects = None
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # kube-apiserver may take half a minute to stop; its data is thrown away
                process.popen.kill()
                process.popen.wait()
        self._processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- clients -----------------------------------------------------------------------------------------

    def write_kubeconfig(
        self, path: Path | str, context: str = "sandbox", *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """A kubeconfig (mode 0600) whose current context reaches this API server as `token` (default: admin)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": context, "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": context, "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    def api_client(self, token: str | None = None) -> Any:
        """An official-client ApiClient as admin (or `token`); the caller closes it."""
        from kubernetes.client import ApiClient, Configuration

        settings = Configuration(host=self.url, api_key={"authorization": token or self.admin_token})
        settings.api_key_prefix = {"authorization": "Bearer"}
        settings.ssl_ca_cert = str(self.ca_file)
        return ApiClient(settings)

    def install_crds(self, definitions: list[Obj]) -> None:
        """Create (or replace) CustomResourceDefinitions and wait until the API server serves each."""
        for crd in definitions:
            self.objects.put("customresourcedefinitions.apiextensions.k8s.io", "", crd)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for crd in definitions:
            name = crd["metadata"]["name"]
            # established, and its storage ready: until then lists answer 429 "storage is (re)initializing"
            while not (
                established(self.objects.find("customresourcedefinitions.apiextensions.k8s.io", "", name))
                and self.objects.lists(name)
            ):
                if time.monotonic() > deadline:
                    raise TerminalError(
                        f"CustomResourceDefinition {name} not established within {START_TIMEOUT_SECONDS} s"
                    )
                time.sleep(0.05)

    # --- internals ---------------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        ca_key, ca_cert = _certificate_authority()
        key, cert = _serving_certificate(ca_key, ca_cert)
        sa_key = _private_key()
        files = {
            "ca.crt": _pem_certificate(ca_cert),
            "apiserver.crt": _pem_certificate(cert),
            "apiserver.key": _pem_key(key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": _pem_public_key(sa_key),
        }
        self._controller_manager_token = secrets.token_urlsafe(24)
        files["tokens.csv"] = (
            f'{self.admin_token},admin,admin,"system:masters"\n'
            f"{self._controller_manager_token},{CONTROLLER_MANAGER_USER},{CONTROLLER_MANAGER_USER}\n"
        ).encode()
        for name, content in files.items():
            path = self.state / name
            path.touch(mode=0o600)
            path.write_bytes(content)

    def _spawn(self, name: str, *args: str) -> _Process:
        log_path = self.state / f"{name}.log"
        log: IO[bytes] = log_path.open("wb")
        popen = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test run reaches them through stop(), not twice
            env={k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "ETCD"))},
        )
        log.close()
        process = _Process(name, popen, log_path)
        self._processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = f"http://127.0.0.1:{free_port(0)}", f"http://127.0.0.1:{free_port(0)}"
        self._spawn(
            "etcd",
            f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",  # a throwaway store: durability costs start-up and every write
            "--log-level=error",
        )
        return client

    def _start_apiserver(self, etcd: str) -> None:
        self._port = free_port(0)
        state = self.state
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # no endpoints for a loopback address; nothing reaches it in-cluster
            f"--secure-port={self._port}",
            f"--tls-cert-file={state / 'apiserver.crt'}",
            f"--tls-private-key-file={state / 'apiserver.key'}",
            f"--client-ca-file={state / 'ca.crt'}",
            f"--token-auth-file={state / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={state / 'sa.pub'}",
            f"--service-account-signing-key-file={state / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--profiling=false",
            "--v=0",
        )

    def _start_controller_manager(self) -> None:
        kubeconfig = self.write_kubeconfig(
            self.state / "controller-manager.kubeconfig", "control-plane", token=self._controller_manager_token
        )
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kubeconfig}",
            "--use-service-account-credentials=true",  # each controller as its own service account, RBAC-checked
            f"--controllers={','.join(CONTROLLERS)}",
            f"--root-ca-file={self.ca_file}",
            "--leader-elect=false",
            "--kube-api-qps=100",  # not 20: a benchmark's thousands of pods, rather than the controllers' rate limit
            "--kube-api-burst=200",
            "--secure-port=0",
            "--profiling=false",
            "--v=0",
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        context = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(verify=context, headers=headers, timeout=5) as http:
            while True:
                for process in self._processes:
                    if process.popen.poll() is not None:
                        raise TerminalError(f"{process.name} exited at start-up: {_tail(process.log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    log = _tail(self.state / "kube-apiserver.log")
                    raise TerminalError(f"kube-apiserver not ready within {START_TIMEOUT_SECONDS} s: {log}")
                time.sleep(0.1)


def established(crd: Obj | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


class ApiObjects:
    """Objects of a real API server by `plural.group` name (the stand-in store's addressing), over HTTPS."""

    def __init__(self, url: str, token: str, ca_file: Path) -> None:
        self._http = httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        self._versions: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def find(self, resource: str, namespace: str, name: str) -> Obj | None:
        response = self._http.get(self._path(resource, namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def lists(self, resource: str) -> bool:
        """Whether listing `resource` (in every namespace) succeeds now."""
        return self._http.get(self._path(resource, ""), params={"limit": 1}).status_code == 200

    def put(self, resource: str, namespace: str, obj: Obj) -> Obj:
        """Create `obj`, or replace it if it exists."""
        name = obj["metadata"]["name"]
        created = self._http.post(self._path(resource, namespace), json=obj)
        if created.status_code != 409:
            created.raise_for_status()
            return dict(created.json())
        live = self.find(resource, namespace, name) or {}
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        replaced = self._http.put(self._path(resource, namespace, name), json=body)
        replaced.raise_for_status()
        return dict(replaced.json())

    def write_status(self, resource: str, namespace: str, name: str, status: Obj, manager: str) -> Obj:
        """Replace the status, through the status subresource where the kind has one (not Argo CD's Application)."""
        patch = [{"op": "add", "path": "/status", "value": status}]  # add replaces a member that exists
        headers = {"Content-Type": "application/json-patch+json"}
        path = self._path(resource, namespace, name)
        for target in (f"{path}/status", path):
            response = self._http.patch(
                target, content=json.dumps(patch), headers=headers, params={"fieldManager": manager}
            )
            if response.status_code != 404:
                response.raise_for_status()
                return dict(response.json())
        raise KeyError(f"no {resource} {namespace}/{name} in the cluster")

    def _path(self, resource: str, namespace: str, name: str = "") -> str:
        plural, _, group = resource.partition(".")
        if group:
            if group not in self._versions:
                discovered = self._http.get(f"/apis/{group}")
                discovered.raise_for_status()
                self._versions[group] = discovered.json()["preferredVersion"]["groupVersion"]
            prefix = f"/apis/{self._versions[group]}"
        else:
            prefix = "/api/v1"
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{prefix}{where}/{plural}" + (f"/{name}" if name else "")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- certificates ------------------------------------------------------------------------------------------


def _private_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())  # fast to make, accepted for TLS and service account tokens


def _certificate_authority() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = _private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "promoflow-test-ca")])
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital signature, cert and CRL signing
        .sign(key, _sha256())
    )
    return key, cert


def _serving_certificate(ca_key: Any, ca_cert: Any) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _private_key()
    names: list[x509.GeneralName] = [
        x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    ]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.96.0.1")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    cert = (
        _builder(subject, ca_cert.subject, key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, _sha256())
    )
    return key, cert


def _builder(subject: Any, issuer: Any, key: Any) -> Any:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
    )


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _pem_certificate(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _pem_public_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
