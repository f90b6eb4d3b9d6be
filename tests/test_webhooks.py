"""The webhook receiver: in-process through httpx's ASGI transport for each source's authentication,
validation, deduplication and mapping; then once end to end on real parts: a real docker-registry notifies
the receiver, which emits the event to a real Prefect server, whose trigger runs the served `watch`
deployment, which records the new release."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from promoflow.errors import TerminalError
from promoflow.server import free_port
from promoflow.webhooks import EVENT, MAX_BODY_BYTES, create_app, trigger
from tests.conftest import ROOT, Sandbox
from tests.helpers import RARELY, receiving, registry_for_web, served
from tests.registry_fixtures import Pushed, push_index

# Its receivers and watch deployments answer every push event on the shared Prefect server: with the serve tests.
pytestmark = pytest.mark.xdist_group("served")

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from prefect.events import Event
    from starlette.applications import Starlette

SECRET = "wh-secret-5f1c9a0e77d2b4c3"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32

CONFIG = """\
version: 1
repository: {url: repo.git}
environments:
  - {name: dev, branch: env/dev}
apps:
  - name: web
    path: apps/web
    images:
      - {name: 127.0.0.1:5000/team/web, source: {registry: "http://127.0.0.1:5000", repository: team/web}}
  - name: web-canary
    path: apps/web-canary
    images:
      - {name: 127.0.0.1:5000/team/web, source: {registry: "http://127.0.0.1:5000", repository: team/web}}
  - name: proxy
    path: apps/proxy
    images:
      - {name: nginx, source: {registry: "https://registry-1.docker.io", repository: nginx}}
  - name: api
    path: apps/api
    images:
      - {name: ghcr.io/acme/api, source: {registry: "https://ghcr.io", repository: acme/api}}
  - name: shop
    path: apps/shop
    images:
      - name: harbor.example.com/library/shop
        source: {registry: "https://harbor.example.com:443", repository: library/shop}
  - name: local
    path: apps/local
    images:
      - {name: registry.example.com/team/web, source: {oci_layout: oci/web}}
