"""The webhook receiver: a registry says "pushed", Prefect hears one `promoflow.registry.push` event.

Registries POST a notification when an image is pushed: CNCF Distribution (`/hooks/registry`), Docker Hub
(`/hooks/dockerhub`), GitHub's container registry through GitHub `package` events (`/hooks/github`) and
Harbor (`/hooks/harbor`). The receiver authenticates each delivery, finds the apps whose image sources
watch the pushed repository, and emits ONE Prefect event per delivery; the `watch` deployment's trigger
(`trigger()`) turns it into a watch run of just those apps. Prefect's own webhooks are Prefect Cloud only,
hence this small receiver.

Registries retry a delivery until it is answered 2xx, so the receiver is idempotent: a delivery seen
before is answered 200 again without a second event (a bounded in-memory LRU), and the event's id is
derived from the delivery's, so Prefect itself ignores a repeat that reaches it (another replica, a
restart). The event is written to Prefect's API before the delivery is answered: if Prefect cannot take
it, the answer is 503 and the registry delivers again later.

Only `registry` image sources are matched: a push to a registry says nothing about an `oci_layout`
directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promoflow.config import Promotions
from promoflow.errors import TerminalError
from promoflow.forges.github import EVENT_PREFIX
from promoflow.redact import redact

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger, Event

__all__ = ["EVENT", "SECRET_ENV", "Push", "create_app", "serve", "trigger"]

EVENT = "promoflow.registry.push"
SECRET_ENV = "PROMOFLOW_WEBHOOK_SECRET"
MIN_SECRET_LENGTH = 16
MAX_BODY_BYTES = 1024 * 1024
# GitHub signs the body, so its deliveries are read before they can be checked: at most this many at once (the
# next are answered 503 unread), each within BODY_SECONDS (408 after), so unauthenticated senders cannot make the
# receiver buffer more than a few MiB. The other sources are checked by a header before their body is read.
UNVERIFIED_IN_FLIGHT = 16
BODY_SECONDS = 10
MAX_CONNECTIONS = 2048  # beyond, uvicorn answers 503 at once: each held connection costs memory and a file
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
SEEN_DELIVERIES = 4096  # deliveries remembered for deduplication: hours of pushes, a few hundred KiB
DOCKER_HUB = "docker.io"
GHCR = "ghcr.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_EVENT_IDS = uuid.UUID("6f0c7f55-52c4-4a55-9c1e-3f4d1c0e2a71")  # namespace: event id = uuid5(this, delivery)

logger = logging.getLogger("promoflow.webhooks")

Emit = Callable[["Event"], None]


@dataclass(frozen=True)
class Push:
    """One pushed image as a notification reports it."""

    key: str  # identifies the delivery (or, for Distribution, the event) for deduplication
    repository: str  # path in the registry, e.g. `acme/web`
    host: str | None  # registry host, when the notification says it
    tag: str | None
    digest: str | None


class BadDelivery(Exception):
    """A delivery that is not what the endpoint takes: answered 400 with this one sentence."""


# -- names -------------------------------------------------------------------------------------------


def normalize_host(value: str) -> str | None:
    """`https://Registry-1.Docker.io:443/` -> `docker.io`, `127.0.0.1:5000` -> itself; None if no host."""
    try:
        split = urlsplit(value if "://" in value else f"//{value}")
        host, port = split.hostname, split.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if host in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return host if port in (None, 80, 443) else f"{host}:{port}"


def normalize_repository(host: str | None, repository: str) -> str:
    """Lower case, no slashes around; Docker Hub's official images live under `library/`."""
    path = repository.strip("/").lower()
    if host == DOCKER_HUB and "/" not in path:
        return f"library/{path}"
    return path


class Watchlist:
    """Which apps watch which registry repository, from promotions.yaml's `registry` image sources."""

    def __init__(self, config: Promotions) -> None:
        self._apps: dict[tuple[str, str], list[str]] = {}
        for app in config.apps:
            for image in app.images:
                source = image.source
                if source.registry is None or source.repository is None:
                    continue
                host = normalize_host(source.registry)
                assert host is not None  # the config model's pattern guarantees a host
                apps = self._apps.setdefault((host, normalize_repository(host, source.repository)), [])
                if app.name not in apps:
                    apps.append(app.name)

    def match(self, push: Push) -> tuple[str, str, list[str]] | None:
        """(host, repository, apps) of the watched repository a push went to, or None."""
        host = normalize_host(push.host) if push.host else None
        repository = normalize_repository(host, push.repository)
        for (watched_host, watched_repository), apps in self._apps.items():
            if watched_repository == repository and (host is None or host == watched_host):
                return watched_host, watched_repository, apps
        return None


