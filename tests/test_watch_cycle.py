"""The watch cycle's discovery against a real registry: one listing per repository, digests remembered.

`watching.run_cycle` is what the `watch` flow runs; each call loads the digest store from the state
directory as a new process would.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from promoflow import watching
from promoflow.errors import NotFound
from promoflow.project import Project
from promoflow.sources.session import DIGESTS_FILE
from tests.conftest import Sandbox
from tests.registry_fixtures import push_image, registry_fixture, registry_storage_fixture

__all__ = ["registry_fixture", "registry_storage_fixture"]  # fixtures used by name below

APP = """  - name: {name}
    path: apps/{name}
    images:
      - name: registry.example.com/{name}
        source:
{source}
        policy:
{policy}
"""


def app(name: str, source: str, policy: str = "semver: '*'") -> str:
    return APP.format(name=name, source=f"          {source}", policy=f"          {policy}")


@pytest.fixture
def team() -> str:
    return f"cycle{uuid.uuid4().hex[:8]}"  # the registry is shared by the session: repositories of our own


def configure(sandbox: Sandbox, *apps: str) -> Project:
    text = sandbox.config.read_text()
    sandbox.config.write_text(text[: text.index("apps:\n")] + "apps:\n" + "".join(apps))
    return Project.load(sandbox.config)


def push(registry: str, repository: str, *tags: str) -> None:
    with httpx.Client(base_url=registry, timeout=10) as http:
        for tag in tags:
            push_image(http, repository, tag, f"{repository} {tag} {uuid.uuid4()}")


def labels(cycle: watching.Cycle) -> dict[str, str]:
    return {release.app: release.label for release in cycle.new}


def test_a_cycle_lists_each_repository_once_and_heads_only_changed_picks(
    sandbox: Sandbox, registry: str, team: str
) -> None:
    push(registry, f"{team}/api", "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0")
    push(registry, f"{team}/edge", "latest")
    sandbox.publish("1.2.0")
    project = configure(
        sandbox,
        app("api", f"{{registry: {registry}, repository: {team}/api}}", "semver: '^1'"),
        app("api-next", f"{{registry: {registry}, repository: {team}/api}}"),  # the same repository
        app("edge", f"{{registry: {registry}, repository: {team}/edge}}", "track: latest"),
        app("web", "oci_layout: .promoflow/demo/oci/web"),  # a synchronous source, in a worker thread
    )
    apps = list(project.config.apps)

    first = watching.run_cycle(project, apps)
    assert labels(first) == {"api": "1.1.0", "api-next": "2.0.0", "edge": "latest", "web": "1.2.0"}
    assert first.requests == Counter({"GET ping": 1, "GET tags": 2, "HEAD manifest": 3}) and not first.failed
    assert (project.state_dir / DIGESTS_FILE).exists()

    unchanged = watching.run_cycle(project, apps)
    assert unchanged.new == []
    # The tracked tag is asked every cycle (it moves); the immutable picks come from the store.
    assert unchanged.requests == Counter({"GET ping": 1, "GET tags": 2, "HEAD manifest": 1})

    push(registry, f"{team}/api", "1.3.0")
    push(registry, f"{team}/edge", "latest")  # moved
    changed = watching.run_cycle(project, apps)
    assert labels(changed) == {"api": "1.3.0", "edge": "latest"}
    assert changed.requests == Counter({"GET ping": 1, "GET tags": 2, "HEAD manifest": 2})


def test_one_app_that_cannot_be_looked_at_does_not_stop_the_others(sandbox: Sandbox, registry: str, team: str) -> None:
    push(registry, f"{team}/api", "1.0.0")
    project = configure(
        sandbox,
        app("ghost", f"{{registry: {registry}, repository: {team}/missing}}"),
        app("api", f"{{registry: {registry}, repository: {team}/api}}"),
    )
    cycle = watching.run_cycle(project, list(project.config.apps))
    assert labels(cycle) == {"api": "1.0.0"}
    assert isinstance(cycle.failed["ghost"], NotFound)
    assert f"Repository '{team}/missing' does not exist" in str(cycle.failed["ghost"])


def test_a_damaged_digest_store_is_only_a_cold_cache(sandbox: Sandbox, registry: str, team: str) -> None:
    push(registry, f"{team}/api", "1.0.0")
    project = configure(sandbox, app("api", f"{{registry: {registry}, repository: {team}/api}}"))
    store: Path = project.state_dir / DIGESTS_FILE
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("{not json")
    cycle = watching.run_cycle(project, list(project.config.apps))
    assert labels(cycle) == {"api": "1.0.0"} and cycle.requests["HEAD manifest"] == 1
    assert watching.run_cycle(project, list(project.config.apps)).requests["HEAD manifest"] == 0


def test_order_created_reads_each_candidates_build_time_once_across_cycles(
    sandbox: Sandbox, registry: str, team: str
) -> None:
    built = {"sha-9f1": "2026-12-01T10:00:00Z", "sha-0ab": "2026-12-01T12:00:00Z", "sha-77c": "2026-12-01T11:00:00Z"}
    with httpx.Client(base_url=registry, timeout=10) as http:
        for tag, created in [*built.items(), ("sha-e2e", None)]:  # sha-e2e's config says nothing: ranked last
            push_image(http, f"{team}/web", tag, f"{team} {tag}", created=created)
    project = configure(sandbox, app("web", f"{{registry: {registry}, repository: {team}/web}}", "order: created"))
    apps = list(project.config.apps)

    first = watching.run_cycle(project, apps)
    assert labels(first) == {"web": "sha-0ab"} and not first.failed
    assert first.new[0].built_at == datetime(2026, 12, 1, 12, tzinfo=UTC)
    # per candidate: its digest (HEAD), its manifest and its config blob
    reads = {"HEAD manifest": 4, "GET manifest": 4, "GET blob": 4}
    assert first.requests == Counter({"GET ping": 1, "GET tags": 1, **reads})

    # another process: digests and build times come from the state directory's store
    assert watching.run_cycle(project, apps).requests == Counter({"GET ping": 1, "GET tags": 1})

    with httpx.Client(base_url=registry, timeout=10) as http:
        push_image(http, f"{team}/web", "sha-5d0", f"{team} sha-5d0", created="2026-12-01T13:00:00Z")
    newer = watching.run_cycle(project, apps)
    assert labels(newer) == {"web": "sha-5d0"}
    assert newer.requests == Counter(
        {"GET ping": 1, "GET tags": 1, "HEAD manifest": 1, "GET manifest": 1, "GET blob": 1}
    )


def test_two_cycles_at_once_hand_a_new_release_on_once(sandbox: Sandbox, registry: str, team: str) -> None:
    """The webhook receiver's watch and a worker's interval watch may run at once: both find the release unknown,
    only the one whose record went in first calls it new (hands it to a pipeline)."""
    push(registry, f"{team}/api", "1.0.0")
    push(registry, f"{team}/edge", "2.0.0")
    configure(
        sandbox,
        app("api", f"{{registry: {registry}, repository: {team}/api}}"),
        app("edge", f"{{registry: {registry}, repository: {team}/edge}}"),
    )
    both_looked = threading.Barrier(2, timeout=60)

    def cycle() -> watching.Cycle:
        project = Project.load(sandbox.config)  # each watch has its own, as in its own process
        known = project.db.known_releases

        def known_to_both(ids: list[str]) -> set[str]:
            found = known(ids)
            both_looked.wait()  # neither records anything before both looked
            return found

        project.db.known_releases = known_to_both  # type: ignore[method-assign]
        return watching.run_cycle(project, list(project.config.apps))

    with ThreadPoolExecutor(2) as pool:
        cycles = list(pool.map(lambda _: cycle(), range(2)))
    assert not any(c.failed for c in cycles)
    assert {app: 2 for app in ("api", "edge")} == Counter(r.app for c in cycles for r in c.newest.values())
    assert sorted(r.label for c in cycles for r in c.new) == ["1.0.0", "2.0.0"]  # each once, by either