"""


# -- in-process ---------------------------------------------------------------------------------------


class Receiver:
    """The ASGI app with an `emit` that records, and a way to POST to it."""

    def __init__(self, config: Path, fail: bool = False) -> None:
        self.events: list[Event] = []
        self.fail = fail
        self.app: Starlette = create_app(config, SECRET, emit=self._emit)

    def _emit(self, event: Event) -> None:
        if self.fail:
            raise ConnectionError(f"Prefect is down (token={SECRET})")
        self.events.append(event)

    def post(
        self, path: str, body: object, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
                return await client.post(path, content=content, headers=headers or {}, params=params)

        response = asyncio.run(send())
        assert SECRET not in response.text  # never echoed, whatever the answer
        return response


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "promotions.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def receiver(config: Path) -> Receiver:
    return Receiver(config)


BEARER = {"Authorization": f"Bearer {SECRET}"}


def distribution_event(
    event_id: str = "ev-1",
    repository: str = "team/web",
    tag: str | None = "1.4.0",
    media_type: str = OCI_MANIFEST,
    action: str = "push",
    host: str = "127.0.0.1:5000",
) -> dict[str, Any]:
    target: dict[str, Any] = {"mediaType": media_type, "digest": DIGEST, "size": 475, "repository": repository}
    target["url"] = f"http://{host}/v2/{repository}/manifests/{DIGEST}"
    if tag is not None:
        target["tag"] = tag
    return {
        "id": event_id,
        "timestamp": "2025-01-01T00:00:00Z",
        "action": action,
        "target": target,
        "request": {"id": "r-1", "addr": "127.0.0.1:40000", "host": host, "method": "PUT", "useragent": "docker"},
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "i-1"},
    }


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def test_a_distribution_push_becomes_one_event_for_the_apps_watching_it(receiver: Receiver) -> None:
    answer = receiver.post("/hooks/registry", envelope(distribution_event()), BEARER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["apps"] == ["web", "web-canary"]
    (event,) = receiver.events
    assert answer.json()["event"] == str(event.id)
    assert event.event == EVENT
    assert event.resource.id == "promoflow.repository.127.0.0.1:5000/team/web"
    assert event.payload == {
        "apps": ["web", "web-canary"],
        "registry": "127.0.0.1:5000",
        "repository": "team/web",
        "tag": "1.4.0",
        "digest": DIGEST,
    }
    assert [(r.id, r.role) for r in event.related] == [
        ("promoflow.app.web", "app"),
        ("promoflow.app.web-canary", "app"),
    ]


def test_a_redelivery_is_answered_again_without_a_second_event(receiver: Receiver) -> None:
    body = envelope(distribution_event())
    first = receiver.post("/hooks/registry", body, BEARER)
    again = receiver.post("/hooks/registry", body, BEARER)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"apps": ["web", "web-canary"], "duplicate": True}
    assert len(receiver.events) == 1


def test_the_event_id_comes_from_the_delivery_so_prefect_drops_repeats_from_other_receivers(config: Path) -> None:
    one, other = Receiver(config), Receiver(config)  # two replicas, or one restarted
    body = envelope(distribution_event())
    one.post("/hooks/registry", body, BEARER)
    other.post("/hooks/registry", body, BEARER)
    assert one.events[0].id == other.events[0].id
    one.post("/hooks/registry", envelope(distribution_event("ev-2")), BEARER)
    assert one.events[1].id != one.events[0].id


def test_several_pushes_in_one_delivery_are_one_event(receiver: Receiver) -> None:
    body = envelope(
        distribution_event("ev-1", tag="1.4.0"),
        distribution_event("ev-2", media_type="application/octet-stream", tag=None),  # a blob: not counted
        distribution_event("ev-3", tag="1.4.1"),
        distribution_event("ev-4", repository="team/other"),  # nobody watches it
    )
    answer = receiver.post("/hooks/registry", body, BEARER)
    assert answer.status_code == 200 and answer.json()["apps"] == ["web", "web-canary"]
    assert len(receiver.events) == 1
    # a later delivery repeating one of them is a duplicate; a new one in it is not
    again = receiver.post("/hooks/registry", envelope(distribution_event("ev-3", tag="1.4.1")), BEARER)
    assert again.json()["duplicate"] is True
    receiver.post("/hooks/registry", envelope(distribution_event("ev-3"), distribution_event("ev-5")), BEARER)
    assert len(receiver.events) == 2


@pytest.mark.parametrize(
    "event",
    [
        distribution_event(action="pull"),
        distribution_event(action="delete"),
        distribution_event(tag=None, media_type="application/octet-stream"),
        distribution_event(tag=None, media_type="application/vnd.oci.image.layer.v1.tar+gzip"),
        distribution_event(tag=None),  # a manifest pushed by digest: one platform of a multi-platform image
    ],
    ids=["pull", "delete", "blob", "layer", "manifest-by-digest"],
)
def test_what_is_not_a_push_of_a_tag_or_manifest_is_answered_without_effect(receiver: Receiver, event: dict) -> None:
    answer = receiver.post("/hooks/registry", envelope(event), BEARER)
    assert (answer.status_code, answer.json()) == (200, {"apps": []})
    assert receiver.events == []


@pytest.mark.parametrize(
    ("repository", "host"),
    [("team/other", "127.0.0.1:5000"), ("team/web", "127.0.0.1:5001"), ("team/web", "registry.example.com")],
    ids=["other-repository", "other-port", "other-host"],
)
def test_a_push_nobody_watches_is_accepted_without_an_event(receiver: Receiver, repository: str, host: str) -> None:
    answer = receiver.post("/hooks/registry", envelope(distribution_event(repository=repository, host=host)), BEARER)
    assert (answer.status_code, answer.json()) == (202, {"apps": []})
    assert receiver.events == []


def test_the_host_is_matched_only_when_the_notification_says_it(receiver: Receiver) -> None:
    event = distribution_event()
    del event["request"], event["target"]["url"]
    answer = receiver.post("/hooks/registry", envelope(event), BEARER)
    assert answer.json()["apps"] == ["web", "web-canary"]
    assert receiver.events[0].resource.id == "promoflow.repository.127.0.0.1:5000/team/web"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-0000000000"}, {"Authorization": SECRET}, {"Authorization": "Bearer"}],
    ids=["none", "wrong", "no-scheme", "empty"],
)
def test_a_registry_notification_without_the_bearer_secret_is_refused(
    receiver: Receiver, headers: dict[str, str]
) -> None:
    answer = receiver.post("/hooks/registry", envelope(distribution_event()), headers)
    assert answer.status_code == 401 and answer.json()["error"].endswith(".")
    assert receiver.events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The body is not JSON."),
        (b"\xff\xfe", "The body is not JSON."),
        (b"[]", "The body must be a JSON object."),
        ({"events": "nope"}, "A registry notification is a JSON object with an `events` list."),
        ({"events": [42]}, "Each registry notification event must be a JSON object."),
        ({"events": [{"action": "push", "target": "x"}]}, "A push event's `target` must be a JSON object."),
        ({"events": [{"action": "push", "target": {"tag": "1.0"}}]}, "A push event needs an `id` and a"),
    ],
)
def test_a_malformed_notification_is_a_400_with_one_sentence(receiver: Receiver, body: object, message: str) -> None:
    answer = receiver.post("/hooks/registry", body, BEARER)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(message)
    assert "Traceback" not in answer.text


def test_a_body_over_the_limit_is_refused(receiver: Receiver) -> None:
    huge = json.dumps({"events": [], "padding": "x" * MAX_BODY_BYTES}).encode()
    answer = receiver.post("/hooks/registry", huge, BEARER)
    assert answer.status_code == 413 and "KiB" in answer.json()["error"]

    async def chunked() -> httpx.Response:  # no Content-Length: the limit holds while reading
        async def chunks() -> Any:
            for start in range(0, len(huge), 65536):
                yield huge[start : start + 65536]

        transport = httpx.ASGITransport(app=receiver.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return await client.post("/hooks/registry", content=chunks(), headers=BEARER)

    assert asyncio.run(chunked()).status_code == 413


def test_when_prefect_does_not_take_the_event_the_registry_is_asked_to_deliver_again(config: Path) -> None:
    receiver = Receiver(config, fail=True)
    body = envelope(distribution_event())
    down = receiver.post("/hooks/registry", body, BEARER)
    assert down.status_code == 503 and down.json() == {"error": "Prefect did not take the event; deliver again later."}
    receiver.fail = False
    again = receiver.post("/hooks/registry", body, BEARER)  # not remembered as delivered
    assert again.status_code == 200 and len(receiver.events) == 1


def test_promotions_yaml_is_read_again_when_it_changes(receiver: Receiver, config: Path) -> None:
    body = envelope(distribution_event(repository="team/other"))
    assert receiver.post("/hooks/registry", body, BEARER).status_code == 202
    config.write_text(
        CONFIG.replace("repository: team/web}}\n  - name: proxy", "repository: team/other}}\n  - name: proxy")
    )
    answer = receiver.post("/hooks/registry", body, BEARER)
    assert answer.json()["apps"] == ["web-canary"]

    config.write_text(CONFIG.replace("version: 1", "version: 1\nbogus: key"))
    broken = receiver.post("/hooks/registry", envelope(distribution_event("ev-9")), BEARER)
    assert broken.status_code == 503 and "promoflow validate" in broken.json()["error"]


def test_a_short_secret_or_a_broken_config_stops_the_receiver_from_starting(config: Path, tmp_path: Path) -> None:
    from promoflow.config_loader import ConfigError

    with pytest.raises(TerminalError, match="PROMOFLOW_WEBHOOK_SECRET"):
        create_app(config, "short", emit=lambda event: None)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\n")
    with pytest.raises(ConfigError):
        create_app(broken, SECRET, emit=lambda event: None)


def test_only_post_is_served(receiver: Receiver) -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=receiver.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return await client.get("/hooks/registry")

    assert asyncio.run(get()).status_code == 405


# Docker Hub


def dockerhub_body(tag: str = "1.27.3", repo_name: str = "nginx", pushed_at: int = 1_700_000_000) -> dict[str, Any]:
    namespace, _, name = repo_name.rpartition("/")
    return {
        "callback_url": "https://registry.hub.docker.com/u/acme/web/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
        "push_data": {"pushed_at": pushed_at, "pusher": "ci", "tag": tag},
        "repository": {"name": name, "namespace": namespace or "library", "repo_name": repo_name, "status": "Active"},
    }


def test_a_docker_hub_push_maps_official_images_under_library(receiver: Receiver) -> None:
    answer = receiver.post("/hooks/dockerhub", dockerhub_body(), params={"token": SECRET})
    assert answer.status_code == 200 and answer.json()["apps"] == ["proxy"]
    (event,) = receiver.events
    assert event.resource.id == "promoflow.repository.docker.io/library/nginx"
    assert event.payload["tag"] == "1.27.3" and event.payload["digest"] is None
    assert event.resource["promoflow.webhook"] == "dockerhub"

    again = receiver.post("/hooks/dockerhub", dockerhub_body(), params={"token": SECRET})
    assert again.json()["duplicate"] is True
    later = receiver.post("/hooks/dockerhub", dockerhub_body(pushed_at=1_700_000_060), params={"token": SECRET})
    assert later.status_code == 200 and len(receiver.events) == 2  # the same tag pushed again later

    other = receiver.post("/hooks/dockerhub", dockerhub_body(repo_name="acme/nginx"), params={"token": SECRET})
    assert other.status_code == 202


@pytest.mark.parametrize("params", [{}, {"token": "wrong"}, {"token": SECRET[:-1]}], ids=["none", "wrong", "prefix"])
def test_a_docker_hub_push_without_the_token_is_refused(receiver: Receiver, params: dict[str, str]) -> None:
    answer = receiver.post("/hooks/dockerhub", dockerhub_body(), params=params)
    assert answer.status_code == 401 and receiver.events == []


def test_a_docker_hub_payload_without_a_tag_is_a_400(receiver: Receiver) -> None:
    body = dockerhub_body()
    del body["push_data"]["tag"]
    answer = receiver.post("/hooks/dockerhub", body, params={"token": SECRET})
    assert answer.status_code == 400 and "push_data.tag" in answer.json()["error"]


# GitHub (GHCR)


def package_event(tag: str = "2.0.0", package_type: str = "CONTAINER", action: str = "published") -> dict[str, Any]:
    return {
        "action": action,
        "package": {
            "id": 1,
            "name": "api",
            "namespace": "acme",
            "ecosystem": package_type,
            "package_type": package_type,
            "owner": {"login": "acme", "type": "Organization"},
            "package_version": {
                "id": 7,
                "name": DIGEST,
                "version": DIGEST,
                "package_url": f"ghcr.io/acme/api:{tag}",
                "container_metadata": {"tag": {"name": tag, "digest": DIGEST}, "labels": {}, "manifest": {}},
            },
            "registry": {"name": "GitHub CNCF Container Registry", "type": "docker", "url": "https://ghcr.io/acme"},
        },
        "repository": {"full_name": "acme/api"},
        "sender": {"login": "octocat"},
    }


def github_headers(body: bytes, kind: str = "package", delivery: str = "d-1", secret: str = SECRET) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": kind,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }


def test_a_github_package_event_maps_to_ghcr(receiver: Receiver) -> None:
    body = json.dumps(package_event()).encode()
    answer = receiver.post("/hooks/github", body, github_headers(body))
    assert answer.status_code == 200 and answer.json()["apps"] == ["api"]
    (event,) = receiver.events
    assert event.resource.id == "promoflow.repository.ghcr.io/acme/api"
    assert (event.payload["tag"], event.payload["digest"]) == ("2.0.0", DIGEST)

    redelivered = receiver.post("/hooks/github", body, github_headers(body))  # "Redeliver" in GitHub's UI
    assert redelivered.json()["duplicate"] is True and len(receiver.events) == 1


def test_the_older_registry_package_event_counts_too(receiver: Receiver) -> None:
    payload = package_event()
    payload["registry_package"] = payload.pop("package")
    body = json.dumps(payload).encode()
    answer = receiver.post("/hooks/github", body, github_headers(body, kind="registry_package"))
    assert answer.json()["apps"] == ["api"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}),
        ("push", {"ref": "refs/heads/main"}),
        ("package", package_event(tag="")),  # an untagged platform manifest
        ("package", package_event(package_type="npm")),
        ("package", package_event(action="deleted")),
    ],
    ids=["ping", "push", "untagged", "npm", "deleted"],
)
def test_other_github_events_are_answered_without_effect(receiver: Receiver, kind: str, payload: dict) -> None:
    body = json.dumps(payload).encode()
    answer = receiver.post("/hooks/github", body, github_headers(body, kind=kind))
    assert (answer.status_code, answer.json()) == (200, {"apps": []})
    assert receiver.events == []


def test_a_github_delivery_with_a_wrong_or_no_signature_is_refused(receiver: Receiver) -> None:
    body = json.dumps(package_event()).encode()
    wrong = receiver.post("/hooks/github", body, github_headers(body, secret="another-secret-0000"))
    assert wrong.status_code == 401 and "secret differs" in wrong.json()["error"]
    tampered = receiver.post("/hooks/github", body.replace(b"2.0.0", b"6.6.6"), github_headers(body))
    assert tampered.status_code == 401
    unsigned = github_headers(body)
    del unsigned["X-Hub-Signature-256"]
    assert receiver.post("/hooks/github", body, unsigned).status_code == 401
    assert receiver.events == []


FORGE_DELIVERIES = {
    "pull_request_review": {
        "action": "submitted",
        "review": {"id": 7, "state": "approved", "user": {"login": "alice"}},
        "pull_request": {"number": 3, "head": {"sha": "a" * 40}},
        "repository": {"full_name": "acme/deploy"},
    },
    "status": {"sha": "b" * 40, "state": "success", "context": "ci/test", "repository": {"full_name": "acme/deploy"}},
    "check_run": {"action": "completed", "check_run": {"id": 9}, "repository": {"full_name": "acme/deploy"}},
}


@pytest.mark.parametrize("kind", list(FORGE_DELIVERIES))
def test_a_review_status_or_check_delivery_is_acted_on_only_with_a_good_signature(
    receiver: Receiver, kind: str
) -> None:
    body = json.dumps(FORGE_DELIVERIES[kind]).encode()
    forged = receiver.post("/hooks/github", body, github_headers(body, kind=kind, secret="not-the-secret-00000"))
    unsigned = {k: v for k, v in github_headers(body, kind=kind).items() if k != "X-Hub-Signature-256"}
    malformed = {**github_headers(body, kind=kind), "X-Hub-Signature-256": "sha1=0000"}
    assert forged.status_code == 401 and receiver.post("/hooks/github", body, unsigned).status_code == 401
    assert receiver.post("/hooks/github", body, malformed).status_code == 401
    assert receiver.events == []  # nothing woken, nothing changed
    signed = receiver.post("/hooks/github", body, github_headers(body, kind=kind, delivery=f"d-{kind}"))
    assert signed.status_code == 200, signed.text
    (event,) = receiver.events
    assert event.event == f"promoflow.github.{kind}" and event.payload["repository"] == "acme/deploy"


def test_deliveries_past_the_unverified_limit_are_a_503_and_the_others_go_through(receiver: Receiver) -> None:
    """While UNVERIFIED_IN_FLIGHT signed deliveries are still sending their bodies, one more is asked to come back
    later (503: GitHub redelivers) before a byte of it is read; the slow ones then arrive whole."""
    from promoflow.webhooks import UNVERIFIED_IN_FLIGHT

    body = json.dumps(package_event()).encode()

    async def scenario() -> tuple[list[int], httpx.Response]:
        gate = asyncio.Event()
        reading: list[int] = []  # deliveries the receiver reads the body of: past its checks, holding a slot

        async def slow() -> AsyncIterator[bytes]:
            yield body[:10]
            reading.append(1)  # asked for more: it reads the body
            await gate.wait()
            yield body[10:]

        transport = httpx.ASGITransport(app=receiver.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            held = [
                asyncio.create_task(
                    client.post("/hooks/github", content=slow(), headers=github_headers(body, delivery=f"d-{n}"))
                )
                for n in range(UNVERIFIED_IN_FLIGHT)
            ]
            async with asyncio.timeout(60):
                while len(reading) < UNVERIFIED_IN_FLIGHT:
                    await asyncio.sleep(0.01)
            refused = await client.post("/hooks/github", content=body, headers=github_headers(body, delivery="more"))
            gate.set()
            return [answer.status_code for answer in await asyncio.gather(*held)], refused

    answered, refused = asyncio.run(scenario())
    assert refused.status_code == 503
    assert refused.json() == {"error": "Too many deliveries at once; deliver again later."}
    assert answered == [200] * UNVERIFIED_IN_FLIGHT
    assert len(receiver.events) == UNVERIFIED_IN_FLIGHT  # each its own delivery; the refused one none


def test_a_github_delivery_without_a_delivery_id_is_keyed_by_its_body(receiver: Receiver) -> None:
    """No X-GitHub-Delivery header (a proxy dropped it): two different pushes are two events, a repeat is one."""
    first, second = (json.dumps(package_event(tag=tag)).encode() for tag in ("2.0.0", "2.1.0"))
    for body in (first, second, first):
        headers = {k: v for k, v in github_headers(body).items() if k != "X-GitHub-Delivery"}
        assert receiver.post("/hooks/github", body, headers).status_code == 200
    assert [event.payload["tag"] for event in receiver.events] == ["2.0.0", "2.1.0"]


def test_deeply_nested_json_is_a_400(receiver: Receiver) -> None:
    deep = b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = receiver.post("/hooks/registry", deep, BEARER)
    assert (answer.status_code, answer.json()) == (400, {"error": "The body is nested too deeply."})
    signed = receiver.post("/hooks/github", deep, github_headers(deep, kind="status"))
    assert signed.status_code == 400 and receiver.events == []


def test_a_form_encoded_github_delivery_asks_for_json(receiver: Receiver) -> None:
    body = b"payload=%7B%7D"
    headers = {**github_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    answer = receiver.post("/hooks/github", body, headers)
    assert answer.status_code == 400 and "application/json" in answer.json()["error"]


# Harbor


def harbor_body(kind: str = "PUSH_ARTIFACT", tags: tuple[str, ...] = ("3.1.0",)) -> dict[str, Any]:
    return {
        "type": kind,
        "occur_at": 1_700_000_000,
        "operator": "ci-robot",
        "event_data": {
            "resources": [
                {"digest": DIGEST, "tag": tag, "resource_url": f"harbor.example.com/library/shop:{tag}"} for tag in tags
            ],
            "repository": {
                "name": "shop",
                "namespace": "library",
                "repo_full_name": "library/shop",
                "repo_type": "private",
            },
        },
    }


def test_a_harbor_push_with_several_tags_is_one_event(receiver: Receiver) -> None:
    answer = receiver.post("/hooks/harbor", harbor_body(tags=("3.1.0", "latest")), {"Authorization": SECRET})
    assert answer.status_code == 200 and answer.json()["apps"] == ["shop"]
    (event,) = receiver.events
    assert event.resource.id == "promoflow.repository.harbor.example.com/library/shop"
    assert event.payload["tag"] == "3.1.0"
    again = receiver.post("/hooks/harbor", harbor_body(tags=("3.1.0", "latest")), {"Authorization": SECRET})
    assert again.json()["duplicate"] is True and len(receiver.events) == 1


def test_harbor_auth_header_may_be_the_secret_or_a_bearer_token(receiver: Receiver) -> None:
    assert receiver.post("/hooks/harbor", harbor_body(), {"Authorization": "Bearer " + SECRET}).status_code == 200
    assert receiver.post("/hooks/harbor", harbor_body(), {"Authorization": "nope"}).status_code == 401
    assert receiver.post("/hooks/harbor", harbor_body(), {}).status_code == 401


def test_other_harbor_events_are_answered_without_effect(receiver: Receiver) -> None:
    for body in (harbor_body(kind="PULL_ARTIFACT"), harbor_body(tags=("",))):  # a pull; a push by digest
        answer = receiver.post("/hooks/harbor", body, {"Authorization": SECRET})
        assert (answer.status_code, answer.json()) == (200, {"apps": []})
    assert receiver.events == []
    bad = receiver.post("/hooks/harbor", {"type": "PUSH_ARTIFACT", "event_data": {}}, {"Authorization": SECRET})
    assert bad.status_code == 400


def test_the_trigger_runs_watch_with_the_apps_of_the_event() -> None:
    watch_trigger = trigger()
    assert watch_trigger.expect == {EVENT}
    assert watch_trigger.parameters == {
        "apps": {
            "__prefect_kind": "json",
            "value": {"__prefect_kind": "jinja", "template": "{{ event.payload.apps | tojson }}"},
        }
    }


# -- end to end on real parts -------------------------------------------------------------------------

DEPLOYMENT = "watch-on-push"
RUNNER = """
import sys
from prefect import serve
from flows.watch import watch
from promoflow.webhooks import trigger

