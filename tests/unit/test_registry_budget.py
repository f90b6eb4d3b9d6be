"""A registry's 429 pauses the whole registry's request budget, not only the request that got it (catches issue
16, behaviour 2). The registry is an httpx MockTransport: the client, its retries and its budget are the real ones."""

from __future__ import annotations

import asyncio
import time

import httpx

from promoflow.sources.registry import Budget, RegistryClient, RetryPolicy


def test_a_429_holds_back_the_other_clients_of_the_budget_for_its_retry_after() -> None:
    arrived: list[tuple[float, str]] = []
    limited = asyncio.Event()

    def registry(request: httpx.Request) -> httpx.Response:
        arrived.append((time.monotonic(), request.url.path))
        if request.url.path == "/v2/a/tags/list" and not limited.is_set():
            limited.set()
            return httpx.Response(429, headers={"Retry-After": "1"})
        if request.url.path.endswith("/tags/list"):
            return httpx.Response(200, json={"name": "x", "tags": ["1.0.0"]})
        return httpx.Response(200, json={})

    async def main() -> list[str]:
        budget = Budget(rate_per_second=1000, max_concurrency=4)
        clients = [RegistryClient("https://registry.test", budget=budget, retry=RetryPolicy()) for _ in range(2)]
        for client in clients:
            client._http = httpx.AsyncClient(transport=httpx.MockTransport(registry), base_url="https://registry.test")
        first = asyncio.create_task(clients[0].list_tags("a"))
        await asyncio.wait_for(limited.wait(), 10)
        await asyncio.sleep(0.05)  # the 429 is answered and its Retry-After taken in
        tags = await asyncio.gather(first, clients[1].list_tags("b"))
        for client in clients:
            await client._http.aclose()  # type: ignore[union-attr]
        return [t for page in tags for t in page]

    assert asyncio.run(main()) == ["1.0.0", "1.0.0"]
    limited_at = next(at for at, path in arrived if path == "/v2/a/tags/list")
    other = [
        at - limited_at for at, path in arrived if path.startswith("/v2/b") or (path == "/v2/" and at > limited_at)
    ]
    assert other and min(other) >= 0.9, other  # everyone waited out the Retry-After, not only client a