# -- payloads ----------------------------------------------------------------------------------------


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadDelivery(f"{what} must be a JSON object.")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _body_key(source: str, body: bytes) -> str:
    return f"{source}:sha256:{hashlib.sha256(body).hexdigest()}"


def distribution_pushes(body: dict[str, Any]) -> list[Push]:
    """`{"events": [...]}` of CNCF Distribution: the pushes of a tag.

    Pushes without a tag are blobs, or manifests pushed by digest (each platform of a multi-platform image
    comes before its tagged index): no tag moved, so no tag policy can pick anything new from them.
    """
    events = body.get("events")
    if not isinstance(events, list):
        raise BadDelivery("A registry notification is a JSON object with an `events` list.")
    pushes = []
    for event in events:
        event = _object(event, "Each registry notification event")
        if event.get("action") != "push":
            continue
        target = _object(event.get("target"), "A push event's `target`")
        tag = _text(target.get("tag"))
        if tag is None:
            continue
        repository, event_id = _text(target.get("repository")), _text(event.get("id"))
        if repository is None or event_id is None:
            raise BadDelivery("A push event needs an `id` and a `target.repository`.")
        request = event.get("request")
        host = _text(request.get("host")) if isinstance(request, dict) else None
        url = _text(target.get("url"))
        pushes.append(
            Push(
                key=f"registry:{event_id}",
                repository=repository,
                host=host or (urlsplit(url).netloc if url else None),
                tag=tag,
                digest=_text(target.get("digest")),
            )
        )
    return pushes


def dockerhub_pushes(body: dict[str, Any], raw: bytes) -> list[Push]:
    """Docker Hub: `push_data.tag` and `repository.repo_name` (official images without `library/`)."""
    push_data = _object(body.get("push_data"), "A Docker Hub webhook's `push_data`")
    repository = _object(body.get("repository"), "A Docker Hub webhook's `repository`")
    name, tag = _text(repository.get("repo_name")), _text(push_data.get("tag"))
    if name is None or tag is None:
        raise BadDelivery("A Docker Hub webhook needs `repository.repo_name` and `push_data.tag`.")
    return [Push(_body_key("dockerhub", raw), name, DOCKER_HUB, tag, None)]


def github_pushes(body: dict[str, Any], delivery: str) -> list[Push]:
    """A GitHub `package` (or older `registry_package`) event publishing a tagged container image."""
    if body.get("action") not in ("published", "updated"):
        return []
    package = _object(body.get("package") or body.get("registry_package"), "A package event's `package`")
    if str(package.get("package_type") or package.get("ecosystem") or "").lower() not in ("container", "docker"):
        return []  # npm, maven, ...: not an image
    version = _object(package.get("package_version"), "A package event's `package.package_version`")
    metadata = version.get("container_metadata")
    tag_info = metadata.get("tag") if isinstance(metadata, dict) else None
    tag = _text(tag_info.get("name")) if isinstance(tag_info, dict) else None
    if tag is None:
        return []  # an untagged manifest, e.g. one platform of a multi-platform image
    owner = package.get("owner")
    namespace = _text(package.get("namespace")) or (_text(owner.get("login")) if isinstance(owner, dict) else None)
    name = _text(package.get("name"))
    if namespace is None or name is None:
        raise BadDelivery("A package event needs the package's `name` and `namespace` (or `owner.login`).")
    digest = _text(tag_info.get("digest")) if isinstance(tag_info, dict) else None
    return [Push(f"github:{delivery}", f"{namespace}/{unquote(name)}", GHCR, tag, digest)]