serve(watch.to_deployment(name=sys.argv[1], parameters={"config": sys.argv[2], "promote": False}, triggers=[trigger()]))
"""
RECEIVER = """
import os, sys
from promoflow.webhooks import serve

serve(sys.argv[1], "127.0.0.1", int(sys.argv[2]), os.environ["PROMOFLOW_WEBHOOK_SECRET"])
"""


def _start(script: str, *args: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)  # by its PID
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _wait(what: str, check: Any, timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
    pytest.fail(f"{what} not within {timeout} s\n{tails}")


@pytest.mark.prefect
def test_a_push_to_a_real_registry_runs_watch_through_prefect(
    sandbox: Sandbox, prefect_api: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    processes: list[subprocess.Popen[bytes]] = []
    api = httpx.Client(base_url=prefect_api, timeout=10)
    port = free_port(0)
    registry = registry_for_web(sandbox, tmp_path, port, SECRET)
    try:
        logs = [tmp_path / "runner.log", tmp_path / "receiver.log", registry.log]
        processes.append(
            _start(RUNNER, DEPLOYMENT, str(sandbox.config), log=logs[0], env={"PREFECT_RUNNER_POLL_FREQUENCY": "1"})
        )
        processes.append(
            _start(RECEIVER, str(sandbox.config), str(port), log=logs[1], env={"PROMOFLOW_WEBHOOK_SECRET": SECRET})
        )

        def deployment_id() -> str | None:
            found = api.get(f"/deployments/name/watch/{DEPLOYMENT}")
            return found.json()["id"] if found.status_code == 200 else None

        def automation() -> bool:
            automations = api.post("/automations/filter", json={}).json()
            return any(a["actions"][0].get("deployment_id") == deployment for a in automations)

        def receiver_up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        # generous deadlines: liveness on a loaded machine, not latency (printed below)
        deployment = _wait("the watch deployment", deployment_id, 120, logs)
        _wait("its trigger", automation, 60, logs)
        _wait("the receiver", receiver_up, 60, logs)

        host = registry.url.removeprefix("http://")
        with httpx.Client(base_url=registry.url, timeout=10) as http:  # 3 manifests: 2 platforms, the tagged index
            push_index(http, "demo/web", "1.5.0", ["linux/amd64", "linux/arm64"], pushed := Pushed())
        pushed_at = time.time()  # the tagged index's PUT was answered: the registry notifies as it answers

        def runs() -> list[dict[str, Any]]:
            query = {"deployments": {"id": {"any_": [deployment]}}}
            return api.post("/flow_runs/filter", json=query).json()

        def started() -> dict[str, Any] | None:
            return next((run for run in runs() if run["start_time"]), None)

        run = _wait("the triggered watch run", started, 60, logs)
        release = _wait("the recorded release", lambda: sandbox.db().release("web", "1.5.0"), 60, logs)
        query = {"filter": {"event": {"name": [EVENT]}, "resource": {"id": [f"promoflow.repository.{host}/demo/web"]}}}
        events = _wait("the stored event", lambda: api.post("/events/filter", json=query).json()["events"], 60, logs)
        seconds = {
            "event received": datetime.fromisoformat(events[0]["received"]).timestamp() - pushed_at,
            "run created": datetime.fromisoformat(run["created"]).timestamp() - pushed_at,
            "run started": datetime.fromisoformat(run["start_time"]).timestamp() - pushed_at,
            "release recorded": release.created_at.replace(tzinfo=UTC).timestamp() - pushed_at,
        }
        print("push -> " + ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items()))
        # seconds, not the minute the waits above allow (typically about 1, 3, 4 and 6 s; generous for a loaded machine)
        assert seconds["event received"] < 10 and max(seconds.values()) < 30, seconds

        assert run["parameters"] == {"config": str(sandbox.config), "promote": False, "apps": ["web"]}
        assert json.loads(release.images)[0]["digest"] == pushed.digest("demo/web", "1.5.0")
        final = _wait(
            "the watch run to finish", lambda: [r for r in runs() if r["state_type"] == "COMPLETED"], 60, logs
        )
        assert len(final) == len(runs()) == len(events) == 1  # one image pushed, one event, one run
        receiver_log = logs[1].read_text()
        assert "registry push of promoflow.repository." in receiver_log and SECRET not in receiver_log
    finally:
        for process in processes:
            _stop(process)
        processes.clear()
        registry.stop()
        if (found := api.get(f"/deployments/name/watch/{DEPLOYMENT}")).status_code == 200:
            api.delete(f"/deployments/{found.json()['id']}")  # and its trigger with it
        api.close()


@pytest.mark.prefect
def test_watch_here_runs_the_watch_and_the_pipeline_in_the_receiver_within_seconds(
    sandbox: Sandbox, prefect_api: str, tmp_path: Path
) -> None:
    """`promoflow webhook --watch-here`: no served deployment at all; the push's watch and the pipeline of the
    release it finds are flow runs of the receiver's own process, dev promoted a few seconds after the push."""
    from datetime import datetime

    api = httpx.Client(base_url=prefect_api, timeout=10)
    port = free_port(0)
    registry = registry_for_web(sandbox, tmp_path, port, SECRET)
    log = tmp_path / "receiver.log"
    try:
        sandbox.edit_config("    path: apps/web\n", "    path: apps/web\n    environments: [dev]\n")
        with receiving(sandbox, port, SECRET, log):
            with httpx.Client(base_url=registry.url, timeout=10) as http:
                push_index(http, "demo/web", "1.6.0", ["linux/amd64"], Pushed())
            pushed_at = time.time()

            promotion = _wait("dev running 1.6.0", lambda: _dev_running(sandbox, "1.6.0"), 60, [log, registry.log])
        query = {"flow_runs": {"name": {"like_": "pipeline web"}}, "sort": "START_TIME_DESC", "limit": 1}
        (run,) = api.post("/flow_runs/filter", json=query).json()
        started = datetime.fromisoformat(run["start_time"]).timestamp() - pushed_at
        print(f"push -> pipeline running {started:.2f} s")
        assert started < 20  # within seconds (the wait above allows a minute; typically a few seconds)
        assert promotion.requested_by == "promoflow-watch"
        assert run["parameters"]["app"] == "web" and run["deployment_id"] is None  # run by the receiver itself
        assert SECRET not in log.read_text()
    finally:
        registry.stop()


