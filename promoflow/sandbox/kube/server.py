"""The stand-in served: an aiohttp server on 127.0.0.1 in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from types import TracebackType

import yaml
from aiohttp import web

from promoflow.sandbox.kube.http import Api
from promoflow.sandbox.kube.resources import GIT_VERSION
from promoflow.sandbox.kube.store import Cluster


class KubeStandIn:
    """The stand-in served on 127.0.0.1 from a background thread with its own event loop.

    `cluster` holds the objects and the Python controls: `cluster.rollouts.behave(...)`,
    `cluster.argocd.report(...)`, `cluster.flux.report(...)`, `cluster.faults.fail(...)`.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.cluster = Cluster()
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the Kubernetes stand-in is not running: call start() first")
        return f"http://{self._host}:{self._port}"

    def start(self) -> KubeStandIn:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup(loop))
            except BaseException as error:  # reported to start()'s caller
                failures.append(error)
            started.set()
            if not failures:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="kube-stand-in", daemon=True)
        self._thread.start()
        started.wait()
        if failures:
            self._thread.join()
            self._thread = self._loop = None
            raise failures[0]
        return self

    async def _startup(self, loop: asyncio.AbstractEventLoop) -> None:
        api = Api(self.cluster)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", api.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._port = int(runner.addresses[0][1])
        api.address = f"{self._host}:{self._port}"
        self.cluster.start(loop)
        self._runner = runner

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        self.cluster.end_watches()

        async def shutdown() -> None:
            self.cluster.stop()
            if runner is not None:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path | str, context: str = "sandbox") -> Path:
        """A kubeconfig whose current context (namespace "default") points at this stand-in."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "promoflow-sandbox"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target


def serve(port: int, kubeconfig: Path | str) -> None:
    """Serve the stand-in on 127.0.0.1:`port` (0: any free port) until SIGINT or SIGTERM."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with KubeStandIn(port=port) as kube:
            written = kube.write_kubeconfig(kubeconfig)
            print(f"Kubernetes API stand-in (simulated, {GIT_VERSION}) listening on {kube.url}", flush=True)
            print(f"kubeconfig: {written}  (export KUBECONFIG={written})", flush=True)
            while not stopping.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
