"""OCI Distribution client: the tags of an image repository and the digests they point at.

The read side of the distribution spec (https://github.com/opencontainers/distribution-spec), on httpx:

    GET  /v2/                           is this a registry, and how does it want us to authenticate
    GET  /v2/<name>/tags/list?n=        tags, page after page (`Link: <...>; rel="next"`)
    HEAD /v2/<name>/manifests/<tag>     the tag's digest (`Docker-Content-Digest`)
    GET  /v2/<name>/manifests/<digest>  an image index, to pick one platform's manifest

Authentication follows the registry's challenge: anonymous, Basic, or Bearer tokens from the
registry's token service (https://distribution.github.io/distribution/spec/auth/token/), one token
per repository scope, reused until it expires. Every request goes through the registry's `Budget`
(concurrency and rate) and is retried on 429, 5xx, timeouts and resets with jittered exponential
backoff, within bounds (`RetryPolicy`); past them the error is a TransientError, left to the caller's
retries. What retrying cannot fix is a TerminalError (NotFound for a missing repository or tag) whose
message says what to change, with secrets redacted. No Prefect imports.

Credentials come from environment variables (`PROMOFLOW_REGISTRY_<HOST>_USERNAME` and `..._PASSWORD`,
where <HOST> is the registry's host[:port] upper-cased with every other character than A-Z and 0-9
replaced by `_`: `ghcr.io` -> `GHCR_IO`, `127.0.0.1:5000` -> `127_0_0_1_5000`) or from a docker
`config.json`, as docker reads it: the host's `credHelpers` entry, else `credsStore`, else `auths`
(a helper is the program `docker-credential-<name>`). The request budget of a registry comes from
`PROMOFLOW_REGISTRY_<HOST>_RATE` (requests per second) and `..._CONCURRENCY`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import httpx

from promoflow import references
from promoflow.errors import NotFound, TerminalError, TransientError
from promoflow.redact import redact

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "ENV_PREFIX",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Budget",
    "Challenge",
    "Credentials",
    "DigestCache",
    "DigestKey",
    "RegistryClient",
    "RetryPolicy",
    "budget_from_env",
    "credentials_from_docker_config",
    "credentials_from_env",
    "credentials_from_helper",
    "env_names",
    "find_credentials",
    "parse_challenge",
    "retry_after_seconds",
    "select_platform",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Without all four, a registry may answer 404 for an OCI manifest, or convert a Docker one to schema1
# (whose digest is not the pushed one).
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
ENV_PREFIX = "PROMOFLOW_REGISTRY"
TAGS_PAGE_SIZE = 1000  # the largest page Distribution 3 serves; registries with smaller caps send Link
USER_AGENT = "promoflow"
DEFAULT_RATE_PER_SECOND = 10.0
DEFAULT_MAX_CONCURRENCY = 4
CREDENTIAL_HELPER_TIMEOUT_SECONDS = 30.0
# Renew a bearer token this long before it expires (at most a tenth of its life).
TOKEN_RENEW_EARLY_SECONDS = 5.0
# The spec's default lifetime of a token whose response has no expires_in.
TOKEN_DEFAULT_LIFETIME_SECONDS = 60
_ERROR_TEXT_LIMIT = 300

_DIGEST = references.REGISTERED_DIGEST
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
# Docker Hub answers to several names; `docker login` stores it under the first.
_DOCKER_HUB = ("index.docker.io", "docker.io", "registry-1.docker.io")


# --- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A registry username and password (or access token), and where they came from (for messages)."""

    username: str
    password: str = field(repr=False)
    source: str = "the caller"

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', source={self.source!r})"

    def basic_authorization(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def env_names(host: str, prefix: str = ENV_PREFIX) -> tuple[str, str]:
    """The username and password variables for a registry host: `PREFIX_<HOST>_USERNAME`, `..._PASSWORD`."""
    key = re.sub(r"[^A-Z0-9]", "_", host.upper())
    return f"{prefix}_{key}_USERNAME", f"{prefix}_{key}_PASSWORD"


def credentials_from_env(host: str, prefix: str = ENV_PREFIX) -> Credentials | None:
    """Credentials for `host` from its two environment variables; None when neither is set."""
    user_var, password_var = env_names(host, prefix)
    username, password = os.environ.get(user_var, ""), os.environ.get(password_var, "")
    if not username and not password:
        return None
    if not username or not password:
        missing, present = (user_var, password_var) if not username else (password_var, user_var)
        raise TerminalError(f"{present} is set but {missing} is not: set both to log in to {host}.")
    return Credentials(username, password, source=f"environment variables {user_var}/{password_var}")


def docker_config_path() -> Path:
    """Where docker keeps `config.json`: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def credentials_from_docker_config(host: str, path: Path | None = None) -> Credentials | None:
    """Credentials for `host` from a docker config file, the way docker picks them; None when it has none.

    The host's `credHelpers` entry wins, then `credsStore`: both name a credential helper, the program
    `docker-credential-<name>` (`credentials_from_helper`). Else `auths`: an entry's key may be a bare
    host or a URL (`https://ghcr.io`, `https://index.docker.io/v1/`); its credentials are `auth`
    (base64 of `user:password`) or `username` and `password`.
    """
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TerminalError(f"Cannot read the docker config {path}: {type(exc).__name__}; fix or remove it.") from None
    if not isinstance(config, dict):
        return None
    wanted = _canonical_host(host)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _canonical_host(key) == wanted and isinstance(helper, str) and helper:
                return credentials_from_helper(helper, host, source=f"docker config {path} (credHelpers[{key!r}])")
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return credentials_from_helper(store, host, source=f"docker config {path} (credsStore)")
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _canonical_host(key) == wanted and isinstance(entry, dict):
            return _docker_entry_credentials(entry, source=f"docker config {path} (auths[{key!r}])")
    return None


def credentials_from_helper(helper: str, host: str, source: str = "the docker config") -> Credentials | None:
    """Credentials for `host` from a docker credential helper: `docker-credential-<helper> get` with the
    registry on stdin, JSON `{"Username", "Secret"}` on stdout; None when it has none for `host`.

    Docker Hub is asked by the name `docker login` stores it under (`https://index.docker.io/v1/`).
    """
    program = f"docker-credential-{helper}"
    binary = shutil.which(program)
    if binary is None:
        raise TerminalError(
            f"{source} says the credentials for {host} come from `{program}`, which is not on PATH:"
            " install it, or change that entry."
        )
    server = "https://index.docker.io/v1/" if _canonical_host(host) == _DOCKER_HUB[0] else host
    try:
        answer = subprocess.run(
            [binary, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=CREDENTIAL_HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"`{program} get` gave no answer for {host} within {CREDENTIAL_HELPER_TIMEOUT_SECONDS:g} s."
        ) from None
    except OSError as exc:
        raise TerminalError(f"Cannot run `{program}` ({source}): {type(exc).__name__}: {exc}.") from None
    said = (answer.stdout.strip() or answer.stderr.strip())[:_ERROR_TEXT_LIMIT]
    if answer.returncode != 0:
        if "credentials not found" in said.lower():  # the helpers' common "nothing stored" answer
            return None
        raise TerminalError(
            redact(f"`{program} get` failed for {host} (exit {answer.returncode}): {said or 'no message'}.")
        )
    try:
        found = json.loads(answer.stdout)
    except ValueError:
        found = None
    username = found.get("Username") if isinstance(found, dict) else None
    secret = found.get("Secret") if isinstance(found, dict) else None
    if not (isinstance(username, str) and isinstance(secret, str) and username and secret):
        raise TerminalError(f"`{program} get` answered for {host} without a Username and Secret.")
    if username == "<token>":
        raise TerminalError(
            f"`{program}` holds an identity token for {host}, which promoflow cannot use yet: give it a"
            f" username and password or access token ({' and '.join(env_names(host))})."
        )
    return Credentials(username, secret, source=f"{program} ({source})")


def find_credentials(host: str) -> Credentials | None:
    """Credentials for `host`: its environment variables first, then the docker config; None: anonymous."""
    return credentials_from_env(host) or credentials_from_docker_config(host)


def budget_from_env(host: str, prefix: str = ENV_PREFIX) -> Budget:
    """The budget of a registry: `PREFIX_<HOST>_RATE` requests per second (default 10) and at most
    `PREFIX_<HOST>_CONCURRENCY` in flight (default 4)."""
    key = re.sub(r"[^A-Z0-9]", "_", host.upper())
    rate_var, concurrency_var = f"{prefix}_{key}_RATE", f"{prefix}_{key}_CONCURRENCY"
    try:
        rate = float(os.environ.get(rate_var) or DEFAULT_RATE_PER_SECOND)
        concurrency = int(os.environ.get(concurrency_var) or DEFAULT_MAX_CONCURRENCY)
        return Budget(rate, concurrency)
    except ValueError:
        raise TerminalError(
            f"{rate_var} must be a number of requests per second above 0 and {concurrency_var} a whole number"
            " of at least 1."
        ) from None


def _canonical_host(key: str) -> str:
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", key.strip().lower()).split("/", 1)[0]
    return _DOCKER_HUB[0] if host in _DOCKER_HUB else host


def _docker_entry_credentials(entry: Mapping[str, Any], source: str) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        return _decode_auth(encoded, source)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return Credentials(username, password, source=source)
    return None


def _decode_auth(encoded: str, source: str) -> Credentials:
    """Docker's `auth`: base64 of `username:password`."""
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        username = sep = password = ""
    if not (username and sep and password):
        raise TerminalError(f"{source}: `auth` is not base64 of username:password; run `docker login` again.")
    return Credentials(username, password, source=source)


# --- request budget and retries ------------------------------------------------------------------


class Budget:
    """How hard promoflow may use one registry: at most `max_concurrency` requests in flight, and on
    average `rate_per_second` started per second (bursts of one second's worth). A 429 pauses every
    request of the budget for the Retry-After it asked. Share one Budget among all clients of a
    registry within one event loop.
    """

    def __init__(self, rate_per_second: float, max_concurrency: int) -> None:
        if rate_per_second <= 0 or max_concurrency < 1:
            raise ValueError("a Budget needs rate_per_second > 0 and max_concurrency >= 1")
        self.rate_per_second = rate_per_second
        self.max_concurrency = max_concurrency
        self._capacity = max(1.0, rate_per_second)
        self._tokens = self._capacity
        self._refilled = time.monotonic()
        self._paused_until = 0.0
        self._slots = asyncio.Semaphore(max_concurrency)
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrent slots, after waiting for the rate (and any pause) to allow a request."""
        async with self._slots:
            await self._take_token()
            yield

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def _take_token(self) -> None:
        async with self._lock:  # one waiter at a time: first come, first served
            while True:
                now = time.monotonic()
                self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self.rate_per_second)
                self._refilled = now
                wait = self._paused_until - now
                if wait <= 0:
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    wait = (1 - self._tokens) / self.rate_per_second
                await asyncio.sleep(wait)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request on 429, 5xx, timeouts and connection errors.

    At most `attempts` tries; between them a random sleep of up to `backoff * 2**n` seconds (capped
    at `max_backoff`), or what the registry's Retry-After asks; never more than `max_wait` seconds of
    sleep in all. A Retry-After beyond what is left of `max_wait` ends the retries at once.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_wait: float = 30.0

    def delay(self, retry: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**retry))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- authentication challenges and tokens --------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate` challenge: scheme `basic` or `bearer`, and where to get a bearer token.

    The challenge's `scope` is not kept: the client asks for `repository:<name>:pull` itself.
    """

    scheme: str
    realm: str = ""
    service: str = ""


def parse_challenge(header: str) -> Challenge | None:
    """`Basic realm="..."` or `Bearer realm="...",service="...",scope="..."` -> Challenge; None if empty."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        match.group(1).lower(): (match.group(2).replace('\\"', '"') if match.group(2) is not None else match.group(3))
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), realm=params.get("realm", ""), service=params.get("service", ""))


def _challenge_of(response: httpx.Response) -> Challenge | None:
    challenges = [c for header in response.headers.get_list("www-authenticate") if (c := parse_challenge(header))]
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return challenges[0] if challenges else None


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float  # wall clock, already shortened by the renewal margin


def _parse_token(body: Any, received_at: float) -> _Token | None:
    if not isinstance(body, dict):
        return None
    value = body.get("token") or body.get("access_token")
    if not isinstance(value, str) or not value:
        return None
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = TOKEN_DEFAULT_LIFETIME_SECONDS
    issued_at = received_at
    if isinstance(body.get("issued_at"), str):
        with contextlib.suppress(ValueError):
            issued = datetime.fromisoformat(body["issued_at"])
            issued_at = (issued if issued.tzinfo else issued.replace(tzinfo=UTC)).timestamp()
    early = min(TOKEN_RENEW_EARLY_SECONDS, lifetime / 10)
    return _Token(value, expires_at=issued_at + lifetime - early)


# --- digests -------------------------------------------------------------------------------------


class DigestKey(NamedTuple):
    repository: str
    tag: str
    platform: str | None


class DigestCache(dict[DigestKey, str]):
    """(repository, tag, platform) -> manifest digest, for one registry.

    A RegistryClient starts with an empty one: within one session each tag is asked once. Tags are
    mutable, so keep a cache across sessions (`dumps` it, `loads` it, hand it to the next client) only
    for sources whose tag policy treats tags as immutable, such as semver releases; never for a
    "digest of a mutable tag" source.
    """

    def dumps(self) -> str:
        return json.dumps([[key.repository, key.tag, key.platform, digest] for key, digest in self.items()])

    @classmethod
    def loads(cls, text: str) -> DigestCache:
        cache = cls()
        for row in json.loads(text):
            repository, tag, platform, digest = row
            if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
                raise ValueError(f"not a digest in the digest cache: {digest!r}")
            cache[DigestKey(repository, tag, platform)] = digest
        return cache


def parse_platform(platform: str) -> tuple[str, str, str | None]:
    """`os/architecture[/variant]` -> (os, architecture, variant)."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise TerminalError(f"Platform {platform!r} must look like os/architecture[/variant], e.g. linux/amd64.")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def select_platform(index: Mapping[str, Any], platform: str) -> str | None:
    """The digest of the index's manifest for `platform` (`linux/arm64` matches any arm64 variant)."""
    want_os, want_arch, want_variant = parse_platform(platform)
    for entry in index.get("manifests") or []:
        described = entry.get("platform") or {}
        if (
            described.get("os") == want_os
            and described.get("architecture") == want_arch
            and want_variant in (None, described.get("variant"))
        ):
            digest = entry.get("digest")
            return digest if isinstance(digest, str) else None
    return None


def _platforms(index: Mapping[str, Any]) -> list[str]:
    described = [entry.get("platform") or {} for entry in index.get("manifests") or []]
    return ["/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant")))) for p in described if p]


