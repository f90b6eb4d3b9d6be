"""Metric checks, judged without a Prometheus: what one look means, what the looks so far add up to, what a
Prometheus answer says, and how the looks are shown."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from promoflow import metric_checks
from promoflow.config import MetricCheck
from promoflow.config import Prometheus as PrometheusServer
from promoflow.config_loader import load
from promoflow.errors import TerminalError, TransientError
from promoflow.metric_checks import fill, judge, markdown, outcome, sparkline, threshold
from promoflow.prometheus import MAX_ANSWER_BYTES, Prometheus, value_of
from promoflow.records import MetricSample

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
WHERE = "Prometheus at http://prom:9090"


def check(**fields: Any) -> MetricCheck:
    return MetricCheck(**{"name": "error-ratio", "query": "q", "max": 0.01, "interval_seconds": 10, **fields})


def looks(c: MetricCheck, *values: float | str | None, every: float = 10) -> list[MetricSample]:
    """One look per value, `every` seconds apart from T0; a string is a look Prometheus did not answer."""
    samples = []
    for i, value in enumerate(values):
        error = isinstance(value, str)
        samples.append(
            MetricSample(
                promotion_id=1,
                check_name=c.name,
                query=c.query,
                threshold=threshold(c),
                value=None if error else value,
                outcome="error" if error else outcome(c, value),  # type: ignore[arg-type]
                message=value if error else "",
                taken_at=T0 + timedelta(seconds=i * every),
            )
        )
    return samples


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- one look ---------------------------------------------------------------------------------------


def test_a_look_passes_within_its_bounds_and_has_no_data_without_a_value() -> None:
    assert [outcome(check(), v) for v in (0.0, 0.01, 0.0101, None, float("nan"), float("inf"))] == [
        "pass",
        "pass",
        "fail",
        "no_data",
        "no_data",
        "fail",
    ]
    band = check(max=5, min=1)
    assert [outcome(band, v) for v in (0.5, 1, 5, 5.5)] == ["fail", "pass", "pass", "fail"]
    assert (threshold(check()), threshold(check(max=None, min=20)), threshold(band)) == (
        "max 0.01",
        "min 20",
        "min 1, max 5",
    )


def test_only_promoflows_placeholders_are_filled_in() -> None:
    query = 'sum(rate(x{app="{app}",namespace="{namespace}",env="{environment}",v="{release}"}[2m])) or {x}'
    assert fill(query, app="web", namespace="shop", environment="prod", release="1.4.0") == (
        'sum(rate(x{app="web",namespace="shop",env="prod",v="1.4.0"}[2m])) or {x}'
    )


# -- what the looks add up to -----------------------------------------------------------------------


def test_a_check_passes_once_it_looked_for_its_whole_time_within_bounds() -> None:
    c = check(for_seconds=30)
    assert judge(c, [], at(0), 300) == metric_checks.Verdict("looking", 0, 0, next_look=at(0))
    assert judge(c, looks(c, 0.001, 0.002), at(12), 300) == metric_checks.Verdict("looking", 2, 0, next_look=at(20))
    assert judge(c, looks(c, 0.001, 0.002, 0.003, 0.004), at(31), 300).state == "passed"
    once = check()  # for_seconds 0: one look decides
    assert judge(once, looks(once, 0.0), at(0), 300).state == "passed"


def test_a_check_fails_as_soon_as_its_failing_looks_exceed_the_limit() -> None:
    c = check(for_seconds=300, failure_limit=1)
    assert judge(c, looks(c, 0.001, 0.5), at(10), 300).state == "looking"  # one failing look is tolerated
    failed = judge(c, looks(c, 0.001, 0.5, 0.002, 0.25), at(30), 300)
    assert (failed.state, failed.looks, failed.failing) == ("failed", 4, 2)
    assert failed.reason == ("2 of 4 looks failed (max 0.01, no_data: fail, failure_limit 1): 0.001, 0.5, 0.002, 0.25")


def test_no_data_fails_passes_or_waits_as_configured() -> None:
    fail, passes, wait = check(no_data="fail"), check(no_data="pass"), check(no_data="wait", for_seconds=20)
    assert judge(fail, looks(fail, None), at(0), 300).state == "failed"
    assert "no data" in judge(fail, looks(fail, None), at(0), 300).reason
    assert judge(passes, looks(passes, None), at(0), 300).state == "passed"
    # wait: looks without data do not count, and the time starts at the first look with data
    assert judge(wait, looks(wait, None, None), at(10), 300).state == "looking"
    assert judge(wait, looks(wait, None, None, 0.001, None), at(30), 300).state == "looking"
    came = judge(wait, looks(wait, None, None, 0.001, None, 0.002), at(40), 300)  # 20 s after the first data
    assert (came.state, came.looks) == ("passed", 2)
    never = judge(wait, looks(wait, None, None, None), at(20), 300)
    assert never.state == "failed" and never.reason == "no data in 3 looks over 20 s (no_data: wait)"
    # a value outside the bounds still fails a waiting check
    assert judge(wait, looks(wait, None, 0.5), at(10), 300).state == "failed"


def test_an_unanswered_look_does_not_count_and_a_silence_longer_than_the_timeout_ends_the_check() -> None:
    c = check(for_seconds=30)
    down = looks(c, 0.001, "refused", "refused")
    assert judge(c, down, at(20), 30) == metric_checks.Verdict("looking", 1, 0, next_look=at(30))
    gone = judge(c, down, at(40), 30)
    assert gone.state == "unreachable" and gone.reason == "no answer since 09:00:10 UTC: refused"
    back = looks(c, 0.001, "refused", 0.002, "refused")  # answered again meanwhile: the silence starts anew
    assert judge(c, back, at(40), 30).state == "looking"
    # the time was over while Prometheus was silent: the first answered look after it decides
    assert judge(c, looks(c, 0.001, "refused", "refused", "refused", 0.002), at(40), 300).state == "passed"


# -- a Prometheus answer ------------------------------------------------------------------------------


def answer(kind: str, result: object) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode()


def test_an_answer_is_one_number_or_no_data() -> None:
    one = answer("vector", [{"metric": {}, "value": [1796400000.1, "0.0125"]}])
    assert value_of(200, one, WHERE) == 0.0125
    assert value_of(200, answer("vector", []), WHERE) is None
    assert value_of(200, answer("scalar", [1796400000.1, "NaN"]), WHERE) is None
    assert value_of(200, answer("scalar", [1796400000.1, "+Inf"]), WHERE) == float("inf")


@pytest.mark.parametrize(
    ("status", "body", "error", "said"),
    [
        (503, b"busy", TransientError, "Prometheus at http://prom:9090 answered 503."),
        (429, b"", TransientError, "answered 429"),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"1:14: parse error: unclosed left parenthesis"}',
            TerminalError,
            "refused the query (400): 1:14: parse error: unclosed left parenthesis.",
        ),
        (401, b"", TerminalError, "refused promoflow's credentials (401): check the secrets its `headers` name."),
        (404, b"not found", TerminalError, "has no query API (404)"),
        (200, b"<html>", TerminalError, "not the Prometheus API's JSON"),
        (
            200,
            answer(
                "vector", [{"metric": {"pod": "a"}, "value": [1, "1"]}, {"metric": {"pod": "b"}, "value": [1, "2"]}]
            ),
            TerminalError,
            "returned 2 series for the query: aggregate them into one number",
        ),
        (200, answer("matrix", []), TerminalError, "returned a range vector"),
        (200, answer("string", [1, "x"]), TerminalError, "returned a string where a check needs a number"),
        (200, answer("scalar", [1, "many"]), TerminalError, "answered a sample that is not a number"),
    ],
)
def test_an_answer_that_is_not_a_number_says_why_in_one_sentence(
    status: int, body: bytes, error: type[Exception], said: str
) -> None:
    with pytest.raises(error) as raised:
        value_of(status, body, WHERE)
    assert said in str(raised.value) and "\n" not in str(raised.value)


# -- shown to people -------------------------------------------------------------------------------


def test_the_looks_are_drawn_as_a_sparkline_in_a_markdown_table() -> None:
    assert sparkline([0.0, 0.5, 1.0, None, float("inf")]) == "▁▅█·█"
    assert sparkline([2.0, 2.0]) == "▅▅"
    c = check(query='sum(rate(x{code=~"5.."}[1m]))', for_seconds=40)
    rows = looks(c, 0.001, None, "refused", 0.02)
    assert markdown(rows) == [
        "| metric check | threshold | looks | outside it | no data | no answer | values | last |",
        "|---|---|---|---|---|---|---|---|",
        "| error-ratio | max 0.01 | 4 | 1 | 1 | 1 | ▁·█ | 0.02 |",
        "",
        '- error-ratio: `sum(rate(x{code=~"5.."}[1m]))`',
    ]
    many = metric_checks.values_text([float(i) for i in range(20)])
    assert many.startswith("…, 8, 9") and many.endswith("19")


def test_the_readmes_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Metric checks") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml"))]
    environments, apps = example.split("apps:\n")
    image = "    images: [{name: ghcr.io/acme/web, source: {oci_layout: ./oci}}]\n"
    apps = apps.replace("    path: apps/web\n", f"    path: apps/web\n{image}")
    config = f"version: 1\nrepository: {{url: ./repo.git}}\n{environments}apps:\n{apps}"
    (tmp_path / "promotions.yaml").write_text(config)
    [check] = load(tmp_path / "promotions.yaml").app("web").metric_checks
    assert (check.max, check.for_seconds, check.failure_limit, check.no_data) == (0.01, 300, 1, "fail")


# -- the client, against a local HTTP server standing in for Prometheus ------------------------------


class Answers(http.server.BaseHTTPRequestHandler):
    status, body, delay = 200, b"", 0.0
    seen: list[tuple[str, str | None, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        Answers.seen.append((self.path, self.headers.get("Authorization"), self.rfile.read(length).decode()))
        time.sleep(Answers.delay)
        try:
            self.send_response(Answers.status)
            self.send_header("Content-Length", str(len(Answers.body)))
            self.end_headers()
            self.wfile.write(Answers.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, oversized answer)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Answers.status, Answers.body, Answers.delay, Answers.seen = 200, answer("vector", []), 0.0, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def client(url: str, **fields: Any) -> Prometheus:
    return Prometheus(PrometheusServer(url=url, **fields))


def test_a_query_is_posted_with_its_headers_and_a_secret_never_shows(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_AUTH", "Bearer pr0m-s3cret-value")
    Answers.body = answer("scalar", [1796400000, "0.5"])
    prometheus = client(f"{server}/prefix/", headers={"Authorization": "env:PROM_AUTH"})
    assert prometheus.query('sum(x{a="b"})') == 0.5
    [(path, auth, form)] = Answers.seen
    assert (path, auth, urllib.parse.parse_qs(form)) == (
        "/prefix/api/v1/query",
        "Bearer pr0m-s3cret-value",
        {"query": ['sum(x{a="b"})']},
    )
    # a proxy that echoes what it got: the secret is masked in what promoflow says
    Answers.status, Answers.body = 400, b'{"status":"error","error":"bad header Bearer pr0m-s3cret-value"}'
    with pytest.raises(TerminalError) as refused:
        prometheus.query("x")
    assert "pr0m-s3cret-value" not in str(refused.value) and "bad header" in str(refused.value)


def test_a_missing_header_secret_says_which(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROM_NOT_SET", raising=False)
    with pytest.raises(TerminalError, match="The Prometheus header Authorization is missing: set the environment"):
        client(server, headers={"Authorization": "env:PROM_NOT_SET"}).query("x")


def test_a_silent_or_unreachable_prometheus_is_transient(server: str) -> None:
    Answers.delay = 2.0
    with pytest.raises(TransientError, match=r"did not answer within 0.5 s \(query_timeout_seconds\)\.$"):
        client(server, query_timeout_seconds=0.5).query("x")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TransientError, match=r"cannot be reached \(ConnectError\)\.$") as unreachable:
        client(f"http://user:pw-in-url@127.0.0.1:{port}").query("x")
    assert "pw-in-url" not in str(unreachable.value)


def test_an_answer_too_large_for_one_number_is_refused(server: str) -> None:
    Answers.body = b" " * (MAX_ANSWER_BYTES + 1)
    with pytest.raises(TerminalError, match="answered more than 1024 KiB to one query"):
        client(server).query("x")
