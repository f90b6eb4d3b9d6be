"""promoflow.sources.registry against real registries: Debian's docker-registry (anonymous, Basic auth,
token auth with a token service of the tests' own), and a front of our own for pagination and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from promoflow.errors import NotFound, TerminalError, TransientError
from promoflow.sources.registry import (
    Budget,
    Challenge,
    Credentials,
    DigestCache,
    DigestKey,
    RegistryClient,
    RetryPolicy,
    credentials_from_docker_config,
    credentials_from_env,
    env_names,
    find_credentials,
    parse_challenge,
    retry_after_seconds,
)
from tests.registry_fixtures import (  # noqa: F401  (the fixtures this module uses)
    BASIC_PASSWORD,
    BASIC_USER,
    TOKEN_PASSWORD,
    TOKEN_USER,
    WEB_TAGS,
    Fault,
    Pushed,
    RegistryFront,
    TokenService,
    basic_registry_fixture,
    front_fixture,
    push_image,
    pushed_fixture,
    registry_fixture,
    registry_storage_fixture,
    token_registry_fixture,
    token_service_fixture,
    token_service_session_fixture,
)

T = TypeVar("T")
# Retries fast enough for tests, with the same shape as in production.
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, max_wait=5)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def host_of(url: str) -> str:
    return url.removeprefix("http://")


# --- anonymous registry ----------------------------------------------------------------------------


def test_listing_tags_takes_one_request_and_none_per_tag(registry: str, pushed: Pushed) -> None:
    async def main() -> tuple[list[str], Counter[str]]:
        async with RegistryClient(registry) as client:
            return await client.list_tags("team/web"), client.stats

    tags, stats = run(main())
    assert sorted(tags) == sorted(WEB_TAGS)
    assert stats == Counter({"GET ping": 1, "GET tags": 1})


def test_digest_is_the_sha256_of_the_manifest_pushed(registry: str, pushed: Pushed) -> None:
    async def main() -> tuple[dict[tuple[str, str], str], Counter[str]]:
        async with RegistryClient(registry, budget=Budget(rate_per_second=1000, max_concurrency=4)) as client:
            found = {key: await client.digest(*key) for key in pushed.images}
            return found, client.stats

    found, stats = run(main())
    # OCI manifests, an OCI index, a Docker manifest list and a Docker v2 manifest (which a registry
    # would convert to schema1, with another digest, without the right Accept)
    assert {key: image.digest for key, image in pushed.images.items()} == found
    assert {image.media_type for image in pushed.images.values()} == {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
    assert stats == Counter({"GET ping": 1, "HEAD manifest": len(pushed.images)})


def test_platform_picks_the_manifest_out_of_an_index(registry: str, pushed: Pushed) -> None:
    oci, docker = pushed.platforms["team/multi", "1.0"], pushed.platforms["team/multi", "2.0"]

    async def main() -> Counter[str]:
        async with RegistryClient(registry) as client:
            assert await client.digest("team/multi", "1.0", "linux/amd64") == oci["linux/amd64"]
            assert await client.digest("team/multi", "1.0", "linux/arm64/v8") == oci["linux/arm64/v8"]
            assert await client.digest("team/multi", "1.0", "linux/arm64") == oci["linux/arm64/v8"]
            assert await client.digest("team/multi", "2.0", "linux/arm/v7") == docker["linux/arm/v7"]
            # a single-platform manifest is its own answer
            assert await client.digest("team/web", "1.0.0", "linux/amd64") == pushed.digest("team/web", "1.0.0")
            with pytest.raises(
                NotFound, match=r"team/multi:1\.0 .* no linux/s390x image \(it has linux/amd64, linux/arm64/v8\)"
            ):
                await client.digest("team/multi", "1.0", "linux/s390x")
            with pytest.raises(TerminalError, match="os/architecture"):
                await client.digest("team/multi", "1.0", "linux")
            return client.stats

    stats = run(main())
    assert stats["GET manifest"] == 5  # one per index looked into, fetched by digest


def test_digests_are_cached_per_session_and_by_a_cache_the_caller_keeps(registry: str, pushed: Pushed) -> None:
    async def first() -> tuple[str, DigestCache, Counter[str]]:
        async with RegistryClient(registry) as client:
            digest = await client.digest("team/mutable", "latest")
            assert await client.digest("team/mutable", "latest") == digest
            return digest, client.digest_cache, client.stats

    old, cache, stats = run(first())
    assert old == pushed.digest("team/mutable", "latest")
    assert stats["HEAD manifest"] == 1
    kept = DigestCache.loads(cache.dumps())
    assert kept == {DigestKey("team/mutable", "latest", None): old}

    with httpx.Client(base_url=registry) as http:  # someone moves the tag
        moved = push_image(http, "team/mutable", "latest", "mutable 2")
    pushed.images["team/mutable", "latest"] = moved  # keep the session's record true for later tests
    new = moved.digest
    assert new != old

    async def again(cache: DigestCache | None) -> tuple[str, Counter[str]]:
        async with RegistryClient(registry, digest_cache=cache) as client:
            return await client.digest("team/mutable", "latest"), client.stats

    # a kept cache answers without a single request: right for immutable tags only, as this shows
    assert run(again(kept)) == (old, Counter())
    assert run(again(None))[0] == new


def test_missing_repositories_and_tags_are_not_found(registry: str, pushed: Pushed) -> None:
    async def main() -> Counter[str]:
        async with RegistryClient(registry) as client:
            with pytest.raises(NotFound, match=r"Repository 'team/nope' does not exist on 127\.0\.0\.1:\d+"):
                await client.list_tags("team/nope")
            with pytest.raises(NotFound, match=r"team/web:9\.9\.9 does not exist"):
                await client.digest("team/web", "9.9.9")
            with pytest.raises(NotFound, match=r"team/nope:1\.0 does not exist"):
                await client.digest("team/nope", "1.0")
            before = client.stats.copy()
            with pytest.raises(TerminalError, match="not a valid repository name"):
                await client.list_tags("Team/Web")
            with pytest.raises(TerminalError, match="not a valid tag"):
                await client.digest("team/web", "-bad")
            assert client.stats == before  # refused before asking
            return client.stats

    run(main())


# --- Basic auth (htpasswd) ---------------------------------------------------------------------------


def test_basic_auth_with_credentials_from_the_caller_env_and_docker_config(
    basic_registry: str, pushed: Pushed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = host_of(basic_registry)

    async def tags(credentials: Credentials | None) -> list[str]:
        async with RegistryClient(basic_registry, credentials) as client:
            assert await client.digest("team/web", "1.0.1") == pushed.digest("team/web", "1.0.1")
            return await client.list_tags("team/web")

    assert sorted(run(tags(Credentials(BASIC_USER, BASIC_PASSWORD)))) == sorted(WEB_TAGS)

    user_var, password_var = env_names(host)
    monkeypatch.setenv(user_var, BASIC_USER)
    monkeypatch.setenv(password_var, BASIC_PASSWORD)
    from_env = find_credentials(host)
    assert from_env is not None and from_env.source == f"environment variables {user_var}/{password_var}"
    assert sorted(run(tags(from_env))) == sorted(WEB_TAGS)
    monkeypatch.delenv(user_var)
    monkeypatch.delenv(password_var)

    auth = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {f"http://{host}": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    from_config = find_credentials(host)
    assert from_config is not None and str(tmp_path / "config.json") in from_config.source
    assert sorted(run(tags(from_config))) == sorted(WEB_TAGS)


def test_basic_auth_refusals_say_which_credential_to_fix_without_the_secret(basic_registry: str) -> None:
    host = host_of(basic_registry)
    user_var, password_var = env_names(host)

    async def refused(credentials: Credentials | None) -> tuple[str, Counter[str]]:
        async with RegistryClient(basic_registry, credentials, retry=FAST) as client:
            with pytest.raises(TerminalError) as caught:
                await client.list_tags("team/web")
            return str(caught.value), client.stats

    message, stats = run(refused(None))
    assert f"{host} wants credentials to read team/web: set {user_var} and {password_var}" in message
    assert stats == Counter({"GET ping": 1})  # no request sent that could only fail

    wrong = Credentials(BASIC_USER, "wrong-Pa55-0d2b19", source="environment variables X/Y")
    message, stats = run(refused(wrong))
    assert f"rejected the password of user '{BASIC_USER}' (from environment variables X/Y)" in message
    assert "wrong-Pa55" not in message
    assert stats == Counter({"GET ping": 1, "GET tags": 1})  # a 401 is not retried


# --- Bearer tokens (the real registry's token auth, tokens from our token service) -------------------


def test_bearer_tokens_are_fetched_once_per_repository_scope(
    token_registry: str, token_service: TokenService, pushed: Pushed
) -> None:
    credentials = Credentials(TOKEN_USER, TOKEN_PASSWORD)

    async def main() -> Counter[str]:
        async with RegistryClient(token_registry, credentials) as client:
            assert sorted(await client.list_tags("team/web")) == sorted(WEB_TAGS)
            wanted = {tag: pushed.digest("team/web", tag) for tag in WEB_TAGS[:5]}
            assert await client.digests("team/web", wanted) == wanted  # concurrent: still one token
            platforms = pushed.platforms["team/multi", "1.0"]
            assert await client.digest("team/multi", "1.0", "linux/amd64") == platforms["linux/amd64"]
            return client.stats

    stats = run(main())
    assert token_service.requests == [
        (TOKEN_USER, "repository:team/web:pull"),
        (TOKEN_USER, "repository:team/multi:pull"),
    ]
    assert stats["GET token"] == 2


def test_bearer_token_renewed_when_expired_and_access_token_accepted(
    token_registry: str, token_service: TokenService
) -> None:
    credentials = Credentials(TOKEN_USER, TOKEN_PASSWORD)

    async def list_twice() -> None:
        async with RegistryClient(token_registry, credentials) as client:
            await client.list_tags("team/web")
            await client.list_tags("team/web")

    token_service.token_field = "access_token"
    token_service.issued_ago = 298  # of 300 s: stale on arrival, so each request gets a new one
    run(list_twice())
    assert len(token_service.requests) == 2

    token_service.reset()
    run(list_twice())
    assert len(token_service.requests) == 1


def test_bearer_refusals_name_the_credential(token_registry: str, token_service: TokenService) -> None:
    host = host_of(token_registry)

    async def refused(credentials: Credentials | None) -> str:
        async with RegistryClient(token_registry, credentials, retry=FAST) as client:
            with pytest.raises(TerminalError) as caught:
                await client.list_tags("team/web")
            return str(caught.value)

    user_var, password_var = env_names(host)
    assert f"set {user_var} and {password_var}" in run(refused(None))
    message = run(refused(Credentials(TOKEN_USER, "wrong-Pa55-77aa01", source="docker config /x (auths['h'])")))
    assert f"rejected the password of user '{TOKEN_USER}' (from docker config /x (auths['h']))" in message
    assert "wrong-Pa55" not in message


def test_a_challenge_from_a_repository_after_an_open_ping_is_followed(
    token_registry: str, token_service: TokenService, pushed: Pushed
) -> None:
    # Some registries answer /v2/ anonymously and ask for a token only per repository.
    proxy = RegistryFront(token_registry)
    proxy.inject(Fault("status", "/v2/", 200))
    try:

        async def main() -> Counter[str]:
            async with RegistryClient(proxy.url, Credentials(TOKEN_USER, TOKEN_PASSWORD)) as client:
                assert await client.digest("team/web", "1.0.0") == pushed.digest("team/web", "1.0.0")
                assert await client.digest("team/web", "1.0.1") == pushed.digest("team/web", "1.0.1")
                return client.stats

        stats = run(main())
    finally:
        proxy.close()
    assert stats == Counter({"GET ping": 1, "HEAD manifest": 3, "GET token": 1})
    assert token_service.requests == [(TOKEN_USER, "repository:team/web:pull")]


# --- pagination (a front that paginates as the spec says; 2.8.2 does not) ----------------------------


@pytest.mark.parametrize("absolute_links", [False, True], ids=["relative-link", "absolute-link"])
def test_tags_are_read_page_after_page(front: RegistryFront, pushed: Pushed, absolute_links: bool) -> None:
    front.page_size = 7
    front.absolute_links = absolute_links

    async def main() -> tuple[list[str], Counter[str]]:
        async with RegistryClient(front.url) as client:
            return await client.list_tags("team/web"), client.stats

    tags, stats = run(main())
    assert tags == sorted(WEB_TAGS)
    assert stats["GET tags"] == math.ceil(len(WEB_TAGS) / 7)
    pages = [path for method, path in front.requests if "/tags/list" in path]
    assert pages[0] == "/v2/team/web/tags/list?n=1000"
    assert pages[1] == f"/v2/team/web/tags/list?n=7&last={sorted(WEB_TAGS)[6]}"


# --- faults (a front that injects them in front of the real registry) -------------------------------


def test_429_retry_after_is_honoured(front: RegistryFront, pushed: Pushed) -> None:
    front.inject(Fault("status", "/tags/list", 429, {"Retry-After": "1"}))

    async def main() -> Counter[str]:
        async with RegistryClient(front.url, retry=FAST) as client:
            assert sorted(await client.list_tags("team/web")) == sorted(WEB_TAGS)
            return client.stats

    started = time.monotonic()
    stats = run(main())
    assert time.monotonic() - started >= 0.95
    assert stats["GET tags"] == 2


def test_a_retry_after_beyond_the_retry_budget_fails_at_once(front: RegistryFront, pushed: Pushed) -> None:
    front.inject(Fault("status", "/tags/list", 429, {"Retry-After": "120"}))

    async def main() -> None:
        async with RegistryClient(front.url, retry=FAST) as client:
            await client.list_tags("team/web")

    started = time.monotonic()
    with pytest.raises(TransientError, match=r"HTTP 429: TOOMANYREQUESTS: .*waiting 120 s more would exceed"):
        run(main())
    assert time.monotonic() - started < 2


def test_5xx_resets_and_timeouts_are_retried(front: RegistryFront, pushed: Pushed) -> None:
    front.inject(
        Fault("status", "/manifests/", 503),
        Fault("reset", "/manifests/"),
        Fault("slow", "/manifests/", delay=1.0),
    )

    async def main() -> Counter[str]:
        async with RegistryClient(front.url, timeout=0.3, retry=FAST) as client:
            assert await client.digest("team/web", "1.2.3") == pushed.digest("team/web", "1.2.3")
            return client.stats

    started = time.monotonic()
    stats = run(main())
    assert stats["HEAD manifest"] == 4
    assert time.monotonic() - started < 2


def test_retries_exhausted_are_transient_and_echo_the_registry_error_redacted(
    front: RegistryFront, pushed: Pushed
) -> None:
    message = "backend down (token=abc123secret)"
    front.inject(*[Fault("status", "/tags/list", 500, message=message) for _ in range(FAST.attempts)])

    async def main() -> Counter[str]:
        async with RegistryClient(front.url, retry=FAST) as client:
            with pytest.raises(TransientError) as caught:
                await client.list_tags("team/web")
            text = str(caught.value)
            assert "GET /v2/team/web/tags/list failed after 4 attempt(s): HTTP 500: UNAVAILABLE: backend down" in text
            assert "abc123secret" not in text and "token=***" in text
            return client.stats

    assert run(main())["GET tags"] == FAST.attempts


def test_the_budget_bounds_concurrency_and_rate(front: RegistryFront, pushed: Pushed) -> None:
    async def digests(budget: Budget, tags: list[str]) -> dict[str, str]:
        async with RegistryClient(front.url, budget=budget) as client:
            return await client.digests("team/web", tags)

    tags = WEB_TAGS[:12]
    front.inject(*[Fault("slow", "/manifests/", delay=0.05) for _ in tags])  # so that requests overlap
    expected = {tag: pushed.digest("team/web", tag) for tag in tags}
    assert run(digests(Budget(rate_per_second=1000, max_concurrency=3), tags)) == expected
    assert front.max_in_flight == 3

    # 1 ping + 31 HEADs at 20 per second, bursts of 20: the last 12 wait >= 0.6 s
    started = time.monotonic()
    run(digests(Budget(rate_per_second=20, max_concurrency=8), WEB_TAGS))
    assert time.monotonic() - started >= 0.55


def test_a_pause_of_the_budget_holds_every_request_back() -> None:
    budget = Budget(rate_per_second=1000, max_concurrency=4)

    async def main() -> float:
        started = time.monotonic()
        budget.pause(0.3)  # what a 429 with Retry-After does

        async def one() -> float:
            async with budget.slot():
                return time.monotonic() - started

        return min(await asyncio.gather(*(one() for _ in range(3))))

    assert run(main()) >= 0.29


# --- pure parts ----------------------------------------------------------------------------------------


def test_challenges_are_parsed() -> None:
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge("basic", realm="Registry Realm")
    bearer = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"'
    assert parse_challenge(bearer) == Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")
    assert parse_challenge("") is None


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_credentials_never_show_the_password() -> None:
    credentials = Credentials("alice", "hunter2-very-secret")
    assert "hunter2" not in repr(credentials) and "hunter2" not in str(credentials)
    assert "password='***'" in repr(credentials)


def test_credentials_from_env_need_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_names("127.0.0.1:5000") == (
        "PROMOFLOW_REGISTRY_127_0_0_1_5000_USERNAME",
        "PROMOFLOW_REGISTRY_127_0_0_1_5000_PASSWORD",
    )
    assert credentials_from_env("ghcr.io") is None
    monkeypatch.setenv("PROMOFLOW_REGISTRY_GHCR_IO_USERNAME", "alice")
    with pytest.raises(
        TerminalError, match="PROMOFLOW_REGISTRY_GHCR_IO_USERNAME is set but PROMOFLOW_REGISTRY_GHCR_IO_PASSWORD is not"
    ):
        credentials_from_env("ghcr.io")
    monkeypatch.setenv("PROMOFLOW_REGISTRY_GHCR_IO_PASSWORD", "pw")
    assert credentials_from_env("ghcr.io") == Credentials(
        "alice", "pw", "environment variables PROMOFLOW_REGISTRY_GHCR_IO_USERNAME/PROMOFLOW_REGISTRY_GHCR_IO_PASSWORD"
    )


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"bob:pa:ss").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "ghcr.io": {"username": "carol", "password": "tok"},
                    "quay.io": {},  # kept by a credential helper
                    "bad.example": {"auth": "not base64!"},
                },
            }
        )
    )
    hub = credentials_from_docker_config("registry-1.docker.io", config)
    assert hub is not None and (hub.username, hub.password) == ("bob", "pa:ss")
    ghcr = credentials_from_docker_config("ghcr.io", config)
    assert ghcr is not None and (ghcr.username, ghcr.password) == ("carol", "tok")
    assert credentials_from_docker_config("quay.io", config) is None
    assert credentials_from_docker_config("elsewhere.example", config) is None
    assert credentials_from_docker_config("ghcr.io", tmp_path / "missing.json") is None
    with pytest.raises(TerminalError, match=r"auths\['bad.example'\]\): `auth` is not base64"):
        credentials_from_docker_config("bad.example", config)
    config.write_text("{not json")
    with pytest.raises(TerminalError, match=f"Cannot read the docker config {config}"):
        credentials_from_docker_config("ghcr.io", config)


# --- docker credential helpers -----------------------------------------------------------------------

HELPER = """#!{python}
import json, pathlib, sys
host = sys.stdin.read()
pathlib.Path({asked!r}).open("a").write(sys.argv[1] + " " + host + "\\n")
known = json.loads({known!r})
if sys.argv[1] != "get":
    sys.exit(3)
