"""A real Prometheus for the tests (Debian's `prometheus`), scraping an exporter the tests control.

`prometheus` is one server per test process on a free 127.0.0.1 port, with its own data directory and config,
scraping `Exporter` every second. Tests share it and isolate themselves by a `test` label of their own:

    def test_x(prometheus: RealPrometheus) -> None:
        web = prometheus.exporter.app("my-test")        # series labelled test="my-test"
        web.errors_per_scrape = 5                       # of 10 requests per scrape
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from promoflow.server import free_port

BINARY = "prometheus"


@dataclass
class App:
    """The series one test's app exposes: request counters by status code, and a readiness gauge once shown."""

    labels: str  # `test="x",app="web",env="dev",version="1.2.0"`
    requests_per_scrape: int = 10
    errors_per_scrape: int = 0
    ready: bool = False  # whether `app_ready` is exposed at all (a metric that appears after the change)
    ok: int = 0
    errors: int = 0

    def scrape(self) -> str:
        """The app's series in text exposition format; each scrape is one more round of requests."""
        self.errors += self.errors_per_scrape
        self.ok += self.requests_per_scrape - self.errors_per_scrape
        lines = [
            f'http_requests_total{{{self.labels},code="200"}} {self.ok}',
            f'http_requests_total{{{self.labels},code="500"}} {self.errors}',
        ]
        if self.ready:
            lines.append(f"app_ready{{{self.labels}}} 1")
        return "\n".join(lines)


@dataclass
class Exporter:
    apps: dict[str, App] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, test: str, **labels: str) -> App:
        with self.lock:
            shown = ",".join(f'{k}="{v}"' for k, v in {"test": test, **labels}.items())
            return self.apps.setdefault(test, App(shown))

    def text(self) -> bytes:
        with self.lock:
            series = "\n".join(app.scrape() for app in self.apps.values())
        return ("# TYPE http_requests_total counter\n# TYPE app_ready gauge\n" + series + "\nexporter_up 1\n").encode()


def _handler(exporter: Exporter) -> type[http.server.BaseHTTPRequestHandler]:
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Metrics


@dataclass
class RealPrometheus:
    url: str
    exporter: Exporter

    def value(self, query: str) -> float | None:
        """The query's one value now, None for no data (as a test reads it, beside promoflow)."""
        answer = httpx.post(f"{self.url}/api/v1/query", data={"query": query}, timeout=10).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, query: str, what: str, timeout: float = 60) -> float:
        """Poll until the query has a value: a series just shown needs a scrape or two (and `rate` two samples)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(query)
            if value is not None:
                return value
            time.sleep(0.25)
        raise AssertionError(f"Prometheus had no value for {what} within {timeout:g} s: {query}")


@pytest.fixture(scope="session")
def prometheus() -> Iterator[RealPrometheus]:
    """Debian's Prometheus on 127.0.0.1 scraping the exporter every second, stopped by PID at the end."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(
            "prometheus is missing: install Debian's package (`apt-get install -y prometheus`; scripts/test does) "
            "and keep its service stopped; the metric check tests start their own.",
            pytrace=False,
        )
    exporter = Exporter()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(exporter))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="promoflow-prometheus-") as home:
        config = Path(home) / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - {{job_name: exporter, static_configs: [{{targets: ['127.0.0.1:{httpd.server_address[1]}']}}]}}\n"
        )
        port = free_port(0)
        log = (Path(home) / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={Path(home) / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running = RealPrometheus(f"http://127.0.0.1:{port}", exporter)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"prometheus exited {process.returncode}: {_tail(home)}")
                try:
                    if httpx.get(f"{running.url}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus was not ready within 60 s: {_tail(home)}")
                time.sleep(0.1)
            running.wait_for('exporter_up{job="exporter"}', "the exporter's first scrape")
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
            httpd.shutdown()


def _tail(home: str) -> str:
    return (Path(home) / "prometheus.log").read_text(errors="replace")[-2000:]