def harbor_pushes(body: dict[str, Any], raw: bytes) -> list[Push]:
    """Harbor's default payload: `PUSH_ARTIFACT` with `event_data.repository.repo_full_name` and resources."""
    if body.get("type") != "PUSH_ARTIFACT":
        return []
    data = _object(body.get("event_data"), "A Harbor webhook's `event_data`")
    repository = _object(data.get("repository"), "A Harbor webhook's `event_data.repository`")
    resources = data.get("resources")
    name = _text(repository.get("repo_full_name"))
    if name is None or not isinstance(resources, list):
        raise BadDelivery("A Harbor PUSH_ARTIFACT needs `event_data.repository.repo_full_name` and `resources`.")
    key = _body_key("harbor", raw)
    pushes = []
    for resource in resources:
        resource = _object(resource, "Each Harbor resource")
        tag = _text(resource.get("tag"))
        if tag is None:
            continue  # pushed by digest: no tag moved
        url = _text(resource.get("resource_url"))  # `harbor.example.com/library/nginx:1.2`
        first = url.split("/", 1)[0] if url and "/" in url else ""
        host = first if "." in first or ":" in first or first == "localhost" else None  # docker's rule
        pushes.append(Push(key, name, host, tag, _text(resource.get("digest"))))
    return pushes


# -- the event ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matched:
    push: Push
    host: str
    repository: str
    apps: list[str]


# GitHub deliveries that can decide a waiting promotion: a review, a commit status, a check run.
FORGE_EVENTS = ("pull_request_review", "status", "check_run", "check_suite")


def forge_event(kind: str, body: dict[str, Any], delivery: str) -> Event | None:
    """The Prefect event that wakes promotions waiting on this repository's pull requests; None for deliveries
    without a repository. Only ids and names are kept: the wait reads the reviews and checks from GitHub."""
    from prefect.events import Event

    repository = body.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(name, str) or "/" not in name:
        return None
    pull = body.get("pull_request")
    payload: dict[str, Any] = {"action": body.get("action"), "repository": name}
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        payload["pull_request"] = pull["number"]
    if isinstance(body.get("sha"), str):
        payload["sha"] = body["sha"]
    return Event(
        id=uuid.uuid5(_EVENT_IDS, f"github\n{delivery}"),
        event=f"{EVENT_PREFIX}{kind}",
        resource={"prefect.resource.id": f"{EVENT_PREFIX}{name}", "prefect.resource.name": name},
        payload=payload,
    )


def push_event(source: str, matched: list[Matched]) -> Event:
    """ONE event for the watched pushes of a delivery; its id comes from the delivery's."""
    from prefect.events import Event

    first = matched[0]
    apps = list(dict.fromkeys(app for m in matched for app in m.apps))
    repositories = list(dict.fromkeys(f"{m.host}/{m.repository}" for m in matched))
    keys = sorted({m.push.key for m in matched})
    related = [
        {"prefect.resource.id": f"promoflow.app.{app}", "prefect.resource.role": "app", "prefect.resource.name": app}
        for app in apps
    ] + [
        {"prefect.resource.id": f"promoflow.repository.{name}", "prefect.resource.role": "repository"}
        for name in repositories[1:]
    ]
    return Event(
        id=uuid.uuid5(_EVENT_IDS, "\n".join(keys)),
        event=EVENT,
        resource={
            "prefect.resource.id": f"promoflow.repository.{repositories[0]}",
            "prefect.resource.name": repositories[0],
            "promoflow.webhook": source,
        },
        related=related,
        payload={
            "apps": apps,
            "registry": first.host,
            "repository": first.repository,
            "tag": first.push.tag,
            "digest": first.push.digest,
        },
    )


def emit_to_prefect(event: Event) -> None:
    """Write the event to Prefect's events API and wait for the answer (`emit_event` would only queue it:
    a delivery answered 200 must not be lost). Raises if Prefect does not take it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=[event.model_dump(mode="json")])


def _prefect_emitter() -> Emit:
    """`emit_to_prefect`, warmed up: the first push would otherwise pay for imports and a first connection."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise TerminalError("No Prefect server: set PREFECT_API_URL or run `promoflow server start`.")
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:  # it may be starting too: pushes are answered 503 (and redelivered) until it answers
        logger.warning("Prefect at %s does not answer yet: %s", redact(url), redact(str(problem)))
    return emit_to_prefect


# -- the app -----------------------------------------------------------------------------------------


