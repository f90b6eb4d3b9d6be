"""One watch cycle: the newest release of every app by its tag policies, all sources at once.

Every registry repository of the cycle is listed concurrently in ONE event loop, through one client
per registry (`promoflow.sources.session`); the digests of immutable tags already seen come from the
state directory's digest store, so an unchanged cycle sends only tag-list requests. Each app's pick
(`releases.discover`) runs in a worker thread, which also keeps synchronous sources (OCI layouts,
git) working as they are. New releases are recorded once, by their content-derived id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from promoflow import releases
from promoflow.config import App
from promoflow.gitops.manifests import ImagePin
from promoflow.project import Project
from promoflow.records import Release
from promoflow.sources import RegistrySource, Source
from promoflow.sources.session import DIGESTS_FILE, DigestStore, RegistrySession, SessionRegistrySource

__all__ = ["Cycle", "run_cycle"]

MAX_THREADS = 16  # apps picked at once; their registry I/O is bounded by each registry's budget instead
T = TypeVar("T")
logger = logging.getLogger("promoflow.watch")


@dataclass
class Cycle:
    """What a cycle found: new releases, the apps that could not be looked at, and the registry requests sent."""

    new: list[Release] = field(default_factory=list)
    failed: dict[str, Exception] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)


def run_cycle(project: Project, apps: list[App], origin: str = "watch") -> Cycle:
    """Discover every app's newest release; record each one not seen before. One app's failure does not
    stop the others: it is reported in `failed`."""
    found, requests = _run(_discover_all(project, apps))
    cycle = Cycle(requests=requests)
    candidates: list[Release] = []
    for app in apps:
        pins = found[app.name]
        if isinstance(pins, Exception):
            cycle.failed[app.name] = pins
        else:
            candidates.append(releases.record(app.name, pins, origin))
    known = project.db.known_releases([candidate.id for candidate in candidates])
    cycle.new = [project.db.save_release(candidate) for candidate in candidates if candidate.id not in known]
    return cycle


async def _discover_all(
    project: Project, apps: list[App]
) -> tuple[dict[str, list[ImagePin] | Exception], Counter[str]]:
    loop = asyncio.get_running_loop()
    store = DigestStore.load(project.state_dir / DIGESTS_FILE)
    async with RegistrySession(store) as session:
        sources: dict[str, dict[str, Source]] = {}
        for app in apps:
            sources[app.name] = {}
            for image in app.images:
                source = project.source(image)
                if isinstance(source, RegistrySource):
                    shared = SessionRegistrySource(source, session, loop, mutable=image.policy.track is not None)
                    shared.start()  # every listing of the cycle starts now, concurrently
                    source = shared
                sources[app.name][image.name] = source
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(apps))), thread_name_prefix="watch") as pool:
            results = await asyncio.gather(
                *(loop.run_in_executor(pool, releases.discover, app, sources[app.name]) for app in apps),
                return_exceptions=True,
            )
        requests = session.stats
    try:
        store.save()
    except OSError as error:  # a cache: the next cycle asks the registries again
        logger.warning("Cannot save the registry digests to %s: %s", store.path, error)
    found: dict[str, list[ImagePin] | Exception] = {}
    for app, result in zip(apps, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
        found[app.name] = result
    return found, requests


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run in a fresh event loop; from a thread that already runs one (an async caller), in another thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
