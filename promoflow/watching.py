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

from promoflow import promotion, releases
from promoflow.config import App
from promoflow.project import Project
from promoflow.records import Release
from promoflow.releases import AppSources
from promoflow.sources import RegistrySource
from promoflow.sources.session import DIGESTS_FILE, DigestStore, RegistrySession, SessionRegistrySource

__all__ = ["Cycle", "run_cycle"]

MAX_THREADS = 16  # apps picked at once; their registry I/O is bounded by each registry's budget instead
T = TypeVar("T")
logger = logging.getLogger("promoflow.watch")


@dataclass
class Cycle:
    """What a cycle found: new releases, the apps that could not be looked at, and the registry requests sent."""

    new: list[Release] = field(default_factory=list)
    newest: dict[str, Release] = field(default_factory=dict)  # every app looked at: its newest release
    failed: dict[str, Exception] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)


def run_cycle(project: Project, apps: list[App], origin: str = "watch") -> Cycle:
    """Discover every app's newest release; record each one not seen before. One app's failure does not
    stop the others: it is reported in `failed`."""
    cycle = Cycle()
    sources: dict[str, AppSources] = {}
    for app in apps:
        try:
            sources[app.name] = promotion.sources(project, app)
            for source in sources[app.name].images.values():
                if isinstance(source, RegistrySource):
                    source.named_credentials()  # read (and kept) before the loop: a secret store is blocking I/O
        except Exception as error:  # a source it cannot set up (a secret it cannot read): this app only
            cycle.failed[app.name] = error
            sources.pop(app.name, None)
    looked_at = [app for app in apps if app.name in sources]
    found, cycle.requests = _run(_discover_all(project, looked_at, sources, origin))
    for app in looked_at:
        result = found[app.name]
        if isinstance(result, Exception):
            cycle.failed[app.name] = result
        else:
            cycle.newest[app.name] = result
    known = project.db.known_releases([candidate.id for candidate in cycle.newest.values()])
    for name, candidate in cycle.newest.items():
        if candidate.id in known:
            continue
        cycle.newest[name], created = releases.save(project.db, candidate, sources[name])
        if created:  # else a watch running at once (the receiver's, a worker's) recorded it first and hands it on
            cycle.new.append(cycle.newest[name])
    return cycle


async def _discover_all(
    project: Project,
    apps: list[App],
    sources: dict[str, AppSources],
    origin: str,
) -> tuple[dict[str, Release | Exception], Counter[str]]:
    loop = asyncio.get_running_loop()
    store = DigestStore.load(project.state_dir / DIGESTS_FILE)
    async with RegistrySession(store) as session:
        for app in apps:
            images = sources[app.name].images
            for image in app.images:
                source = images.get(image.name)
                if isinstance(source, RegistrySource):
                    mutable = image.policy.track is not None
                    shared = SessionRegistrySource(source, session, loop, mutable)
                    shared.start()  # every listing of the cycle starts now, concurrently
                    images[image.name] = shared
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(apps))), thread_name_prefix="watch") as pool:
            results = await asyncio.gather(
                *(loop.run_in_executor(pool, releases.discover, app, sources[app.name], origin) for app in apps),
                return_exceptions=True,
            )
        requests = session.stats
    try:
        store.save()
    except OSError as error:  # a cache: the next cycle asks the registries again
        logger.warning("Cannot save the registry digests to %s: %s", store.path, error)
    found: dict[str, Release | Exception] = {}
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
