"""`promoflow report --html`: one self-contained page, rendered by real headless Chromium, its charts counted.

Set PROMOFLOW_WRITE_DOCS=1 to refresh the README's screenshot (docs/report.png) from this test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser

from promoflow import metrics
from promoflow.metrics.page import render
from tests.conftest import ROOT
from tests.test_metrics import HISTORY, PERIOD


def test_the_page_draws_every_deployment_lead_time_failure_and_restore(
    chromium: Callable[[], Browser], tmp_path: Path
) -> None:
    report = metrics.report(HISTORY, PERIOD, ["dev", "staging", "prod"], "all apps")
    html = render(report)
    assert not re.search(r"""(src|href)\s*=|url\(|<script|<link""", html, re.IGNORECASE)  # nothing to fetch
    page_file = tmp_path / "report.html"
    page_file.write_text(html)

    page = chromium().new_context(viewport={"width": 1000, "height": 900}).new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_file.as_uri())
    assert requested == [page_file.as_uri()]

    assert page.locator("svg").count() == 3
    for svg in page.locator("svg").all():
        box = svg.bounding_box()
        assert box is not None and box["width"] > 800 and box["height"] > 50
    assert page.locator(".metric").count() == 4 * 3  # four numbers for each environment
    prod = report.environments[2].summary
    # prod deployed at hours 3, 26, 101 (week of Nov 2) and 203 (b1, week of Nov 9): two bars, 3 and 1
    bars = page.locator('rect.deployments[data-environment="prod"]')
    assert [bars.nth(i).get_attribute("data-count") for i in range(bars.count())] == ["3", "1"]
    assert page.locator("rect.deployments").count() == 2
    assert page.locator("circle.lead-time").count() == len(prod.lead_times) == 3
    assert page.locator("circle.failure").count() == 5 and page.locator("circle.restore").count() == 4
    assert "57%" in page.locator(".metric", has_text="Change failure rate").nth(2).inner_text()
    assert page.locator(".band", has_text="high").count() >= 3

    shot = tmp_path / "report.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("PROMOFLOW_WRITE_DOCS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "report.png")
    page.context.close()