@pytest.mark.prefect
@pytest.mark.xdist_group("served")
def test_the_receiver_watches_a_push_itself_and_hands_the_release_to_a_pipeline_deployment_run(
    sandbox: Sandbox, prefect_api: str, tmp_path: Path
) -> None:
    """`promoflow webhook` while the deployments are served for its promotions.yaml: the push's watch runs in the
    receiver (no run of the `watch` deployment, no event), and the release goes to one run of the `pipeline`
    deployment, which reads the deployment's promotions.yaml and promotes dev."""
    from datetime import datetime

    api = httpx.Client(base_url=prefect_api, timeout=10)
    port = free_port(0)
    registry = registry_for_web(sandbox, tmp_path, port, SECRET)
    logs = [tmp_path / "receiver.log", tmp_path / "serve.log", registry.log]
    try:
        sandbox.edit_config("    path: apps/web\n", "    path: apps/web\n    environments: [dev]\n")
        with served(sandbox, logs[1], env=RARELY), receiving(sandbox, port, SECRET, logs[0], watch_here=False):
            with httpx.Client(base_url=registry.url, timeout=10) as http:
                push_index(http, "demo/web", "1.7.0", ["linux/amd64"], Pushed())
            pushed_at = time.time()

            promotion = _wait("dev running 1.7.0", lambda: _dev_running(sandbox, "1.7.0"), 120, logs)
        pipeline = api.get("/deployments/name/pipeline/pipeline").json()
        query = {"deployments": {"id": {"any_": [pipeline["id"]]}}, "flow_runs": {"name": {"like_": "pipeline web"}}}
        runs = [r for r in api.post("/flow_runs/filter", json=query).json() if r["id"] == promotion.flow_run_id]
        assert len(runs) == 1  # the release handed on once
        parameters = runs[0]["parameters"]
        assert (parameters["app"], parameters["release"]) == ("web", promotion.release_id)
        assert Path(parameters["config"]).resolve() == sandbox.config.resolve()  # the deployment's (none was passed)
        started = datetime.fromisoformat(runs[0]["start_time"]).timestamp() - pushed_at
        print(f"push -> pipeline running {started:.2f} s")
        watches = api.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["watch"]}}}).json()
        config = sandbox.config.resolve()
        pushed = [w for w in watches if w["parameters"].get("apps")]  # not an interval run
        mine = [w for w in pushed if Path(w["parameters"]["config"]).resolve() == config]
        assert [w["deployment_id"] for w in mine] == [None]  # the receiver's own, no triggered one
        host = registry.url.removeprefix("http://")  # this test's own registry
        query = {"filter": {"event": {"name": [EVENT]}, "resource": {"id": [f"promoflow.repository.{host}/demo/web"]}}}
        assert api.post("/events/filter", json=query).json()["events"] == []
    finally:
        registry.stop()


