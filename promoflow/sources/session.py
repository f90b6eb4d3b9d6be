"""The registries of one watch cycle: one client per registry, each repository listed once, digests remembered.

A `RegistrySession` lives in one event loop for one cycle. It opens one `RegistryClient` per registry
(so one request budget, one token cache and one connection pool per registry, whatever the number of
apps), lists the tags of every repository once and concurrently, and asks for a tag's digest only when
the `DigestStore` does not know it. The store keeps the digests of immutable tags (every tag picked by
a policy that does not `track` a mutable one) across cycles and processes, in a small JSON file in the
state directory: a cycle in which no pick changed sends no HEAD request. It keeps the build times that
`order: created` policies read too, by digest (an image's config never changes): a candidate's config
is read once.

Sources are synchronous (`promoflow.sources.Source`); `SessionRegistrySource` gives the session's
answers to code running in worker threads, so that `releases.discover` works on every kind of source
unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from promoflow.sources import RegistrySource
from promoflow.sources.registry import (
    Credentials,
    DigestCache,
    DigestKey,
    RegistryClient,
    budget_from_env,
    find_credentials,
)

__all__ = ["DIGESTS_FILE", "DigestStore", "RegistrySession", "SessionRegistrySource"]

DIGESTS_FILE = "registry-digests.json"
_FORMAT = 1
T = TypeVar("T")
BuildTimes = dict[tuple[str, str], datetime | None]


def _time(created: str | None) -> datetime | None:
    return datetime.fromisoformat(created) if created is not None else None


def _text(created: datetime | None) -> str | None:
    return created.isoformat() if created is not None else None


class DigestStore:
    """Digests of immutable tags, per registry URL, kept in a JSON file (a cache: unreadable means empty).

    Only the repositories listed in a cycle are pruned, to the tags they still have, so the file stays
    as large as the tags picked, and a partial cycle (`watch --app web`) keeps the others' entries.
    """

    def __init__(
        self,
        path: Path | None,
        caches: dict[str, DigestCache] | None = None,
        built: dict[str, BuildTimes] | None = None,
    ) -> None:
        self.path = path
        self.caches = caches or {}
        self.built = built or {}  # registry URL -> (repository, digest) -> build time (None: its config has none)

    @classmethod
    def load(cls, path: Path) -> DigestStore:
        try:
            document = json.loads(path.read_text())
            if document.get("format") != _FORMAT:
                return cls(path)
            caches = {url: DigestCache.loads(json.dumps(rows)) for url, rows in document["registries"].items()}
            built = {
                url: {(repository, digest): _time(created) for repository, digest, created in rows}
                for url, rows in document.get("built", {}).items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls(path)  # missing, from another version, or damaged: the next cycle asks again
        return cls(path, caches, built)

    def get(self, registry: str, key: DigestKey) -> str | None:
        cache = self.caches.get(registry)
        return cache.get(key) if cache is not None else None

    def put(self, registry: str, key: DigestKey, digest: str) -> None:
        self.caches.setdefault(registry, DigestCache())[key] = digest

    def prune(self, registry: str, repository: str, tags: set[str]) -> None:
        """Forget the digests of `repository`'s tags that are gone, and the build times no tag left points at."""
        cache = self.caches.get(registry, DigestCache())
        for key in [k for k in cache if k.repository == repository and k.tag not in tags]:
            del cache[key]
        times = self.built.get(registry, {})
        kept = {digest for key, digest in cache.items() if key.repository == repository}
        for repository_digest in [k for k in times if k[0] == repository and k[1] not in kept]:
            del times[repository_digest]

    def save(self) -> None:
        """Write the file atomically (a concurrent reader sees the old or the new one, never half)."""
        if self.path is None:
            return
        document = {
            "format": _FORMAT,
            "registries": {url: json.loads(cache.dumps()) for url, cache in self.caches.items() if cache},
            "built": {
                url: [[*key, _text(created)] for key, created in times.items()]
                for url, times in self.built.items()
                if times
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(document, out)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


class RegistrySession:
    """`async with RegistrySession(store) as session:` the registries of one cycle, in one event loop.

    `stats` counts the requests sent to all registries by kind (see `RegistryClient.stats`).
    """

    def __init__(self, store: DigestStore | None = None) -> None:
        self.store = store or DigestStore(None)
        self._clients: dict[tuple[str, str | None], RegistryClient] = {}
        self._listings: dict[tuple[str, str], asyncio.Task[list[str]]] = {}
        self._stack = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._listings.values():
            task.cancel()
        await asyncio.gather(*self._listings.values(), return_exceptions=True)
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def stats(self) -> Counter[str]:
        return sum((client.stats for client in self._clients.values()), Counter())

    async def _client(self, registry: str, credentials: Credentials | None) -> RegistryClient:
        registry = registry.rstrip("/")
        async with self._opening:
            # One budget and one token cache per registry (and identity, when promotions.yaml names one).
            key = (registry, credentials.username if credentials else None)
            client = self._clients.get(key)
            if client is None:
                host = urlsplit(registry).netloc
                client = RegistryClient(registry, credentials or find_credentials(host), budget_from_env(host))
                self._clients[key] = await self._stack.enter_async_context(client)
            return client

    def list_tags(
        self, registry: str, repository: str, credentials: Credentials | None = None
    ) -> asyncio.Task[list[str]]:
        """The listing of `repository`, started at the first call: every caller shares one."""
        key = (registry.rstrip("/"), repository)
        if key not in self._listings:
            self._listings[key] = asyncio.create_task(self._list(registry, repository, credentials))
        return self._listings[key]

    async def _list(self, registry: str, repository: str, credentials: Credentials | None) -> list[str]:
        tags = await (await self._client(registry, credentials)).list_tags(repository)
        self.store.prune(registry.rstrip("/"), repository, set(tags))
        return tags

    async def digest(
        self,
        registry: str,
        repository: str,
        tag: str,
        platform: str | None,
        mutable: bool,
        credentials: Credentials | None = None,
    ) -> str:
        """The digest of a tag: from the store unless the tag is `mutable`, else one HEAD (remembered if immutable)."""
        key, registry = DigestKey(repository, tag, platform), registry.rstrip("/")
        if not mutable and (known := self.store.get(registry, key)) is not None:
            return known
        digest = await (await self._client(registry, credentials)).digest(repository, tag, platform)
        if not mutable:
            self.store.put(registry, key, digest)
        return digest

    async def built_at(
        self, registry: str, repository: str, digest: str, credentials: Credentials | None = None
    ) -> datetime | None:
        """When the image `digest` was built: from the store, else its config (one manifest and one blob read)."""
        times = self.store.built.setdefault(registry.rstrip("/"), {})
        if (repository, digest) not in times:
            client = await self._client(registry, credentials)
            times[repository, digest] = await client.built_at(repository, digest)
        return times[repository, digest]


@dataclass
class SessionRegistrySource:
    """A registry source answered by a session in another thread's event loop: a `Source` for worker threads."""

    source: RegistrySource
    session: RegistrySession
    loop: asyncio.AbstractEventLoop
    mutable: bool  # its policy tracks a mutable tag: its digest is asked every cycle

    def start(self) -> None:
        """Start the listing now (call from the loop), so all repositories are listed concurrently."""
        self.session.list_tags(self.source.url, self.source.repository, self.source.named_credentials())

    def tags(self) -> list[str]:
        return self._wait(self._tags())

    def digest(self, tag: str) -> str:
        source = self.source
        return self._wait(
            self.session.digest(
                source.url, source.repository, tag, source.platform, self.mutable, source.named_credentials()
            )
        )

    def built_at(self, digest: str) -> datetime | None:
        source = self.source
        if self.loop.is_closed():  # asked for a new release after the cycle: what the cycle read, or the source
            known = self.session.store.built.get(source.url.rstrip("/"), {})
            return known[source.repository, digest] if (source.repository, digest) in known else source.built_at(digest)
        return self._wait(self.session.built_at(source.url, source.repository, digest, source.named_credentials()))

    async def _tags(self) -> list[str]:
        source = self.source
        return list(await self.session.list_tags(source.url, source.repository, source.named_credentials()))

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()
