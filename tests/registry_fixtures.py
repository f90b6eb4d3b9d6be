"""Real registries for the registry client's tests, and two small fronts of our own.

- Debian's `docker-registry` (CNCF Distribution 2.8.2), started three times over one storage
  directory: anonymous (images are pushed through it over plain HTTP), Basic auth (htpasswd), and
  token auth, whose tokens come from `TokenService`: a token service of the tests' own that signs JWTs
  with a throwaway key the real registry trusts (`auth: token: rootcertbundle`). Each registry is
  stopped by its PID.
- `RegistryFront`: an HTTP proxy in front of the anonymous registry that paginates tag lists the way
  the distribution spec says (2.8.2 does not) and injects faults: error statuses with Retry-After,
  connection resets, slow answers.

Import the fixtures explicitly from a test module: `from tests.registry_fixtures import registry_fixture`
makes the `registry` fixture available (the `_fixture` names keep linters from seeing shadowed imports).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from promoflow.server import free_port
from promoflow.sources.registry import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

REGISTRY_CONFIG = "version: 0.1\nstorage:\n  filesystem: {}\n"  # the rest comes from REGISTRY_* variables
TOKEN_SERVICE = "promoflow-tests"
TOKEN_ISSUER = "promoflow-tests-issuer"
BASIC_USER, BASIC_PASSWORD = "alice", "basic-Pa55-7c1e9a"
TOKEN_USER, TOKEN_PASSWORD = "bob", "token-Pa55-52d4f0"
WEB_TAGS = [f"1.{i // 10}.{i % 10}" for i in range(30)] + ["latest"]


# --- pushing images over plain HTTP --------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    """A manifest as pushed: its bytes are what the registry must hash to the digest it reports."""

    repository: str
    tag: str
    media_type: str
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


@dataclass
class Pushed:
    """What the session pushed: images by (repository, tag), and the platform manifests of the indexes."""

    images: dict[tuple[str, str], Image] = field(default_factory=dict)
    platforms: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def digest(self, repository: str, tag: str) -> str:
        return self.images[repository, tag].digest


def push_blob(http: httpx.Client, repository: str, data: bytes, media_type: str) -> dict[str, Any]:
    """Monolithic upload in two requests (2.8.2 does not take the single-POST form) -> its descriptor."""
    started = http.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": sha256(data)})
    put = http.put(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 201, put.text
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def push_manifest(http: httpx.Client, repository: str, reference: str, media_type: str, manifest: bytes) -> Image:
    put = http.put(f"/v2/{repository}/manifests/{reference}", content=manifest, headers={"Content-Type": media_type})
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == sha256(manifest)
    return Image(repository, reference, media_type, manifest)


def push_image(
    http: httpx.Client,
    repository: str,
    tag: str | None,
    label: str,
    platform: str = "linux/amd64",
    docker: bool = False,
    created: str | None = None,
) -> Image:
    """A small single-platform image, tagged, or pushed by its digest when `tag` is None.

    `label` goes into its config, so that every image has its own digest; `created`, its build time, too.
    """
    os_name, architecture, *variant = platform.split("/")
    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": {"Labels": {"promoflow.test": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"promoflow test layer")]},
        **({"variant": variant[0]} if variant else {}),
        **({"created": created} if created else {}),
    }
    if docker:
        config_type = "application/vnd.docker.container.image.v1+json"
        layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    else:
        config_type = "application/vnd.oci.image.config.v1+json"
        layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    # Registries do not look inside layers: the gzip of anything is a valid blob.
    layer = push_blob(http, repository, gzip.compress(b"promoflow test layer", mtime=0), layer_type)
    config_blob = push_blob(http, repository, json.dumps(config, sort_keys=True).encode(), config_type)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "config": config_blob, "layers": [layer]}, indent=2
    ).encode()
    return push_manifest(http, repository, tag or sha256(manifest), media_type, manifest)


def push_index(
    http: httpx.Client, repository: str, tag: str, platforms: list[str], pushed: Pushed, docker: bool = False
) -> None:
    """An image index (or a Docker manifest list) over one image per platform, pushed by digest before it."""
    entries = []
    for platform in platforms:
        image = push_image(http, repository, None, f"{tag} {platform}", platform, docker=docker)
        os_name, architecture, *variant = platform.split("/")
        described = {"os": os_name, "architecture": architecture, **({"variant": variant[0]} if variant else {})}
        entries.append(
            {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest), "platform": described}
        )
        pushed.platforms.setdefault((repository, tag), {})[platform] = image.digest
    media_type = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
    index = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
    pushed.images[repository, tag] = push_manifest(http, repository, tag, media_type, index)


def push_test_images(base_url: str) -> Pushed:
    """team/web: 31 tagged OCI images; team/multi: an OCI index (1.0) and a Docker manifest list (2.0);
    team/legacy: a Docker v2 image; team/mutable: a tag the tests move."""
    pushed = Pushed()
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for tag in WEB_TAGS:
            pushed.images["team/web", tag] = push_image(http, "team/web", tag, f"web {tag}")
        push_index(http, "team/multi", "1.0", ["linux/amd64", "linux/arm64/v8"], pushed)
        push_index(http, "team/multi", "2.0", ["linux/amd64", "linux/arm/v7"], pushed, docker=True)
        pushed.images["team/legacy", "1.0"] = push_image(http, "team/legacy", "1.0", "legacy", docker=True)
        pushed.images["team/mutable", "latest"] = push_image(http, "team/mutable", "latest", "mutable 1")
    return pushed


# --- Debian's docker-registry ------------------------------------------------------------------


@dataclass
class RunningRegistry:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM to its PID
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def notifying(port: int, secret: str) -> dict[str, str]:
    """REGISTRY_* settings that make the registry notify `promoflow webhook` on 127.0.0.1:`port` of every push
    (Distribution's `notifications.endpoints`, given as YAML in its environment override)."""
    endpoints = (
        f"- name: promoflow\n  url: http://127.0.0.1:{port}/hooks/registry\n"
        f"  headers: {{Authorization: [Bearer {secret}]}}\n  timeout: 1s\n  threshold: 3\n  backoff: 1s\n"
        "  ignore: {mediatypes: [application/octet-stream], actions: [pull]}\n"
    )
    return {"REGISTRY_NOTIFICATIONS_ENDPOINTS": endpoints}


def start_registry(workdir: Path, storage: Path, settings: dict[str, str]) -> RunningRegistry:
    """`docker-registry serve` on a free port of 127.0.0.1 over `storage`; `settings` are REGISTRY_* variables."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail(
            "Debian's `docker-registry` (CNCF Distribution) is not installed: `apt-get install -y docker-registry`"
            " (scripts/test installs it)."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(REGISTRY_CONFIG)
    port = free_port(0)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_SECRET": "promoflow-tests",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(storage),
        "REGISTRY_LOG_LEVEL": "warn",
        "REGISTRY_LOG_ACCESSLOG_DISABLED": "true",
        **settings,
    }
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT)
    running = RunningRegistry(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{running.url}/v2/", timeout=1).status_code in (200, 401):
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    running.stop()
    pytest.fail(f"docker-registry did not answer on {running.url} within 10 s:\n{log.read_text()[-2000:]}")


def htpasswd_line(user: str, password: str) -> str:
    binary = shutil.which("htpasswd")
    if binary is None:
        pytest.fail("`htpasswd` is not installed: `apt-get install -y apache2-utils` (scripts/test installs it).")
    return subprocess.run([binary, "-Bbn", user, password], check=True, capture_output=True, text=True).stdout


# --- small HTTP servers of the tests' own ----------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and timed-out clients are what these servers are for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def serve(handler: type[_Handler], owner: Any) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    server.owner = owner  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class TokenService:
    """The registry's token service (the role docker_auth or Harbor plays): checks Basic credentials,
    answers `{"token", "expires_in", "issued_at"}` with a JWT signed by a throwaway ES256 key whose
    self-signed certificate the real registry trusts (`REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE`).
    Grants `pull` to known users; refuses anonymous requests, as a private registry does.
    """

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "promoflow test token issuer")])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_bundle = directory / "token-issuer.pem"
        self.cert_bundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        self.users = users
        self._server = serve(_TokenHandler, self)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[str | None, str]] = []  # (user, scope) of every token request
        self.token_field = "token"  # or "access_token", the OAuth2 name
        self.issued_ago = 0.0  # seconds: an old issued_at makes the client renew sooner

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, user: str, scope: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        kind, _, rest = scope.partition(":")
        repository, _, actions = rest.rpartition(":")
        granted = [action for action in actions.split(",") if action == "pull"]
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": kind, "name": repository, "actions": granted}] if repository else [],
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        service: TokenService = self.server.owner  # type: ignore[attr-defined]
        query = parse_qs(urlsplit(self.path).query)
        scope = query.get("scope", [""])[0]
        user = None
        if self.headers.get("Authorization", "").startswith("Basic "):
            user, _, password = base64.b64decode(self.headers["Authorization"][6:]).decode().partition(":")
            if service.users.get(user) != password:
                user = "?"
        service.requests.append((user, scope))
        if user is None or user == "?" or query.get("service") != [TOKEN_SERVICE]:
            self.answer(
                401, _error_body("UNAUTHORIZED", "authentication required"), {"Content-Type": "application/json"}
            )
            return
        issued = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=service.issued_ago)
        body = {
            service.token_field: service.token(user, scope),
            "expires_in": 300,
            "issued_at": issued.isoformat().replace("+00:00", "Z"),
        }
        self.answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


@dataclass
class Fault:
    """What the front does to the next request whose path contains `path`: answer `status`, `reset` the
    connection, or wait `delay` seconds before passing the request on."""

    kind: str  # "status" | "reset" | "slow"
    path: str = ""
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    message: str = "injected by the front"


class RegistryFront:
    """A proxy in front of a real registry that can paginate tag lists and inject faults.

    Pagination follows the distribution spec: tags in lexical order, at most min(n, page_size) per
    page, `last` to resume, and a `Link: <...>; rel="next"` (relative, or absolute) while more remain.
    """

    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        self.upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self.page_size: int | None = None
        self.absolute_links = False
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query) as received
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = serve(_FrontHandler, self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def enter(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            for fault in self.faults:
                if fault.path in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def forward(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            hop_by_hop = {"connection", "transfer-encoding", "keep-alive", "content-length", "date"}
            kept = {name: value for name, value in response.getheaders() if name.lower() not in hop_by_hop}
            if method == "HEAD" and response.getheader("Content-Length"):
                kept["Content-Length"] = response.getheader("Content-Length", "0")
            return response.status, kept, body
        finally:
            connection.close()

    def tags_page(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(path)
        status, upstream_headers, body = self.forward("GET", split.path, headers)
        if status != 200 or self.page_size is None:
            return status, upstream_headers, body
        listing = json.loads(body)
        query = parse_qs(split.query)
        size = min(int(query.get("n", [self.page_size])[0]), self.page_size)
        last = query.get("last", [""])[0]
        remaining = sorted(tag for tag in listing["tags"] if tag > last)
        page, more = remaining[:size], len(remaining) > size
        answer_headers = {"Content-Type": "application/json"}
        if more:
            link = f"{split.path}?n={size}&last={page[-1]}"
            answer_headers["Link"] = f'<{self.url if self.absolute_links else ""}{link}>; rel="next"'
        return 200, answer_headers, json.dumps({"name": listing["name"], "tags": page}).encode()


class _FrontHandler(_Handler):
    def do_GET(self) -> None:
        self.handle_proxied()

    def do_HEAD(self) -> None:
        self.handle_proxied()

    def handle_proxied(self) -> None:
        front: RegistryFront = self.server.owner  # type: ignore[attr-defined]
        fault = front.enter(self.command, self.path)
        try:
            if fault is not None and fault.kind == "reset":
                # SO_LINGER 0: close() sends a TCP RST instead of a FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault is not None and fault.kind == "status":
                body = _error_body("TOOMANYREQUESTS" if fault.status == 429 else "UNAVAILABLE", fault.message)
                self.answer(fault.status, body, {"Content-Type": "application/json", **fault.headers})
                return
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            headers = {
                name: value for name, value in self.headers.items() if name.lower() in ("accept", "authorization")
            }
            if self.command == "GET" and urlsplit(self.path).path.endswith("/tags/list"):
                status, answer_headers, body = front.tags_page(self.path, headers)
            else:
                status, answer_headers, body = front.forward(self.command, self.path, headers)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            if "Content-Length" not in answer_headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout): nothing to answer
        finally:
            front.leave()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session", name="registry_storage")
def registry_storage_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-storage")


@pytest.fixture(scope="session", name="registry")
def registry_fixture(registry_storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An anonymous registry (the one the tests push through); yields its URL."""
    running = start_registry(tmp_path_factory.mktemp("registry-anonymous"), registry_storage, {})
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture(scope="session", name="pushed")
def pushed_fixture(registry: str) -> Pushed:
    return push_test_images(registry)


@pytest.fixture(scope="session", name="basic_registry")
def basic_registry_fixture(
    pushed: Pushed, registry_storage: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The same images behind htpasswd Basic auth (BASIC_USER / BASIC_PASSWORD)."""
    workdir = tmp_path_factory.mktemp("registry-basic")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_line(BASIC_USER, BASIC_PASSWORD))
    settings = {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "promoflow tests",
        "REGISTRY_AUTH_HTPASSWD_PATH": str(htpasswd),
    }
    running = start_registry(workdir, registry_storage, settings)
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture(scope="session", name="token_service_session")
def token_service_session_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    service = TokenService(tmp_path_factory.mktemp("token-service"), {TOKEN_USER: TOKEN_PASSWORD})
    try:
        yield service
    finally:
        service.close()


@pytest.fixture(name="token_service")
def token_service_fixture(token_service_session: TokenService) -> TokenService:
    token_service_session.reset()
    return token_service_session


@pytest.fixture(scope="session", name="token_registry")
def token_registry_fixture(
    pushed: Pushed,
    registry_storage: Path,
    token_service_session: TokenService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The same images behind the registry's token auth, with tokens from `TokenService`."""
    settings = {
        "REGISTRY_AUTH": "token",
        "REGISTRY_AUTH_TOKEN_REALM": token_service_session.realm,
        "REGISTRY_AUTH_TOKEN_SERVICE": TOKEN_SERVICE,
        "REGISTRY_AUTH_TOKEN_ISSUER": TOKEN_ISSUER,
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": str(token_service_session.cert_bundle),
    }
    running = start_registry(tmp_path_factory.mktemp("registry-token"), registry_storage, settings)
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture(name="front")
def front_fixture(registry: str, pushed: Pushed) -> Iterator[RegistryFront]:
    """A fresh front (no faults, no pagination) in front of the anonymous registry."""
    proxy = RegistryFront(registry)
    try:
        yield proxy
    finally:
        proxy.close()
