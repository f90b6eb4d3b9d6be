"""Where releases come from: image sources with one small interface, and the tag policies that pick."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from promoflow.errors import NotFound, TerminalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from promoflow.config import RegistryCredentials
    from promoflow.sources.registry import Credentials, RegistryClient

T = TypeVar("T")


class Source(Protocol):
    """An image repository: its tags (one cheap listing), the digest of one tag, and when an image was built
    (asked once per new release, and per candidate of an `order: created` policy: a manifest and a config)."""

    def tags(self) -> list[str]: ...

    def digest(self, tag: str) -> str: ...

    def built_at(self, digest: str) -> datetime | None: ...


def build_times(source: Source) -> Callable[[str], datetime | None]:
    """A tag -> when its image was built, for `order: created` (`promoflow.sources.policy.BuildTime`)."""
    return lambda tag: source.built_at(source.digest(tag))


def config_digest(manifest: bytes) -> str | None:
    """The config blob an image manifest names; None for an index (no single image) or anything else."""
    try:
        document = json.loads(manifest)
    except ValueError:
        return None
    config = document.get("config") if isinstance(document, dict) else None
    digest = config.get("digest") if isinstance(config, dict) else None
    return digest if isinstance(digest, str) else None


def config_created(config: bytes) -> datetime | None:
    """An image config's `created` time (RFC 3339, in UTC); None when it has none a person could trust."""
    try:
        document = json.loads(config)
        created = datetime.fromisoformat(document["created"])
    except (ValueError, TypeError, KeyError):
        return None
    # reproducible builds stamp the epoch (SOURCE_DATE_EPOCH=0): that is no creation time
    if created.tzinfo is None or created.year < 1980:
        return None
    return created.astimezone(UTC)


@dataclass
class OciLayoutSource:
    """An OCI image-layout directory: tags and digests both come from index.json."""

    name: str
    path: Path

    @cached_property
    def _index(self) -> dict[str, str]:
        from promoflow.sources import oci_layout

        try:
            return oci_layout.list_tags(self.path)
        except oci_layout.SourceError as error:
            raise TerminalError(f"Cannot read the source of {self.name}: {error}") from None

    def tags(self) -> list[str]:
        return list(self._index)

    def digest(self, tag: str) -> str:
        if tag not in self._index:
            raise NotFound(f"{self.name} has no tag {tag!r} in {self.path}.")
        return self._index[tag]

    def built_at(self, digest: str) -> datetime | None:
        from promoflow.sources import oci_layout

        return oci_layout.built_at(self.path, digest)


@dataclass
class RegistrySource:
    """A repository in an OCI Distribution registry: one tag listing, then one HEAD per picked tag.

    Each call is a session of its own; a watch cycle shares one per registry instead
    (`promoflow.sources.session`)."""

    name: str
    url: str
    repository: str
    platform: str | None = None
    credentials: RegistryCredentials | None = None  # references from promotions.yaml, read when first needed
    _digests: dict[str, str] = field(default_factory=dict)
    _built: dict[str, datetime | None] = field(default_factory=dict)  # by digest: an image config never changes
    _named: Credentials | None = None

    def tags(self) -> list[str]:
        return self._call(lambda client: client.list_tags(self.repository))

    def digest(self, tag: str) -> str:
        if tag not in self._digests:
            self._digests[tag] = self._call(lambda client: client.digest(self.repository, tag, self.platform))
        return self._digests[tag]

    def built_at(self, digest: str) -> datetime | None:
        if digest not in self._built:
            self._built[digest] = self._call(lambda client: client.built_at(self.repository, digest))
        return self._built[digest]

    def _call(self, action: Callable[[RegistryClient], Awaitable[T]]) -> T:
        from urllib.parse import urlsplit

        from promoflow.sources.registry import RegistryClient, budget_from_env, find_credentials

        # Read before the event loop starts: a Prefect Secret block loads synchronously only outside one.
        host = urlsplit(self.url).netloc
        credentials = self.named_credentials() or find_credentials(host)

        async def call() -> T:
            async with RegistryClient(self.url, credentials, budget_from_env(host)) as client:
                return await action(client)

        return asyncio.run(call())

    def named_credentials(self) -> Credentials | None:
        """The credentials promotions.yaml names for this source, read once; None: look them up by host."""
        if self.credentials is not None and self._named is None:
            self._named = self._read_credentials()
        return self._named

    def _read_credentials(self) -> Credentials | None:
        from promoflow.secrets import REFERENCE, resolve
        from promoflow.sources.registry import Credentials

        if self.credentials is None:
            return None
        username = self.credentials.username
        if REFERENCE.match(username):
            username = resolve(username, f"registry user name of {self.name}")
        password = resolve(self.credentials.password, f"registry password of {self.name}")
        where = f"the credentials of {self.name} in promotions.yaml (password from {self.credentials.password})"
        return Credentials(username, password, source=where)