class _Config:
    """promotions.yaml's watchlist, read again when the file changes (as the watch flow would)."""

    def __init__(self, path: Path) -> None:
        from promoflow.config_loader import load

        self._load = load
        self.path = path
        self._stamp = self._stat()
        self.watchlist = Watchlist(load(path))  # a broken file stops the receiver from starting

    def _stat(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size

    def current(self) -> Watchlist:
        stamp = self._stat()
        if stamp != self._stamp:
            self.watchlist, self._stamp = Watchlist(self._load(self.path)), stamp
        return self.watchlist


class _Seen:
    """Deliveries already turned into an event, with the apps they went to; least recently seen go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._apps: OrderedDict[str, list[str]] = OrderedDict()

    def get(self, key: str) -> list[str] | None:
        if key in self._apps:
            self._apps.move_to_end(key)
            return self._apps[key]
        return None

    def add(self, key: str, apps: list[str]) -> None:
        self._apps[key] = apps
        self._apps.move_to_end(key)
        while len(self._apps) > self._size:
            self._apps.popitem(last=False)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _same(given: str | None, expected: bytes) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected)


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():  # a chunked body declares no length
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _TooLarge
    except TimeoutError:
        raise _TooSlow from None
    return bytes(body)


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadDelivery("The body is not JSON.") from None
    except RecursionError:
        raise BadDelivery("The body is nested too deeply.") from None
    return _object(data, "The body")


def create_app(config_path: str | Path, secret: str, emit: Emit | None = None) -> Starlette:
    """The receiver as an ASGI app. `emit` receives each event (default: written to Prefect's API).

    Raises TerminalError for a missing or short secret, ConfigError for a broken promotions.yaml.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise TerminalError(
            f"Set {SECRET_ENV} to a secret of at least {MIN_SECRET_LENGTH} characters, e.g. `openssl rand -hex 32`."
        )
    deliver = emit or _prefect_emitter()
    config = _Config(Path(config_path).resolve())
    seen = _Seen(SEEN_DELIVERIES)
    unverified = asyncio.Semaphore(UNVERIFIED_IN_FLIGHT)
    token = secret.encode()
    bearer = f"Bearer {secret}".encode()

    async def handle(source: str, pushes: list[Push]) -> Response:
        if not pushes:
            return JSONResponse({"apps": []})  # not a push (pull, ping, blob, npm package, ...)
        fresh = [push for push in pushes if seen.get(push.key) is None]
        if not fresh:
            apps = list(dict.fromkeys(app for push in pushes for app in seen.get(push.key) or []))
            return JSONResponse({"apps": apps, "duplicate": True})
        try:
            watchlist = config.current()
        except Exception as error:  # ConfigError, or the file went away
            logger.error("promotions.yaml cannot be loaded: %s", redact(str(error)))
            return _error(503, "promotions.yaml cannot be loaded; run `promoflow validate` and fix it.")
        matched = []
        for push in fresh:
            found = watchlist.match(push)
            if found is not None:
                matched.append(Matched(push, *found))
        if not matched:
            return JSONResponse({"apps": []}, status_code=202)
        event = push_event(source, matched)
        try:
            await run_in_threadpool(deliver, event)
        except Exception as error:
            logger.error("Prefect did not take event %s: %s", event.id, redact(str(error)))
            return _error(503, "Prefect did not take the event; deliver again later.")
        apps = event.payload["apps"]
        for push in fresh:
            seen.add(push.key, apps)
        logger.info("%s push of %s -> watch %s (event %s)", source, event.resource.id, ", ".join(apps), event.id)
        return JSONResponse({"apps": apps, "event": str(event.id)})

    async def registry(request: Request) -> Response:
        if not _same(request.headers.get("authorization"), bearer):
            return _error(401, "Send `Authorization: Bearer <secret>`.")
        return await handle("registry", distribution_pushes(_json(await _read_body(request))))

    async def dockerhub(request: Request) -> Response:
        if not _same(request.query_params.get("token"), token):
            return _error(401, "Add `?token=<secret>` to the webhook URL.")
        body = await _read_body(request)
        return await handle("dockerhub", dockerhub_pushes(_json(body), body))

    async def github(request: Request) -> Response:
        signature = request.headers.get("x-hub-signature-256")
        if signature is None:
            return _error(401, "Set the webhook's secret: the request has no X-Hub-Signature-256.")
        if not _SIGNATURE.fullmatch(signature):
            return _error(401, "X-Hub-Signature-256 is not a sha256=<hex> signature.")
        if unverified.locked():
            return _error(503, "Too many deliveries at once; deliver again later.")
        async with unverified:
            body = await _read_body(request)
        expected = "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()
        if not _same(signature, expected.encode()):
            return _error(401, "X-Hub-Signature-256 does not match: the webhook's secret differs.")
        kind = request.headers.get("x-github-event", "")
        if kind not in ("package", "registry_package", *FORGE_EVENTS):
            return JSONResponse({"apps": []})  # `ping` and anything else: nothing to do
        if "json" not in request.headers.get("content-type", ""):
            raise BadDelivery("Set the webhook's content type to application/json.")
        delivery = request.headers.get("x-github-delivery") or _body_key("github", body)
        if kind in FORGE_EVENTS:
            return await forge(kind, _json(body), delivery)
        return await handle("github", github_pushes(_json(body), delivery))

    async def forge(kind: str, body: dict[str, Any], delivery: str) -> Response:
        """A review, status or check run: wake the promotions waiting on that repository."""
        event = forge_event(kind, body, delivery)
        if event is None:
            raise BadDelivery(f"A GitHub `{kind}` delivery names its repository in repository.full_name.")
        key = f"github-forge:{delivery}"
        if seen.get(key) is not None:
            return JSONResponse({"event": str(event.id), "duplicate": True})
        try:
            await run_in_threadpool(deliver, event)
        except Exception as error:
            logger.error("Prefect did not take event %s: %s", event.id, redact(str(error)))
            return _error(503, "Prefect did not take the event; deliver again later.")
        seen.add(key, [])
        logger.info("GitHub %s on %s -> %s (event %s)", kind, event.resource.name, event.event, event.id)
        return JSONResponse({"event": str(event.id)})

    async def harbor(request: Request) -> Response:
        given = request.headers.get("authorization")
        if not (_same(given, token) or _same(given, bearer)):
            return _error(401, "Set the webhook's Auth Header to the secret.")
        body = await _read_body(request)
        return await handle("harbor", harbor_pushes(_json(body), body))

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except BadDelivery as error:
                return _error(400, str(error))
            except _TooLarge:
                return _error(413, f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
            except _TooSlow:
                return _error(408, f"The body did not arrive within {BODY_SECONDS} s.")
            except Exception as error:  # never a traceback to the sender
                logger.error("%s failed: %s: %s", request.url.path, type(error).__name__, redact(str(error)))
                return _error(500, "The receiver failed; see its log.")

        return run

    return Starlette(
        routes=[
            Route("/hooks/registry", guarded(registry), methods=["POST"]),
            Route("/hooks/dockerhub", guarded(dockerhub), methods=["POST"]),
            Route("/hooks/github", guarded(github), methods=["POST"]),
            Route("/hooks/harbor", guarded(harbor), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve(config_path: str | Path, host: str, port: int, secret: str, watch_here: bool = False) -> None:
    """Run the receiver with uvicorn until SIGTERM/SIGINT, against $PREFECT_API_URL or the local server.

    The receiver runs the watch of a push itself and hands new releases to the `pipeline` deployment's workers
    (`flows.watch.WatchHere`). `watch_here`: it runs their pipelines too, in this process, and carries on the
    pipelines a receiver that ended before them left."""
    import resource

    import uvicorn

    from promoflow import server, settings

    path = settings.config_path(config_path)
    server.connect(settings.state_dir(path), launch=False)  # before Prefect reads its settings
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    from flows.watch import WatchHere
    from promoflow.logs import quiet_user_error_tracebacks

    quiet_user_error_tracebacks()
    here = WatchHere(str(path), _prefect_emitter(), host=watch_here)
    if watch_here:
        here.carry_on_orphans()
    app = create_app(path, secret, here)
    _, most = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (most, most))  # room for MAX_CONNECTIONS (the soft limit is often 1024)
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=MAX_CONNECTIONS)


def trigger() -> DeploymentEventTrigger:
    """The `watch` deployment's trigger: every push event runs `watch` with `apps` from the event.

    `apps` is rendered with `| tojson` and parsed back as JSON, so the flow gets a list, not its repr.
    """
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="watch on registry push",
        description="A registry push reported by `promoflow webhook` runs a watch of the apps it concerns.",
        expect={EVENT},
        match={"prefect.resource.id": "promoflow.repository.*"},
        parameters={
            "apps": {
                "__prefect_kind": "json",
                "value": {"__prefect_kind": "jinja", "template": "{{ event.payload.apps | tojson }}"},
            }
        },
    )
