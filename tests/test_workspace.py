"""The git workspace under concurrency, on real repositories: the threads of one process (a group's members promoted
side by side) share one fetch and one push per batch, each gets its own outcome, and the working tree kept between
operations recovers from what a killed git process leaves behind."""

from __future__ import annotations

import fcntl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from promoflow.errors import TransientError
from promoflow.gitops import workspace as workspace_module
from promoflow.gitops.workspace import Change, Workspace

APPS = [f"app{n}" for n in range(6)]
BASE = "env/dev"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose `env/dev` holds apps/<app>/tag for every app; its hooks log each push and refuse
    branches under `promoflow/refused/`."""
    seed, bare = tmp_path / "seed", tmp_path / "remote.git"
    git("init", "-q", "-b", BASE, str(seed), cwd=tmp_path)
    for app in APPS:
        (seed / "apps" / app).mkdir(parents=True)
        (seed / "apps" / app / "tag").write_text("1.0.0\n")
    git("add", "-A", cwd=seed)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "apps", cwd=seed)
    git("clone", "-q", "--bare", str(seed), str(bare), cwd=tmp_path)
    hooks = bare / "hooks"
    (hooks / "post-receive").write_text('#!/bin/sh\ncat >/dev/null\necho push >> "$GIT_DIR/pushes.log"\n')
    (hooks / "update").write_text('#!/bin/sh\ncase "$1" in refs/heads/promoflow/refused/*) exit 1;; esac\n')
    for hook in ("post-receive", "update"):
        (hooks / hook).chmod(0o755)
    return bare


def pushes(remote: Path) -> int:
    log = remote / "pushes.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def bump(app: str, tag: str) -> Callable[[Path], list[str]]:
    def edit(tree: Path) -> list[str]:
        (tree / "apps" / app / "tag").write_text(f"{tag}\n")
        return [f"apps/{app}/tag"]

    return edit


@contextmanager
def held(workspace: Workspace) -> Iterator[None]:
    """Another process's hold on the workspace (the lock every promoflow process takes)."""
    with open(workspace.path.parent / f"{workspace.path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def queued(workspace: Workspace) -> int:
    return len(workspace_module._queue(workspace).waiting)


def side_by_side(workspace: Workspace, work: Callable[[str], object]) -> list[object]:
    """`work` for every app at once, each in its own thread, while another process holds the workspace: every
    operation is queued before any runs."""
    with ThreadPoolExecutor(len(APPS)) as pool, held(workspace):
        futures = [pool.submit(work, app) for app in APPS]
        deadline = time.monotonic() + 60
        while queued(workspace) < len(APPS):
            assert time.monotonic() < deadline, "the operations did not queue"
            time.sleep(0.01)
    return [future.result(timeout=120) for future in futures]


def test_operations_queued_meanwhile_share_one_push_and_each_gets_its_own_outcome(remote: Path, tmp_path: Path) -> None:
    workspace = Workspace(str(remote), tmp_path / "state")
    workspace.branch_head(BASE)  # the clone
    before = pushes(remote)

    changes = side_by_side(
        workspace, lambda app: workspace.prepare(BASE, f"promoflow/dev/{app}", bump(app, "2.0.0"), app)
    )
    assert pushes(remote) == before + 1
    for app, change in zip(APPS, changes, strict=True):
        assert isinstance(change, Change) and change.created and change.files == (f"apps/{app}/tag",)
        assert git("rev-parse", f"promoflow/dev/{app}", cwd=remote) == change.head
        assert git("diff", "--name-only", f"{BASE}...{change.head}", cwd=remote) == f"apps/{app}/tag"

    def merge(app: str) -> str:
        change = changes[APPS.index(app)]
        assert isinstance(change, Change)
        return workspace.merge(BASE, change.branch, change.head, f"Merge {app}")

    merged = side_by_side(workspace, merge)
    assert pushes(remote) == before + 2  # every merge into env/dev, one after another, pushed at once
    assert len(set(merged)) == len(APPS)
    for app, commit, change in zip(APPS, merged, changes, strict=True):
        assert isinstance(change, Change)
        assert git("log", "-1", "--format=%s", str(commit), cwd=remote) == f"Merge {app}"
        assert git("rev-parse", f"{commit}^2", cwd=remote) == change.head
        assert git("show", f"{BASE}:apps/{app}/tag", cwd=remote) == "2.0.0"
    # Asked again (a re-run after a crash): the same merge is found, nothing is pushed.
    assert [merge(app) for app in APPS] == merged and pushes(remote) == before + 2


def test_a_refused_ref_fails_only_the_operation_that_pushed_it(remote: Path, tmp_path: Path) -> None:
    workspace = Workspace(str(remote), tmp_path / "state")
    workspace.branch_head(BASE)

    def prepare(app: str) -> Change | Exception:
        where = "refused" if app == "app2" else "dev"
        try:
            return workspace.prepare(BASE, f"promoflow/{where}/{app}", bump(app, "3.0.0"), app)
        except TransientError as error:
            return error

    outcomes = side_by_side(workspace, prepare)
    refused = outcomes[APPS.index("app2")]
    assert isinstance(refused, TransientError) and "promoflow/refused/app2" in str(refused)
    assert all(isinstance(o, Change) and o.created for app, o in zip(APPS, outcomes, strict=True) if app != "app2")
    assert git("branch", "--list", "promoflow/*", cwd=remote).split() == [
        f"promoflow/dev/{a}" for a in APPS if a != "app2"
    ]


def test_the_kept_working_tree_recovers_from_what_a_killed_git_left(remote: Path, tmp_path: Path) -> None:
    workspace = Workspace(str(remote), tmp_path / "state")
    first = workspace.prepare(BASE, "promoflow/dev/app0", bump("app0", "4.0.0"), "app0")
    tree = workspace.path.parent / f"{workspace.path.name}.tree"
    (tree / "stray.txt").write_text("left by an edit\n")
    admin = Path(git("rev-parse", "--git-dir", cwd=tree))
    (admin if admin.is_absolute() else tree / admin).joinpath("index.lock").write_text("")  # git was killed in it
    second = workspace.prepare(BASE, "promoflow/dev/app1", bump("app1", "4.0.0"), "app1")
    assert second.created and second.files == ("apps/app1/tag",)
    assert git("diff", "--name-only", f"{BASE}...{second.head}", cwd=remote) == "apps/app1/tag"
    assert first.head != second.head
    seen = workspace.on_branch(BASE, lambda t: sorted(p.name for p in t.iterdir() if p.name != ".git"))
    assert seen == ["apps"]  # nothing of the edits above


def test_threads_queue_behind_a_running_batch_without_losing_any(remote: Path, tmp_path: Path) -> None:
    """No other process holds the workspace: whatever arrives while a batch runs goes in the next."""
    workspace = Workspace(str(remote), tmp_path / "state")
    results: dict[str, str] = {}
    lock = threading.Lock()

    def read(app: str) -> None:
        for _ in range(5):
            tag = workspace.on_branch(BASE, lambda tree: (tree / "apps" / app / "tag").read_text().strip())
            with lock:
                results[app] = tag

    with ThreadPoolExecutor(len(APPS)) as pool:
        for future in [pool.submit(read, app) for app in APPS]:
            future.result(timeout=120)
    assert results == dict.fromkeys(APPS, "1.0.0")


def test_request_branches_are_not_tracked_and_a_clone_elsewhere_finds_them(remote: Path, tmp_path: Path) -> None:
    """Every promotion adds a request branch: tracked, each fetch and push read them all, and git's time grew with
    every promotion. The clone asks for the one it needs, from a clone on another machine too."""
    elsewhere = Workspace(str(remote), tmp_path / "elsewhere")
    elsewhere.branch_head(BASE)  # cloned before the request below exists
    here = Workspace(str(remote), tmp_path / "here")
    change = here.prepare(BASE, "promoflow/dev/app0/5.0.0-p1", bump("app0", "5.0.0"), "app0")

    assert "+5.0.0" in elsewhere.diff(BASE, change.branch, change.head)
    again = elsewhere.prepare(BASE, change.branch, bump("app0", "6.0.0"), "app0")  # a re-run finds it
    assert (again.head, again.created, again.files) == (change.head, False, ("apps/app0/tag",))
    merged = elsewhere.merge(BASE, change.branch, change.head, "Merge app0")
    assert git("rev-parse", f"{merged}^2", cwd=remote) == change.head
    for clone in (here, elsewhere):
        assert git("for-each-ref", "refs/remotes/origin/", cwd=clone.path).split()[2::3] == [
            f"refs/remotes/origin/{BASE}"
        ]


def test_a_clone_that_tracked_request_branches_stops(remote: Path, tmp_path: Path) -> None:
    workspace = Workspace(str(remote), tmp_path / "state")
    workspace.prepare(BASE, "promoflow/dev/app1/1", bump("app1", "7.0.0"), "app1")
    git("config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=workspace.path)
    git("fetch", "-q", "origin", cwd=workspace.path)  # as promoflow fetched before
    assert "refs/remotes/origin/promoflow/dev/app1/1" in git("for-each-ref", cwd=workspace.path)
    workspace.branch_head(BASE)
    assert "refs/remotes/origin/promoflow" not in git("for-each-ref", cwd=workspace.path)
    assert git("config", "--get-all", "remote.origin.fetch", cwd=workspace.path).splitlines() == [
        "+refs/heads/*:refs/remotes/origin/*",
        "^refs/heads/promoflow/*",
    ]