# --- the client ----------------------------------------------------------------------------------


class RegistryClient:
    """A session with one OCI registry: `async with RegistryClient("https://ghcr.io", creds) as registry:`.

    `stats` counts the HTTP requests sent, retries included, by method and kind of path:
    `GET ping`, `GET token`, `GET tags`, `HEAD manifest`, `GET manifest`.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        budget: Budget | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        digest_cache: DigestCache | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise TerminalError(
                f"Registry URL {redact(base_url)!r} must look like https://HOST[:PORT] (credentials go elsewhere)."
            )
        self.base_url = httpx.URL(scheme=url.scheme, host=url.host, port=url.port, path="/")
        self.host = f"{url.host}:{url.port}" if url.port else url.host
        self.credentials = credentials
        self.budget = budget or Budget(DEFAULT_RATE_PER_SECOND, DEFAULT_MAX_CONCURRENCY)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.digest_cache = DigestCache() if digest_cache is None else digest_cache
        self.stats: Counter[str] = Counter()
        self._http: httpx.AsyncClient | None = None
        self._pinged = False
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._auth_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(timeout=self.timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # - public API -

    async def ping(self) -> None:
        """`GET /v2/`: check that the URL is a registry and learn how it wants us to authenticate."""
        async with self._auth_lock:
            if self._pinged:
                return
            response = await self._send("GET", self.base_url.join("/v2/"), "ping", {})
            if response.status_code == 401:
                self._challenge = _challenge_of(response)
                if self._challenge is None:
                    raise TerminalError(f"{self.host} answered 401 to GET /v2/ without saying how to authenticate.")
            elif response.status_code != 200:
                raise TerminalError(
                    f"{self.base_url} does not look like an OCI registry: GET /v2/ answered {response.status_code}."
                )
            self._pinged = True

    async def list_tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, in the registry's order: one request per page, none per tag."""
        _check_repository(repository)
        url = self.base_url.join(f"/v2/{repository}/tags/list").copy_merge_params({"n": TAGS_PAGE_SIZE})
        tags: list[str] = []
        visited = {str(url)}
        while True:
            response = await self._request("GET", url, "tags", repository)
            if response.status_code != 200:
                raise self._error(response, repository)
            tags.extend(self._page_tags(response, repository))
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return tags
            url = response.url.join(next_link)
            if str(url) in visited:  # a registry linking back to a page it sent would make us loop forever
                raise TerminalError(f"{self.host} paginates the tags of {repository} in a loop (at {url.path}).")
            visited.add(str(url))

    async def digest(self, repository: str, tag: str, platform: str | None = None) -> str:
        """The digest `repository:tag` points at; with a platform (`linux/amd64`), the digest of that
        platform's manifest when the tag is an index. A single-platform manifest is returned as it
        is: checking its platform would cost two more requests per tag.
        """
        _check_repository(repository)
        if not references.TAG.fullmatch(tag):
            raise TerminalError(f"{tag!r} is not a valid tag (letters, digits, '_', '.', '-'; at most 128).")
        if platform is not None:
            parse_platform(platform)
        key = DigestKey(repository, tag, platform)
        if (cached := self.digest_cache.get(key)) is not None:
            return cached
        digest, media_type = await self._tag_digest(repository, tag)
        if platform is not None and media_type in INDEX_MEDIA_TYPES:
            digest = await self._platform_digest(repository, tag, digest, platform)
        self.digest_cache[key] = digest
        return digest

    async def digests(self, repository: str, tags: Iterable[str], platform: str | None = None) -> dict[str, str]:
        """`digest` of many tags at once, as concurrently as the budget allows; the first error cancels the rest."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {tag: group.create_task(self.digest(repository, tag, platform)) for tag in dict.fromkeys(tags)}
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return {tag: task.result() for tag, task in tasks.items()}

    async def built_at(self, repository: str, digest: str) -> datetime | None:
        """When the image with this manifest digest was built: its config's `created`; None for an index or a
        config without one. Two requests: the manifest and the config blob."""
        from promoflow.sources import config_created, config_digest

        _check_repository(repository)
        body, _ = await self._manifest(repository, digest)
        config = config_digest(body)
        if config is None or not _DIGEST.fullmatch(config):
            return None
        url = self.base_url.join(f"/v2/{repository}/blobs/{config}")
        response = await self._request("GET", url, "blob", repository)
        if response.status_code != 200:
            raise self._error(response, repository, config)
        algorithm, _, expected = config.partition(":")
        if hashlib.new(algorithm, response.content).hexdigest() != expected:
            raise TerminalError(f"{self.host} sent a config for {repository}@{config} with another digest.")
        return config_created(response.content)

    # - requests -

    async def _tag_digest(self, repository: str, tag: str) -> tuple[str, str]:
        """(digest, media type) of the manifest a tag points at, from a HEAD request."""
        head = await self._request("HEAD", self._manifest_url(repository, tag), "manifest", repository, accept=True)
        if head.status_code != 200:
            raise self._error(head, repository, tag)
        digest = head.headers.get("Docker-Content-Digest")
        media_type = _media_type(head)
        if digest is None:  # the header is only a SHOULD of the spec: hash the manifest ourselves
            body, media_type = await self._manifest(repository, tag)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return self._checked_digest(digest, f"{repository}:{tag}"), media_type

    async def _platform_digest(self, repository: str, tag: str, index_digest: str, platform: str) -> str:
        body, _ = await self._manifest(repository, index_digest)
        index = _json_object(body, f"the index of {repository}:{tag}", self.host)
        selected = select_platform(index, platform)
        if selected is None:
            available = ", ".join(_platforms(index)) or "no platforms"
            raise NotFound(f"{repository}:{tag} on {self.host} has no {platform} image (it has {available}).")
        return self._checked_digest(selected, f"{repository}:{tag} ({platform})")

    def _checked_digest(self, digest: str, where: str) -> str:
        if not _DIGEST.fullmatch(digest):
            raise TerminalError(f"{self.host} sent an invalid digest {digest[:80]!r} for {where}.")
        return digest

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use RegistryClient as `async with RegistryClient(...) as registry:`")
        return self._http

    def _manifest_url(self, repository: str, reference: str) -> httpx.URL:
        return self.base_url.join(f"/v2/{repository}/manifests/{reference}")

    async def _manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """GET a manifest by tag or digest; by digest, the bytes must hash to it."""
        response = await self._request(
            "GET", self._manifest_url(repository, reference), "manifest", repository, accept=True
        )
        if response.status_code != 200:
            raise self._error(response, repository, reference)
        body = response.content
        algorithm, _, expected = reference.partition(":")
        if _DIGEST.fullmatch(reference) and hashlib.new(algorithm, body).hexdigest() != expected:
            raise TerminalError(f"{self.host} sent a manifest for {repository}@{reference} with another digest.")
        return body, _media_type(response)

    async def _request(
        self, method: str, url: httpx.URL, kind: str, repository: str, *, accept: bool = False
    ) -> httpx.Response:
        """A request about `repository`, authenticated as the registry asks; re-authenticates once on a 401."""
        await self.ping()
        headers = {"Accept": MANIFEST_ACCEPT} if accept else {}
        scope = f"repository:{repository}:pull"
        reauthenticated = False
        while True:
            response = await self._send(method, url, kind, {**headers, **await self._authorization(scope, repository)})
            if response.status_code != 401 or reauthenticated:
                return response
            # A registry may ask for credentials per repository even when /v2/ was open, and a token may
            # be revoked before it expires: learn the new challenge, drop the token, try once more.
            challenge = _challenge_of(response)
            had_token = self._tokens.pop(scope, None) is not None
            if challenge is None or (challenge == self._challenge and not had_token):
                return response
            self._challenge = challenge
            reauthenticated = True

    async def _authorization(self, scope: str, repository: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._credentials_error(repository, 401)
            return {"Authorization": self.credentials.basic_authorization()}
        if challenge.scheme == "bearer":
            return {"Authorization": f"Bearer {await self._token(challenge, scope, repository)}"}
        raise TerminalError(
            f"{self.host} asks for {challenge.scheme!r} authentication; promoflow speaks Basic and Bearer only."
        )

    async def _token(self, challenge: Challenge, scope: str, repository: str) -> str:
        """A bearer token for `scope` from the registry's token service, reused until it expires."""
        async with self._auth_lock:  # concurrent requests of one scope share one token request
            cached = self._tokens.get(scope)
            if cached is not None and cached.expires_at > time.time():
                return cached.value
            realm = httpx.URL(challenge.realm)
            if realm.scheme not in ("http", "https") or not realm.host:
                raise TerminalError(f"{self.host} names an invalid token service {redact(challenge.realm)!r}.")
            params = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
            headers = {"Authorization": self.credentials.basic_authorization()} if self.credentials else {}
            response = await self._send("GET", realm.copy_merge_params(params), "token", headers)
            if response.status_code in (401, 403):
                raise self._credentials_error(repository, response.status_code)
            if response.status_code != 200:
                raise TerminalError(
                    redact(
                        f"The token service {realm.host}{realm.path} of {self.host} answered"
                        f" {response.status_code}{_error_suffix(response)}"
                    )
                )
            try:
                token = _parse_token(response.json(), received_at=time.time())
            except ValueError:
                token = None
            if token is None:
                raise TerminalError(f"The token service {realm.host}{realm.path} of {self.host} sent no token.")
            self._tokens[scope] = token
            return token.value

    async def _send(self, method: str, url: httpx.URL, kind: str, headers: Mapping[str, str]) -> httpx.Response:
        """One request within the budget, retried on 429, 5xx, timeouts and connection errors."""
        http = self._http_client()
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            async with self.budget.slot():
                self.stats[f"{method} {kind}"] += 1
                try:
                    response = await http.request(method, url, headers=headers)
                except httpx.TimeoutException:
                    problem = f"no answer within {self.timeout:g} s"
                except httpx.TransportError as exc:  # refused, reset, closed mid-answer
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 500 and response.status_code not in (408, 429):
                        return response
                    problem = f"HTTP {response.status_code}{_error_suffix(response)}"
                    if response.status_code in (429, 503):
                        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= self.retry.attempts:
                break
            delay = retry_after if retry_after is not None else self.retry.delay(attempt - 1)
            if waited + delay > self.retry.max_wait:
                problem += f"; waiting {delay:.3g} s more would exceed the retry budget of {self.retry.max_wait:g} s"
                break
            if retry_after is not None:
                self.budget.pause(delay)  # the registry asked everyone to slow down, not only this request
            waited += delay
            await asyncio.sleep(delay)
        raise TransientError(redact(f"{self.host}: {method} {url.path} failed after {attempt} attempt(s): {problem}."))

    # - answers -

    def _page_tags(self, response: httpx.Response, repository: str) -> list[str]:
        page = _json_object(response.content, f"the tag list of {repository}", self.host)
        tags = page.get("tags") or []  # null: every tag was deleted
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise TerminalError(f"{self.host} sent an invalid tag list for {repository}.")
        return tags

    def _error(self, response: httpx.Response, repository: str, reference: str | None = None) -> TerminalError:
        """What a non-2xx answer about a repository (and tag or digest) means, for a person."""
        status = response.status_code
        what = repository if reference is None else f"{repository}:{reference}"
        if status in (401, 403):
            return self._credentials_error(what, status)
        if status == 404:
            codes = {code for code, _ in _registry_errors(response)}
            if reference is None or "NAME_UNKNOWN" in codes:
                return NotFound(f"Repository {repository!r} does not exist on {self.host}.")
            if "MANIFEST_UNKNOWN" in codes:
                return NotFound(f"Tag {reference!r} does not exist in {repository} on {self.host}.")
            # HEAD answers have no body to tell a missing repository from a missing tag.
            return NotFound(f"{what} does not exist on {self.host} (no such tag, or no such repository).")
        return TerminalError(
            redact(
                f"{self.host} answered {status} to {response.request.method} {response.request.url.path}"
                f"{_error_suffix(response)}."
            )
        )

    def _credentials_error(self, what: str, status: int) -> TerminalError:
        if self.credentials is None:
            user_var, password_var = env_names(self.host)
            return TerminalError(
                f"{self.host} wants credentials to read {what}: set {user_var} and {password_var},"
                f" or log in with `docker login {self.host}`."
            )
        credentials = self.credentials
        if status == 403:
            message = (
                f"{self.host} does not let user {credentials.username!r} (from {credentials.source}) read {what}:"
                " grant it pull access, or use other credentials."
            )
        else:
            message = (
                f"{self.host} rejected the password of user {credentials.username!r} (from {credentials.source})"
                f" for {what}: check the username and password there."
            )
        return TerminalError(redact(message))


# --- helpers -------------------------------------------------------------------------------------


def _check_repository(repository: str) -> None:
    if not references.is_repository(repository):
        raise TerminalError(f"{repository!r} is not a valid repository name ({references.REPOSITORY_RULE}).")


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip()


def _json_object(body: bytes, what: str, host: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise TerminalError(f"{host} sent {what} that is not a JSON object.")
    return value


def _registry_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(code, message) pairs of a registry's `{"errors": [{"code", "message"}]}` body; [] if it has none."""
    try:
        errors = response.json().get("errors") if response.content else None
    except (ValueError, AttributeError):
        return []
    if not isinstance(errors, list):
        return []
    return [(str(error.get("code", "")), str(error.get("message", ""))) for error in errors if isinstance(error, dict)]


def _error_suffix(response: httpx.Response) -> str:
    """`: CODE: message; CODE: message` from the registry's error body, shortened, or ''."""
    text = "; ".join(": ".join(filter(None, pair)) for pair in _registry_errors(response))
    if len(text) > _ERROR_TEXT_LIMIT:
        text = text[:_ERROR_TEXT_LIMIT] + "..."
    return f": {text}" if text else ""
