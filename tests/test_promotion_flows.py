"""End to end on real parts: the Prefect server, git repositories, an OCI layout, the CLI as a user runs it."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Sandbox
from tests.helpers import REQUESTER, awaiting, history, start_cli, status_of, wait_for

pytestmark = pytest.mark.prefect


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def test_release_goes_dev_staging_prod_with_ui_and_cli_approvals_then_rolls_back(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    pipeline = start_cli(sandbox, "pipeline", "web")

    # staging: resumed through Prefect's API with the RunInput, as the UI's Resume form does
    staging = wait_for(lambda: awaiting(sandbox, "staging") or pipeline.poll(), what="staging to wait")
    assert isinstance(staging, dict), pipeline.communicate()
    from prefect.client.orchestration import PrefectClient

    async def resume() -> None:
        async with PrefectClient(os.environ["PREFECT_API_URL"]) as client:
            await client.resume_flow_run(
                staging["flow_run_id"],
                run_input={"decision": "approve", "approver": "uma", "comment": "looks good"},
            )

    asyncio.run(resume())

    # prod: through the CLI
    prod = wait_for(lambda: awaiting(sandbox, "prod"), what="prod to wait for approval")
    approved = sandbox.cli("approve", str(prod["id"]), "--as", "carl", "--comment", "ship it")
    assert approved.returncode == 0, approved.stderr
    assert f"Approved promotion {prod['id']} as carl" in approved.stdout

    _, errors = pipeline.communicate(timeout=120)
    assert pipeline.returncode == 0, errors

    entries = {(p["environment"], p["kind"]): p for p in history(sandbox, "web")}
    for env in ("dev", "staging", "prod"):
        promotion = entries[(env, "promotion")]
        assert promotion["state"] == "succeeded"
        assert promotion["release"]["label"] == "1.2.0"
        assert promotion["requested_by"] == "rita"
        steps = [s["name"] for s in promotion["steps"]]
        assert steps[:3] == ["preflight", "prepare", "open_request"]
        assert steps[-4:] == ["merge", "apply", "verify", "finalize"]
        assert all(s["outcome"] == "succeeded" and s["duration_seconds"] >= 0 for s in promotion["steps"])
        assert entries[(env, "baseline")]["release"]["label"] == "1.1.0"
    assert entries[("dev", "promotion")]["approvals"] == []
    (ui,) = entries[("staging", "promotion")]["approvals"]
    assert (ui["approver"], ui["source"], ui["counted"], ui["comment"]) == ("uma", "ui", True, "looks good")
    (cli,) = entries[("prod", "promotion")]["approvals"]
    assert (cli["approver"], cli["source"], cli["counted"], cli["comment"]) == (
        "carl",
        "cli",
        True,
        "ship it",
    )
    assert cli["created_at"]

    # git: one merge commit per environment naming the promotion; prod's manifest pins 1.2.0 by digest
    digest = json.loads((sandbox.layout / "index.json").read_text())["manifests"][-1]["digest"]
    for env in ("dev", "staging", "prod"):
        message = sandbox.git("log", "-1", "--format=%B", f"env/{env}")
        assert f"Merge promotion {entries[(env, 'promotion')]['id']}: Promote web 1.2.0 to {env}" in message
    kustomization = sandbox.git("show", "env/prod:apps/web/kustomization.yaml")
    assert 'newTag: "1.2.0"' in kustomization and f"digest: {digest}" in kustomization
    assert "# promoflow pins this image" in kustomization  # comments survive

    status = {(s["app"], s["environment"]): s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert status[("web", "prod")]["current_release"]["label"] == "1.2.0"
    assert status[("web", "prod")]["last_known_good"]["label"] == "1.2.0"
    assert status[("web", "prod")]["rollback_target"]["label"] == "1.1.0"

    # rollback from the CLI, to a named release
    rolled = sandbox.cli("rollback", "web", "--env", "prod", "--to", "1.1.0", "--reason", "pager", env=REQUESTER)
    assert rolled.returncode == 0, rolled.stderr
    status = {(s["app"], s["environment"]): s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    prod_state = status[("web", "prod")]
    assert prod_state["current_release"]["label"] == "1.1.0"
    assert prod_state["rejected_releases"] == [entries[("prod", "promotion")]["release"]["id"]]
    latest = history(sandbox, "web", "--env", "prod")
    assert latest[0]["kind"] == "rollback" and latest[0]["state"] == "succeeded"
    assert latest[0]["rollback_of"] == entries[("prod", "promotion")]["id"]
    assert next(p for p in latest if p["id"] == latest[0]["rollback_of"])["state"] == "rolled_back"
    assert 'newTag: "1.1.0"' in sandbox.git("show", "env/prod:apps/web/kustomization.yaml")

    # the rejected release is not promoted into prod again until someone clears it
    again = sandbox.cli("promote", "web", "--to", "prod", "--release", "1.2.0")
    assert again.returncode == 1
    assert "was rejected for prod" in again.stderr and "Traceback" not in again.stderr


def test_status_shows_what_waits_since_when_who_may_approve_and_what_decides_it(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    pipeline = start_cli(sandbox, "pipeline", "web")
    queued: subprocess.Popen[str] | None = None
    try:
        staging = wait_for(lambda: awaiting(sandbox, "staging") or pipeline.poll(), what="staging to wait")
        assert isinstance(staging, dict), pipeline.communicate()
        pid, ui = staging["id"], os.environ["PREFECT_API_URL"].removesuffix("/api")
        (wait,) = status_of(sandbox, "staging")["waiting"]
        assert wait["promotion"] == pid and wait["release"] == f"1.2.0 ({staging['release']['id'][:7]})"
        assert (wait["waiting_for"], wait["approvals"]) == ("approvals 0 of 1", {"counted": 0, "required": 1})
        assert wait["may_approve"] == "anyone but rita; from ui, cli" and wait["since"] >= staging["created_at"]
        assert wait["decide"] == [f"promoflow approve {pid}", f"Resume at {ui}/runs/flow-run/{staging['flow_run_id']}"]
        assert status_of(sandbox, "dev")["waiting"] == [] and status_of(sandbox, "prod")["waiting"] == []

        # another promotion into staging queues behind it
        queued = start_cli(sandbox, "promote", "web", "--to", "staging", "--release", "1.1.0")
        behind = wait_for(lambda: len(status_of(sandbox, "staging")["waiting"]) == 2, what="the second to queue")
        first, second = status_of(sandbox, "staging")["waiting"]
        assert behind and first["promotion"] == pid and second["waiting_for"] == f"promotion {pid} to finish"
        table = sandbox.cli("status", env={"COLUMNS": "80"}).stdout
        assert "waits for" in table and "approvals 0 of 1" in table, table
        assert f"Promotion {pid} (web into staging): promoflow approve {pid} or Resume at {ui}/runs/" in table
        assert sandbox.cli("reject", str(pid), "--as", "uma").returncode == 0
        pipeline.communicate(timeout=120)  # reading its output: a full pipe would block it
        assert pipeline.returncode == 1
        successor = wait_for(lambda: awaiting(sandbox, "staging"), what="the queued one to wait for approval")
        assert successor["id"] == second["promotion"]
        assert sandbox.cli("reject", str(successor["id"]), "--as", "uma").returncode == 0
        queued.communicate(timeout=120)
        assert queued.returncode == 1
        assert status_of(sandbox, "staging")["waiting"] == []
    finally:
        for process in (pipeline, queued):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()


def test_reject_ends_the_promotion_and_merges_nothing(sandbox: Sandbox) -> None:
    sandbox.edit_config("      # approvers: [alice, bob]", "      approvers: [vera, rita]")
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    before = sandbox.git("rev-parse", "env/staging")
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    waiting = wait_for(lambda: awaiting(sandbox, "staging"), what="approval wait")

    for who, why in [
        ("rita", "rita requested this promotion and cannot approve it"),
        ("mallory", "mallory is not an allowed approver (vera, rita)"),
    ]:
        refused = sandbox.cli("approve", str(waiting["id"]), "--as", who)
        assert refused.returncode == 1
        assert refused.stderr == f"error: {who} cannot decide promotion {waiting['id']}: {why}.\n"
    assert history(sandbox, "web", "--env", "staging")[0]["approvals"] == []  # refusals changed nothing

    rejected = sandbox.cli("reject", str(waiting["id"]), "--as", "vera", "--comment", "not today")
    assert rejected.returncode == 0, rejected.stderr
    running.communicate(timeout=60)
    assert running.returncode == 1
    (promotion,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    assert promotion["state"] == "rejected"
    assert promotion["approvals"][0]["decision"] == "reject"
    assert sandbox.git("rev-parse", "env/staging") == before


@pytest.mark.parametrize("failpoint", ["after-open-request", "after-merge"])
def test_crash_and_rerun_makes_one_branch_one_merge_and_consistent_records(sandbox: Sandbox, failpoint: str) -> None:
    sandbox.publish("1.2.0")
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**REQUESTER, "PROMOFLOW_FAILPOINTS": failpoint})
    assert crashed.returncode == -9, crashed.stderr  # killed by SIGKILL at the failpoint

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert rerun.returncode == 0, rerun.stderr

    (promotion,) = [p for p in history(sandbox, "web") if p["kind"] == "promotion"]
    assert promotion["state"] == "succeeded"
    branches = [b for b in sandbox.git("branch", "--list", "promoflow/*").split() if b != "*"]
    assert branches == [promotion["request_branch"]]
    merges = sandbox.git("log", "--merges", "--format=%H %s", "env/dev").splitlines()
    assert len(merges) == 1 and f"Merge promotion {promotion['id']}" in merges[0]
    assert merges[0].split()[0] == promotion["merge_commit"]

    def outcomes(name: str) -> list[str]:
        return [s["outcome"] for s in promotion["steps"] if s["name"] == name]

    # The re-run took what had succeeded from the records and did the step it was killed in again.
    assert outcomes("prepare") == ["succeeded"]
    crashed_in = {"after-open-request": "open_request", "after-merge": "merge"}[failpoint]
    assert outcomes(crashed_in) == ["interrupted", "succeeded"]
    assert outcomes("merge") == (["succeeded"] if crashed_in != "merge" else ["interrupted", "succeeded"])
    assert [s for s in promotion["steps"] if s["outcome"] == "running"] == []


def test_two_promotions_of_one_app_into_one_environment_are_serialised(sandbox: Sandbox) -> None:
    # Whichever claims dev first holds it 8 s (its soak), far longer than the other takes to reach its preflight
    # (both start together): they overlap, and the second must queue for the slot.
    sandbox.edit_config("    branch: env/dev\n", "    branch: env/dev\n    soak_seconds: 8\n")
    sandbox.publish("1.2.0")
    sandbox.publish("1.3.0")
    first = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.2.0")
    second = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.3.0")
    for process in (first, second):
        _, errors = process.communicate(timeout=180)
        assert process.returncode == 0, errors

    runs = sorted(
        (p for p in history(sandbox, "web") if p["kind"] == "promotion"),
        key=lambda p: next(s["started_at"] for s in p["steps"] if s["name"] == "prepare"),
    )
    assert [p["state"] for p in runs] == ["succeeded", "succeeded"]
    first_done = next(s["ended_at"] for s in runs[0]["steps"] if s["name"] == "finalize")
    second_prepared = next(s["started_at"] for s in runs[1]["steps"] if s["name"] == "prepare")
    assert first_done <= second_prepared, "the second promotion changed git while the first was running"
    assert len(sandbox.git("log", "--merges", "--format=%H", "env/dev").split()) == 2


class _Health(http.server.BaseHTTPRequestHandler):
    failures = 0  # how many of the next requests answer 503

    def do_GET(self) -> None:
        cls = type(self)
        healthy = cls.failures <= 0
        cls.failures -= 1
        self.send_response(200 if healthy else 503)
        self.end_headers()
        self.wfile.write(b"ok" if healthy else b"broken")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_endpoint(sandbox: Sandbox) -> Iterator[type[_Health]]:
    """The app gets an HTTP health check against a local server whose failures the test sets."""
    handler = type("Health", (_Health,), {"failures": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/healthz"
    sandbox.edit_config(
        "    # health_checks:",
        f"    health_checks:\n      - {{url: '{url}', contains: ok, attempts: 2, interval_seconds: 0.1}}\n"
        "    # health_checks:",
    )
    yield handler
    httpd.shutdown()


def test_failed_verification_rolls_back_by_itself_and_guards_the_release(
    sandbox: Sandbox, health_endpoint: type[_Health]
) -> None:
    sandbox.publish("1.2.0")
    health_endpoint.failures = 2  # both tries of the new release fail; the rollback's check passes
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1
    assert "web is unhealthy in dev" in failed.stderr and "answered 503, expected 200" in failed.stderr
    assert "Traceback" not in failed.stderr

    by_kind = {p["kind"]: p for p in history(sandbox, "web", "--env", "dev")}
    rollback, promotion, baseline = by_kind["rollback"], by_kind["promotion"], by_kind["baseline"]
    assert promotion["state"] == "rolled_back" and "unhealthy" in promotion["error"]
    verify = next(s for s in promotion["steps"] if s["name"] == "verify")
    assert verify["outcome"] == "failed" and verify["detail"]["results"][0]["last_status"] == 503
    assert rollback["rollback_of"] == promotion["id"] and rollback["state"] == "succeeded"
    assert rollback["release"]["label"] == baseline["release"]["label"] == "1.1.0"
    assert rollback["requested_by"] == "promoflow" and rollback["approvals"] == []
    assert 'newTag: "1.1.0"' in sandbox.git("show", "env/dev:apps/web/kustomization.yaml")

    status = {(s["app"], s["environment"]): s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert status[("web", "dev")]["current_release"]["label"] == "1.1.0"
    assert status[("web", "dev")]["rejected_releases"] == [promotion["release"]["id"]]
    again = sandbox.cli("pipeline", "web", "--release", "1.2.0")
    assert again.returncode == 1 and "was rejected for dev" in again.stderr

    cleared = sandbox.cli("release", "unreject", "web", "1.2.0", "--env", "dev")
    assert cleared.returncode == 0, cleared.stderr
    assert sandbox.cli("promote", "web", "--to", "dev", "--release", "1.2.0", env=REQUESTER).returncode == 0


def test_the_default_pick_skips_releases_rejected_where_they_would_go_and_says_which(
    sandbox: Sandbox, health_endpoint: type[_Health]
) -> None:
    sandbox.edit_config("    path: apps/web\n", "    path: apps/web\n    environments: [dev]\n")
    sandbox.publish("1.2.0")
    health_endpoint.failures = 2  # 1.2.0 fails verification in dev: rolled back, rejected there
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 1
    bad = sandbox.db().release("web", "1.2.0")
    skipped = f"Skipped release 1.2.0 ({bad.id[:7]}): rejected for dev (automatic: promotion"
    sandbox.publish("1.1.5")  # older than the rejected release, newer than what dev runs

    (preview,) = json.loads(sandbox.cli("images", "preview", "web", "--json").stdout)
    assert (preview["pick"], preview["rejected"]) == ("1.1.5", {"1.2.0": ["dev"]})
    assert preview["candidates"][:2] == ["1.2.0", "1.1.5"]
    assert "1.2.0 (rejected: dev)" in sandbox.cli("images", "preview", "web").stdout

    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    assert skipped in promoted.stderr and "promotion of web 1.1.5 into dev: succeeded" in promoted.stdout

    sandbox.publish("1.1.6")
    walked = sandbox.cli("pipeline", "web", env=REQUESTER)
    assert walked.returncode == 0, walked.stderr
    assert skipped in walked.stderr and "promotion of web 1.1.6 into dev: succeeded" in walked.stdout


def test_a_pipeline_stops_before_an_environment_its_release_is_rejected_for(sandbox: Sandbox) -> None:
    """The pipeline's own stop (catches issue 16, behaviour 7): it does not start a promotion that would fail on
    the rejection, it stops there and the run succeeds with what it did."""
    sandbox.edit_config("    branch: env/staging\n", "    branch: env/staging\n    auto_promote: true\n")
    sandbox.edit_config("required: 1                 # one approval before the merge", "required: 0")
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    release = sandbox.db().release("web", "1.2.0")
    sandbox.db().reject_release("web", "staging", release.id, "pager", None)

    walked = sandbox.cli("pipeline", "web", "--release", "1.2.0", env=REQUESTER)
    assert walked.returncode == 0, walked.stderr
    assert f"Release 1.2.0 ({release.id[:7]}) is rejected for staging; stopping" in walked.stderr
    assert history(sandbox, "web", "--env", "staging") == []  # no promotion started there


@pytest.mark.parametrize("url", ["http://[::1/healthz", "http://", "http://web/\x00", "http://we b/"])
def test_a_bad_url_from_an_older_config_fails_the_check_instead_of_raising(url: str) -> None:
    """`validate` refuses these now; one that still reaches verification fails it, which rolls back."""
    from promoflow.config import HealthCheck
    from promoflow.health import run_check

    result = run_check(HealthCheck.model_construct(url=url, attempts=2, interval_seconds=0, timeout_seconds=1))
    assert not result.healthy and result.attempts == 2
    assert result.message.startswith(("invalid URL", "request failed")), result.message


def test_a_failing_rollback_leaves_the_environment_marked_and_never_loops(
    sandbox: Sandbox, health_endpoint: type[_Health]
) -> None:
    sandbox.publish("1.1.5")  # with the baseline, two good releases: a second rollback would have one to go to
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    sandbox.publish("1.2.0")
    health_endpoint.failures = 4  # the release and its rollback both fail verification; anything after passes
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1
    assert "The rollback of web in dev failed" in failed.stderr and "Traceback" not in failed.stderr

    entries = history(sandbox, "web", "--env", "dev")
    assert [(p["kind"], p["release"]["label"], p["state"]) for p in entries if p["kind"] != "baseline"] == [
        ("rollback", "1.1.5", "failed"),
        ("promotion", "1.2.0", "failed"),
        ("promotion", "1.1.5", "succeeded"),
    ]
    status = {(s["app"], s["environment"]): s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert len(status[("web", "dev")]["rejected_releases"]) == 1


def test_tables_fit_80_columns_without_breaking_words_and_logs_name_releases_as_tables_do(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env={"PROMOFLOW_USER": "promoflow-demo"})
    assert promoted.returncode == 0, promoted.stderr
    release = sandbox.db().release("web", "1.2.0")
    name = f"1.2.0 ({release.id[:7]})"  # as `status` shows it
    assert f"promotion of {name} into dev" in promoted.stderr
    assert release.id not in promoted.stderr  # never the bare id

    for command in (["status"], ["history"], ["images", "preview", "web"]):
        narrow = sandbox.cli(*command, env={"COLUMNS": "80"})
        assert narrow.returncode == 0, narrow.stderr
        assert max(map(len, narrow.stdout.splitlines())) <= 80, narrow.stdout
        words = set(narrow.stdout.split())
        expected = {
            "status": {"environment", "staging", "1.2.0", f"({release.id[:7]})", "known", "good"},
            "history": {"baseline", "succeeded", "promoflow-demo", "1.2.0", "1.1.0"},
            "images": {"registry.example.com/demo/web", "1.2.0,", "1.1.0,", "'>=1.0.0"},
        }[command[0]]
        assert expected <= words, narrow.stdout  # whole words: none broken across lines, none cut

    piped = sandbox.cli("status", env={"COLUMNS": ""})  # no terminal, no width asked for: one line per row
    assert any(re.search(rf"web +dev +{re.escape(name)} +\d", line) for line in piped.stdout.splitlines()), piped.stdout


def test_bad_requests_say_one_sentence_and_change_nothing(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    refs = sandbox.git("for-each-ref")
    cases = [
        (["promote", "nope", "--to", "dev"], "Unknown app 'nope'"),
        (["promote", "web", "--to", "qa"], "Unknown environment 'qa'"),
        (["promote", "web", "--to", "dev", "--release", "9.9.9"], "Unknown release '9.9.9' of web"),
        (["promote", "web", "--to", "prod", "--release", "1.2.0"], "has not succeeded in staging yet"),
        (["approve", "999"], "There is no promotion 999"),
        (["rollback", "web", "--env", "dev"], "No earlier known-good release of web in dev"),
    ]
    for args, message in cases:
        result = sandbox.cli(*args, env=REQUESTER)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert history(sandbox) == []
    assert sandbox.git("for-each-ref") == refs


def test_missing_app_path_fails_the_promotion_with_a_clear_message(sandbox: Sandbox) -> None:
    sandbox.edit_config("path: apps/web", "path: apps/website")
    sandbox.publish("1.2.0")
    result = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert result.returncode == 1
    assert "apps/website" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    (promotion,) = history(sandbox, "web")
    assert promotion["state"] == "failed"
    assert [s["outcome"] for s in promotion["steps"]] == ["succeeded", "failed"]
    assert sandbox.git("branch", "--list", "promoflow/*") == ""


def test_records_live_in_postgresql_when_asked(sandbox: Sandbox, postgres_url: str) -> None:
    team_db = {**REQUESTER, "PROMOFLOW_DATABASE_URL": postgres_url}
    sandbox.publish("1.2.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=team_db)
    assert promoted.returncode == 0, promoted.stderr
    listed = sandbox.cli("history", "--json", env=team_db)
    assert listed.returncode == 0, listed.stderr
    assert [(p["kind"], p["state"]) for p in json.loads(listed.stdout)] == [
        ("baseline", "succeeded"),
        ("promotion", "succeeded"),
    ]
    assert not (sandbox.base / ".promoflow" / "promoflow.db").exists()


def test_a_crashed_promotion_never_rerun_does_not_block_the_next_one(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    sandbox.publish("1.3.0")
    crashed = sandbox.cli(
        "promote", "web", "--to", "dev", "--release", "1.2.0",
        env={**REQUESTER, "PROMOFLOW_FAILPOINTS": "after-open-request"},
    )  # fmt: skip
    assert crashed.returncode == -9
    nxt = sandbox.cli("promote", "web", "--to", "dev", "--release", "1.3.0", env=REQUESTER, timeout=60)
    assert nxt.returncode == 0, nxt.stderr
    by_release = {p["release"]["label"]: p for p in history(sandbox, "web") if p["kind"] == "promotion"}
    assert by_release["1.3.0"]["state"] == "succeeded"
    assert by_release["1.2.0"]["state"] == "failed"
    assert by_release["1.2.0"]["error"].startswith("abandoned: its process ended")