def _dev_running(sandbox: Sandbox, label: str) -> Any:
    """web's promotion of the release `label` to dev, once it succeeded."""
    found = sandbox.db().release("web", label)
    states = [p for p in sandbox.db().promotions("web", "dev")] if found else []
    return next((p for p in states if found and p.release_id == found.id and p.state == "succeeded"), None)


def _memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of a process, in MiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) // 1024
    return found


class _Flood:
    """Unauthenticated GitHub deliveries of 1 MiB each on raw sockets, every byte but the last sent, then held."""

    HEAD = (
        "POST /hooks/github HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: pull_request_review\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
        f"Content-Length: {MAX_BODY_BYTES}\r\n\r\n"
    ).encode()
    CHUNK = b"x" * 65536

    def __init__(self, port: int, connections: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
        self.unsent = {s: [self.HEAD, MAX_BODY_BYTES - 1] for s in self.sockets}
        self.answered: dict[socket.socket, str] = {}
        for s in self.sockets:
            s.setblocking(False)

    def send(self, seconds: float) -> None:
        """Send what the receiver takes, round robin, for at most `seconds` (it may stop reading)."""
        deadline = time.monotonic() + seconds
        while self.unsent and time.monotonic() < deadline:
            moved = False
            for s, pending in list(self.unsent.items()):
                head, left = pending
                try:
                    if head:
                        pending[0] = head[s.send(head) :]
                    elif left:
                        pending[1] = left - s.send(self.CHUNK[: min(left, len(self.CHUNK))])
                    else:
                        del self.unsent[s]  # held: the last byte never comes
                    moved = True
                except BlockingIOError:
                    pass
                except OSError:  # answered and closed by the receiver
                    del self.unsent[s]
            if not moved:
                time.sleep(0.05)

    def answers(self) -> Counter[str]:
        """The status codes the receiver answered so far, "closed" for a connection closed without one."""
        for s in self.sockets:
            if s in self.answered:
                continue
            try:
                answer = s.recv(64)
            except BlockingIOError:
                continue
            except OSError:
                answer = b""
            self.answered[s] = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
        return Counter(self.answered.values())

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.mark.prefect
def test_a_thousand_unauthenticated_deliveries_leave_memory_bounded_and_deliveries_working(
    config: Path, prefect_api: str, tmp_path: Path
) -> None:
    port = free_port(0)
    log = tmp_path / "receiver.log"
    receiver = _start(RECEIVER, str(config), str(port), log=log, env={"PROMOFLOW_WEBHOOK_SECRET": SECRET})
    flood: _Flood | None = None
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait("the receiver", up, 30, [log])
        before = _memory(receiver.pid)["VmRSS"]
        flood = _Flood(port, 1000)
        flood.send(seconds=30)
        held = _memory(receiver.pid)

        # header-authenticated deliveries still get through while the flood is held
        push = envelope(distribution_event("ev-flood", repository="nobody/watches"))
        answer = httpx.post(f"http://127.0.0.1:{port}/hooks/registry", json=push, headers=BEARER, timeout=30)
        assert (answer.status_code, answer.json()) == (202, {"apps": []})

        # the few bodies read before their signature could be checked time out, the rest were never read
        _wait("the slow bodies to be refused", lambda: flood.answers().get("408"), 60, [log])
        codes = flood.answers()
        assert set(codes) <= {"408", "503", "closed"} and codes["408"] <= 32, codes
        peak = _memory(receiver.pid)["VmHWM"]
        print(f"receiver memory: {before} MiB before, {held['VmRSS']} MiB held, peak {peak} MiB")
        assert peak - before < 250, (before, held, peak)  # 1000 bodies of 1 MiB would be a gigabyte
        flood.close()
        flood = None

        ping = json.dumps({"zen": "Design for failure."}).encode()
        signed = httpx.post(f"http://127.0.0.1:{port}/hooks/github", content=ping, headers=github_headers(ping, "ping"))
        assert (signed.status_code, signed.json()) == (200, {"apps": []})
        assert SECRET not in log.read_text()
    finally:
        if flood is not None:
            flood.close()
        _stop(receiver)
