"""A person approves a promotion in the Prefect UI: real headless Chromium clicks Resume on the paused run.

Needs Debian's chromium at /usr/bin/chromium (CI installs it; Playwright's own browser download is not used).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import Sandbox
from tests.helpers import REQUESTER, awaiting, history, start_cli, wait_for

pytestmark = pytest.mark.prefect

UI_TIMEOUT_MS = 30_000  # generous: the UI is a single-page app fetching everything after load


@pytest.fixture
def open_page(chromium: Callable[[], Browser], tmp_path: Path) -> Iterator[Callable[[], Page]]:
    """Opens a page in a fresh browser context; at the end saves what it showed to tmp_path/last-page.png."""
    pages: list[Page] = []

    def open_() -> Page:
        page = chromium().new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=tmp_path / "last-page.png")
        page.context.close()


@pytest.fixture
def server_url(prefect_api: str) -> str:
    return prefect_api.removesuffix("/api")


def staging_waiting_for_approval(sandbox: Sandbox, background: list[subprocess.Popen[str]]) -> dict[str, Any]:
    """1.2.0 promoted to dev, then `promoflow promote web --to staging` (as rita) paused for an approval."""
    sandbox.publish("1.2.0")
    dev = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert dev.returncode == 0, dev.stderr
    background.append(start_cli(sandbox, "promote", "web", "--to", "staging"))
    waiting: dict[str, Any] = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait for approval")
    assert waiting["flow_run_id"]
    return waiting


def resume_in_ui(
    page: Page, server_url: str, flow_run_id: str, approver: str, comment: str, screenshot: Path | None = None
) -> None:
    """Open the paused run, click Resume, fill the form (decision stays approve), submit."""
    page.goto(f"{server_url}/runs/flow-run/{flow_run_id}", wait_until="networkidle")
    page.get_by_role("button", name="Resume", exact=True).click()
    # The modal's aria-labelledby points at no element, so it has no accessible name: find it by its title.
    dialog = page.get_by_role("dialog").filter(has_text="Resume Flow Run")
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The promotion's description (markdown) is rendered above the fields.
    expect(dialog.get_by_role("heading", name="Promote web 1.2.0 to staging")).to_be_visible()
    expect(dialog.get_by_text("requested by rita")).to_be_visible()
    expect(dialog.get_by_role("cell", name="1.2.0", exact=True)).to_be_visible()
    expect(dialog.get_by_role("button", name="approve", exact=True)).to_be_visible()  # the decision's default

    # Field labels are not tied to their textareas (label `for` names no id): find each field by its label text.
    fields = dialog.locator(".schema-form-property")
    fields.filter(has=page.get_by_text("Approver", exact=True)).get_by_role("textbox").fill(approver)
    fields.filter(has=page.get_by_text("Comment (Optional)", exact=True)).get_by_role("textbox").fill(comment)
    if screenshot:
        page.screenshot(path=screenshot)  # the filled form, description included

    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/api/flow_runs/{flow_run_id}/resume")
    ) as response_info:
        dialog.get_by_role("button", name="Submit", exact=True).click()
    response = response_info.value
    if response.status == 503:  # the shared SQLite server was busy (database locked): the UI's own retry
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/api/flow_runs/{flow_run_id}/resume")
        ) as response_info:
            dialog.get_by_role("button", name="Submit", exact=True).click()
        response = response_info.value
    assert response.ok, response.text()
    assert response.json()["status"] == "ACCEPT", response.text()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)


def flow_run_state(prefect_api: str, flow_run_id: str) -> str:
    return str(httpx.get(f"{prefect_api}/flow_runs/{flow_run_id}", timeout=10).json()["state"]["type"])


def staging_promotion(sandbox: Sandbox) -> dict[str, Any]:
    (promotion,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    return promotion


def test_a_person_approves_by_clicking_resume_in_the_prefect_ui(
    sandbox: Sandbox,
    open_page: Callable[[], Page],
    server_url: str,
    background: list[subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    page = open_page()  # first: without chromium, fail before the slow part
    waiting = staging_waiting_for_approval(sandbox, background)

    form = tmp_path / "resume-form.png"
    resume_in_ui(page, server_url, waiting["flow_run_id"], "uma", "clicked in the UI", screenshot=form)
    assert form.stat().st_size > 0

    (running,) = background
    _, errors = running.communicate(timeout=60)
    assert running.returncode == 0, errors

    promotion = staging_promotion(sandbox)
    assert promotion["id"] == waiting["id"]
    assert promotion["state"] == "succeeded"
    (approval,) = promotion["approvals"]
    assert (approval["approver"], approval["source"], approval["counted"], approval["comment"]) == (
        "uma",
        "ui",
        True,
        "clicked in the UI",
    )
    assert approval["decision"] == "approve"


def test_a_self_approval_in_the_ui_is_recorded_uncounted_and_the_run_pauses_again(
    sandbox: Sandbox,
    open_page: Callable[[], Page],
    prefect_api: str,
    server_url: str,
    background: list[subprocess.Popen[str]],
) -> None:
    page = open_page()
    waiting = staging_waiting_for_approval(sandbox, background)
    flow_run_id = waiting["flow_run_id"]

    resume_in_ui(page, server_url, flow_run_id, "rita", "my own change")  # rita requested it

    def paused_again() -> dict[str, Any] | None:
        promotion = staging_promotion(sandbox)
        approval = [s for s in promotion["steps"] if s["name"] == "approval"]
        if (
            promotion["approvals"]
            and [s["outcome"] for s in approval] == ["waiting"]  # one wait, looked at again
            and flow_run_state(prefect_api, flow_run_id) == "PAUSED"
        ):
            return promotion
        return None

    promotion = wait_for(paused_again, what="the run to pause again after the uncounted approval")
    assert promotion["state"] == "awaiting_approval"
    (refused,) = promotion["approvals"]
    assert (refused["approver"], refused["source"], refused["counted"], refused["comment"]) == (
        "rita",
        "ui",
        False,
        "my own change",
    )
    assert refused["reason"] == "rita requested this promotion and cannot approve it"

    # The UI shows the run paused again and offers Resume again.
    page.reload(wait_until="networkidle")
    expect(page.get_by_text("Paused", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_enabled()

    approved = sandbox.cli("approve", str(waiting["id"]), "--as", "carl")
    assert approved.returncode == 0, approved.stderr
    (running,) = background
    _, errors = running.communicate(timeout=60)
    assert running.returncode == 0, errors

    promotion = staging_promotion(sandbox)
    assert promotion["state"] == "succeeded"
    assert [(a["approver"], a["source"], a["counted"]) for a in promotion["approvals"]] == [
        ("rita", "ui", False),
        ("carl", "cli", True),
    ]
