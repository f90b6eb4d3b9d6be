"""A group's members promoted side by side: bounded, each in the flow run's context, and none started after a
failure."""

from __future__ import annotations

import contextvars
import threading
import time

from flows.pipeline import side_by_side

RUN = contextvars.ContextVar[str]("run")


def test_members_go_side_by_side_never_more_than_the_bound() -> None:
    apps = [f"app{n}" for n in range(12)]
    running, most, lock = 0, 0, threading.Lock()
    seen: list[str] = []

    def promote(app: str) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        seen.append(RUN.get())  # the caller's context (Prefect's flow run context, in a flow)
        time.sleep(0.05)
        with lock:
            running -= 1
        return apps.index(app)

    RUN.set("pipeline run")
    pids, failed = side_by_side(apps, promote, 3)
    assert pids == {app: n for n, app in enumerate(apps)} and failed == {}
    assert most == 3
    assert seen == ["pipeline run"] * 12


def test_after_a_failure_no_other_member_starts() -> None:
    apps = [f"app{n}" for n in range(10)]
    started: list[str] = []

    def promote(app: str) -> int:
        started.append(app)
        if app == "app1":
            raise RuntimeError("did not roll out")
        time.sleep(0.2)
        return 1

    pids, failed = side_by_side(apps, promote, 2)
    assert list(failed) == ["app1"] and str(failed["app1"]) == "did not roll out"
    assert sorted(started) == ["app0", "app1"]  # app0 was under way: it finishes
    assert list(pids) == ["app0"]


def test_one_at_a_time_keeps_the_group_order() -> None:
    order: list[str] = []
    side_by_side(["c", "a", "b"], lambda app: order.append(app) or 0, 1)
    assert order == ["c", "a", "b"]
