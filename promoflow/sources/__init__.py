"""Where releases come from: image sources with one small interface, and the tag policies that pick."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from promoflow.errors import NotFound, TerminalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from promoflow.sources.registry import RegistryClient

T = TypeVar("T")


class Source(Protocol):
    """An image repository: its tags (one cheap listing) and the digest of one tag."""

    def tags(self) -> list[str]: ...

    def digest(self, tag: str) -> str: ...


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


@dataclass
class RegistrySource:
    """A repository in an OCI Distribution registry: one tag listing, then one HEAD per picked tag.

    Each call is a session of its own; a watch cycle shares one per registry instead
    (`promoflow.sources.session`)."""

    name: str
    url: str
    repository: str
    platform: str | None = None
    _digests: dict[str, str] = field(default_factory=dict)

    def tags(self) -> list[str]:
        return asyncio.run(self._call(lambda client: client.list_tags(self.repository)))

    def digest(self, tag: str) -> str:
        if tag not in self._digests:
            self._digests[tag] = asyncio.run(
                self._call(lambda client: client.digest(self.repository, tag, self.platform))
            )
        return self._digests[tag]

    async def _call(self, action: Callable[[RegistryClient], Awaitable[T]]) -> T:
        from urllib.parse import urlsplit

        from promoflow.sources.registry import RegistryClient, budget_from_env, find_credentials

        host = urlsplit(self.url).netloc
        async with RegistryClient(self.url, find_credentials(host), budget_from_env(host)) as client:
            return await action(client)