if host not in known:
    print("credentials not found in native keychain")
    sys.exit(1)
if known[host] == "broken":
    print("the keychain is locked (password=" + {password!r} + ")", file=sys.stderr)
    sys.exit(2)
print(json.dumps({{"ServerURL": host, "Username": known[host][0], "Secret": known[host][1]}}))
"""


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH and a docker config dir; `install_helper` puts helpers in it."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def install_helper(where: Path, name: str, known: dict[str, Any]) -> Path:
    """`docker-credential-<name>`: answers `get` for the hosts in `known`; logs what it was asked."""
    asked = where / f"{name}.asked"
    script = where / "bin" / f"docker-credential-{name}"
    script.write_text(
        HELPER.format(python=sys.executable, asked=str(asked), known=json.dumps(known), password=BASIC_PASSWORD)
    )
    script.chmod(0o755)
    return asked


def test_credential_helpers_named_by_the_docker_config_log_in(
    basic_registry: str, pushed: Pushed, helper_path: Path
) -> None:
    host = host_of(basic_registry)
    asked = install_helper(helper_path, "pftest", {host: [BASIC_USER, BASIC_PASSWORD]})
    wrong = base64.b64encode(f"{BASIC_USER}:wrong-Pa55-0d2b19".encode()).decode()
    config = helper_path / "config.json"

    async def tags(credentials: Credentials | None) -> list[str]:
        async with RegistryClient(basic_registry, credentials, retry=FAST) as client:
            return await client.list_tags("team/web")

    # credHelpers wins over a stale `auths` entry, as in docker
    config.write_text(json.dumps({"credHelpers": {host: "pftest"}, "auths": {host: {"auth": wrong}}}))
    found = find_credentials(host)
    assert found is not None and (found.username, found.password) == (BASIC_USER, BASIC_PASSWORD)
    assert found.source == f"docker-credential-pftest (docker config {config} (credHelpers[{host!r}]))"
    assert sorted(run(tags(found))) == sorted(WEB_TAGS)
    assert asked.read_text().splitlines() == [f"get {host}"]  # the registry host on stdin

    # credsStore: the helper for every registry without a credHelpers entry
    config.write_text(json.dumps({"credsStore": "pftest", "auths": {host: {}}}))
    found = find_credentials(host)
    assert found is not None and found.password == BASIC_PASSWORD and "(credsStore)" in found.source
    assert find_credentials("elsewhere.example") is None  # "credentials not found": anonymous


def test_credential_helper_failures_say_what_to_fix_without_the_secret(helper_path: Path) -> None:
    config = helper_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"ghcr.io": "absent"}}))
    with pytest.raises(TerminalError) as missing:
        find_credentials("ghcr.io")
    assert str(missing.value) == (
        f"docker config {config} (credHelpers['ghcr.io']) says the credentials for ghcr.io come from"
        " `docker-credential-absent`, which is not on PATH: install it, or change that entry."
    )

    install_helper(helper_path, "odd", {"ghcr.io": "broken", "quay.io": ["<token>", "refresh-tok"]})
    config.write_text(json.dumps({"credsStore": "odd"}))
    with pytest.raises(TerminalError) as broken:
        find_credentials("ghcr.io")
    assert "`docker-credential-odd get` failed for ghcr.io (exit 2): the keychain is locked" in str(broken.value)
    assert BASIC_PASSWORD not in str(broken.value)
    with pytest.raises(TerminalError, match=r"holds an identity token for quay\.io, which promoflow cannot use yet"):
        find_credentials("quay.io")

    asked = install_helper(helper_path, "hub", {"https://index.docker.io/v1/": ["bob", "hub-tok"]})
    config.write_text(json.dumps({"credsStore": "hub"}))
    hub = find_credentials("registry-1.docker.io")
    assert hub is not None and hub.username == "bob"
    assert asked.read_text().splitlines() == ["get https://index.docker.io/v1/"]  # where `docker login` keeps it


def test_registry_urls_carry_no_credentials() -> None:
    with pytest.raises(TerminalError, match=r"https://HOST\[:PORT\]") as caught:
        RegistryClient("https://alice:hunter2@ghcr.io")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(TerminalError):
        RegistryClient("ghcr.io")
