"""A git workspace per repository: cloned once, fetched after, edited in one kept working tree (checking out the
next commit rewrites only the files that differ, where a fresh worktree per edit wrote and removed every file).

Every operation is idempotent: it first looks at the remote for the branch or merge it
would create and returns that instead of doing the work twice.
"""

from __future__ import annotations

import base64
import configparser
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from promoflow.errors import PromoflowError, TerminalError, TransientError
from promoflow.gitops.links import refuse_links_leaving
from promoflow.redact import redact, register

T = TypeVar("T")
BOT_NAME = "promoflow"
# Request branches (`promoflow/<env>/<app>/<release>`): one per promotion, so thousands over time. The clone does
# not track them: every fetch would read and compare them all, and git's time grew with each promotion. It asks the
# remote for the one it needs.
REQUEST_BRANCHES = "promoflow/"
_FETCHED = ("+refs/heads/*:refs/remotes/origin/*", f"^refs/heads/{REQUEST_BRANCHES}*")
BOT_EMAIL = "promoflow@localhost"


@dataclass(frozen=True)
class Change:
    """What preparing a promotion request produced."""

    branch: str
    head: str
    files: tuple[str, ...]
    created: bool


@dataclass(frozen=True)
class Credentials:
    """How promoflow authenticates to a git remote over HTTP(S)."""

    header: str  # an HTTP Authorization header
    source: str  # where a person fixes them, for the message when the remote refuses them


# A user name alone is no secret, but forges also take an access token as the user (`https://TOKEN@host/...`,
# GitHub's and GitLab's documented form): their token prefixes, or a long run of letters and digits, are tokens.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glptt-", "glcbt-")
_TOKEN_LIKE = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_\-]{20,}")


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """`https://user:password@host/...` (or `https://TOKEN@host/...`) as the URL without them and the header
    carrying them (None if it has none).

    Every form of the password or token is masked from then on; a user name alone is no secret and stays in the URL.
    """
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.scheme not in ("http", "https") or not at:
        return url, None
    if ":" in userinfo:
        user, _, password = (unquote(part) for part in userinfo.partition(":"))
        secrets, source = [password, userinfo.partition(":")[2]], "the user and password in the URL"
    elif unquote(userinfo).startswith(_TOKEN_PREFIXES) or _TOKEN_LIKE.fullmatch(unquote(userinfo)):
        # as git sends a user without a password: the token as the user, the password empty
        user, password = unquote(userinfo), ""
        secrets, source = [user, userinfo], "the token in the URL"
    else:
        return url, None
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    for secret in (*secrets, basic):
        register(secret)
    return urlunsplit(parts._replace(netloc=host)), Credentials(f"Authorization: Basic {basic}", source)


class Workspace:
    """A cached bare clone of `url`. Credentials in the URL are taken out of it and passed the way `credentials`
    are; `setting` names where the URL is configured (for messages).

    Operations run in batches: the threads of a process (a group's members promoted side by side) queue theirs,
    and whichever finds none running takes everything queued, under the workspace's lock, with one fetch before
    and one push after for all of them. Each still finds what an earlier attempt did, and gets its own outcome (a
    ref the remote refuses fails the operations that pushed it, no other).
    """

    def __init__(
        self, url: str, cache_dir: Path, credentials: Credentials | None = None, setting: str = "repository.url"
    ) -> None:
        self.url, in_url = split_credentials(url)
        self.credentials = in_url or credentials
        self.setting = setting
        # A refused credential must fail, not wait for someone to type a password. An HTTP Authorization
        # header for the remote goes to git through its environment, so that it is never written to a config
        # file or a URL (both end up in logs).
        self._env = {"GIT_TERMINAL_PROMPT": "0"}
        if self.credentials:
            self._env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": self.credentials.header,
            }
        self.path = cache_dir / "workspaces" / _key(self.url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if in_url:  # a clone made before credentials were taken out of URLs keeps them in its git config
            for leftover in (_key(url), f"{_key(url)}.tree"):
                shutil.rmtree(self.path.parent / leftover, ignore_errors=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One process at a time per workspace: the working tree, fetches and pushes share refs and locks.
        with open(self.path.parent / f"{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _fetched(self) -> git.Repo:
        repo = self._open()
        with repo.git.custom_environment(**self._env):
            self._run(lambda: repo.git.fetch("origin", "--prune", "--quiet"), "fetch")
        return repo

    def _open(self) -> git.Repo:
        if (self.path / "HEAD").exists():
            repo = git.Repo(self.path)
            if _fetched_refs(repo) != _FETCHED:
                _track(repo)  # a clone made when every request branch was tracked
            return repo
        tmp = Path(tempfile.mkdtemp(dir=self.path.parent))
        try:
            self._run(lambda: git.Repo.clone_from(self.url, tmp, bare=True, env={**os.environ, **self._env}), "clone")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _track(git.Repo(tmp))
        tmp.rename(self.path)
        return git.Repo(self.path)

    def _run(self, action: Callable[[], object], what: str) -> object:
        try:
            return action()
        except git.GitCommandError as error:
            raise self._failure(str(error.stderr or error), what) from None

    def _failure(self, stderr: str, what: str) -> TerminalError | TransientError:
        """What git's complaint means for the person running promoflow."""
        text = redact(stderr)
        where = f"Cannot {what} {redact(self.url)}"
        if any(word in text for word in ("Authentication failed", "could not read Username", " 401", " 403")):
            if self.credentials is None:
                return TerminalError(
                    f"{where}: the remote asks for credentials: give them in the URL (https://USER:TOKEN@HOST/...;"
                    " promoflow sends them as a header and writes them nowhere)."
                )
            return TerminalError(
                f"{where}: the remote refused promoflow's credentials; check {self.credentials.source} "
                "and that they may read and write the repository."
            )
        if any(word in text for word in ("does not appear to be a git repository", "not found")):
            return TerminalError(f"{where}: the repository does not exist; check {self.setting} in promotions.yaml.")
        if unknown := re.search(r"Could not resolve host(?:name)?:? ([^\s:']+)", text):
            return TerminalError(f"{where}: the host {unknown[1]} is unknown; check {self.setting} in promotions.yaml.")
        return TransientError(f"{where}: {self._reason(text)}.")

    def _reason(self, text: str) -> str:
        """git's own reason (its last `fatal:` or `error:` line), without the command line or local paths."""
        lines = re.findall(r"(?:fatal|error): (.*)", text) or [text.strip().splitlines()[-1]]
        said = re.sub(r"^unable to access '[^']*': ", "", lines[-1].strip().strip("'").strip())
        return said.replace(str(self.path.parent), "the workspace").rstrip(".")

    def _batched(self, operation: Callable[[_Batch], T]) -> T:
        """Run `operation` in this process's next batch on this workspace (see the class); its result, or its error."""
        queue = _queue(self)
        queued = _Queued(operation)
        with queue.lock:
            queue.waiting.append(queued)
        with queue.running:
            if not queued.done:
                try:
                    self._run_batch(queue)
                finally:  # not even the lock could be taken: no later batch may run it behind its caller's back
                    with queue.lock:
                        if queued in queue.waiting:
                            queue.waiting.remove(queued)
        if queued.error is not None:
            raise queued.error
        return cast(T, queued.result)

    def _run_batch(self, queue: _Queue) -> None:
        """Everything queued by the time this process holds the workspace: one fetch, each operation, one push."""
        with self._locked():
            with queue.lock:
                queued, queue.waiting = queue.waiting, []
            refused: dict[str, PromoflowError] = {}
            stopped: Exception | None = TransientError(f"The git work on {redact(self.url)} was interrupted.")
            try:
                repo = self._fetched()
                batch = _Batch(self, repo)
                for item in queued:
                    batch.pushes_of = item.pushes
                    try:
                        item.result = item.operation(batch)
                    except Exception as error:
                        item.error = error
                refused = self._push(repo, batch.refspecs)
                stopped = None
            except Exception as error:  # the fetch or the push: nothing was pushed
                stopped = error
            finally:  # an outcome for each, even when this thread is interrupted (nothing pushed then)
                for item in queued:
                    failed = [refused[ref] for ref in item.pushes if ref in refused]
                    item.error = item.error or stopped or (failed[0] if failed else None)
                    item.done = True

    def _push(self, repo: git.Repo, refspecs: dict[str, str]) -> dict[str, PromoflowError]:
        """Push every ref at once; the refs the remote refused, with why."""
        if not refspecs:
            return {}
        with repo.git.custom_environment(**self._env):
            # To the URL, not to `origin`: git would record each request branch pushed as origin's
            status, stdout, stderr = repo.git.push(
                "--porcelain",
                self.url,
                *(f"{commit}:{ref}" for ref, commit in refspecs.items()),
                with_extended_output=True,
                with_exceptions=False,
            )
        if status == 0:
            return {}
        # `!<TAB>from:to<TAB>[rejected] (why)` for each refused ref (a branch moved meanwhile: the retry redoes it)
        refused = {m[1]: m[2] for m in re.finditer(r"^!\t[^\t]*:(refs/[^\t]+)\t(.*)$", str(stdout), re.MULTILINE)}
        if not refused:  # nothing was pushed (the remote cannot be reached, refuses the credentials...)
            error = self._failure(str(stderr), "push")
            return dict.fromkeys(refspecs, error)
        return {
            ref: TransientError(f"Cannot push {ref.removeprefix('refs/heads/')} to {redact(self.url)}: {why}.")
            for ref, why in refused.items()
        }

    def branch_head(self, branch: str) -> str:
        def look(batch: _Batch) -> str:
            return batch.remote_head(branch) or batch.missing(branch)

        return self._batched(look)

    def on_branch(self, branch: str, use: Callable[[Path], T]) -> T:
        """`use` a working tree of `branch` as the remote has it (e.g. to see which images an environment runs, or
        to render it); whatever `use` changes there is thrown away."""

        def look(batch: _Batch) -> T:
            return use(batch.tree(batch.remote_head(branch) or batch.missing(branch)))

        return self._batched(look)

    def prepare(
        self,
        base: str,
        branch: str,
        edit: Callable[[Path], list[str]],
        message: str,
        prepared: str | None = None,
    ) -> Change:
        """Cut `branch` from `base`, apply `edit` (returns changed files), commit, push.

        If `branch` already exists on the remote it is the result of an earlier attempt: reuse it. So is
        `prepared` (the head an earlier attempt pushed) when `base` contains it, even if its branch was deleted
        since (GitHub can delete merged branches). A reused head already in `base` was merged: its files are those
        its commit changed, so that the merge is found and recorded rather than taken for "nothing to do".
        """

        def cut(batch: _Batch) -> Change:
            repo = batch.repo
            base_head = batch.remote_head(base)  # as the remote has it: not a merge of this batch, unpushed yet
            if base_head is None:
                raise TerminalError(
                    f"Environment branch {base!r} does not exist in {redact(self.url)}: "
                    "create it or fix the environment's branch in promotions.yaml."
                )
            existing = batch.tip(branch)  # prepared earlier in this batch too (a bundle's one request)
            if existing is None and prepared and _contains(repo, base_head, prepared):
                existing = prepared
            if existing:
                merged = _contains(repo, base_head, existing)
                span = [f"{existing}~1", existing] if merged else [f"{base_head}...{existing}"]
                files = repo.git.diff("--name-only", *span).split()
                return Change(branch, existing, tuple(files), created=False)
            tree = batch.tree(base_head)
            files = edit(tree)
            if not files:
                return Change(branch, base_head, (), created=False)
            worktree = git.Repo(tree)
            worktree.git.add("--all")
            with worktree.git.custom_environment(**_bot_identity()):
                worktree.git.commit("--quiet", "-m", message)
            head = worktree.head.commit.hexsha
            batch.push(branch, head)
            return Change(branch, head, tuple(files), created=True)

        return self._batched(cut)

    def compare(self, base: str, branch: str) -> tuple[str, list[str]]:
        """The head of `branch` and the files it would change in `base` (nothing once merged)."""

        def look(batch: _Batch) -> tuple[str, list[str]]:
            head = batch.remote_head(branch) or batch.missing(branch)
            batch.remote_head(base) or batch.missing(base)
            return head, batch.repo.git.diff("--name-only", f"refs/remotes/origin/{base}...{head}").split()

        return self._batched(look)

    def merge(self, base: str, branch: str, head: str, message: str) -> str:
        """Merge `head` of `branch` into `base` with a merge commit; return that commit. Merges into one branch in
        one batch follow each other, each its own merge commit, and are pushed at once.

        Already merged (a re-run after a crash): return the existing merge commit.
        """

        def join(batch: _Batch) -> str:
            repo = batch.repo
            base_head = batch.tip(base)
            if base_head is None:
                raise TerminalError(f"Environment branch {base!r} does not exist in {redact(self.url)}.")
            batch.have(branch, head)
            if repo.is_ancestor(repo.commit(head), repo.commit(base_head)):
                return self._merge_commit_of(repo, head, base_head)
            worktree = git.Repo(batch.tree(base_head))
            try:
                with worktree.git.custom_environment(**_bot_identity()):
                    worktree.git.merge("--no-ff", "--quiet", "-m", message, head)
            except git.GitCommandError:
                raise TerminalError(
                    f"The promotion branch {branch} conflicts with {base}: "
                    "someone changed the same lines; re-run the promotion to prepare it afresh."
                ) from None
            merged = worktree.head.commit.hexsha
            batch.push(base, merged)  # a refusal (base moved meanwhile) is transient: the retry merges again
            return merged

        return self._batched(join)

    @staticmethod
    def _merge_commit_of(repo: git.Repo, head: str, base_head: str) -> str:
        merges = repo.git.rev_list("--merges", "--ancestry-path", "--reverse", f"{head}..{base_head}")
        for commit in merges.split():
            if head in repo.git.rev_list("--parents", "-n", "1", commit).split()[1:]:
                return commit
        return head  # fast-forwarded by someone else: the head itself is what landed

    def newest_commit(self, branch: str, directory: str, counts: Callable[[str], bool]) -> str | None:
        """The newest commit of `branch` (first-parent history, a merge as one commit) that changed a file
        under `directory` for which `counts(path relative to directory)` is true; None if there is none."""
        prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"

        def look(batch: _Batch) -> str:
            batch.remote_head(branch) or batch.missing(branch)
            return str(
                batch.repo.git.log(
                    "--first-parent",
                    "-m",
                    "--name-only",
                    "--format=%x00%H",
                    f"refs/remotes/origin/{branch}",
                    "--",
                    prefix or ".",
                )
            )

        log = self._batched(look)
        for entry in log.split("\0")[1:]:
            commit, *files = entry.split("\n")
            if any(counts(f.removeprefix(prefix)) for f in files if f.startswith(prefix)):
                return commit
        return None

    def resolve(self, ref: str) -> str | None:
        """The commit a branch, tag or (abbreviated) commit id names; None if it names none."""

        def look(batch: _Batch) -> str | None:
            for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
                try:
                    return str(batch.repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}"))
                except git.GitCommandError:
                    continue
            return None

        return self._batched(look)

    def committed_at(self, commit: str) -> datetime:
        return self._batched(lambda batch: batch.repo.commit(commit).committed_datetime.astimezone(UTC))

    def export(self, commit: str, directory: str, destination: Path) -> None:
        """Write `directory` as of `commit` to `destination` (which must not exist yet)."""

        def copy(batch: _Batch) -> None:
            tree = batch.tree(commit)
            refuse_links_leaving(tree, tree / directory, f"Commit {commit[:12]} of {redact(self.url)}: ")
            source = (tree / directory).resolve()
            if not source.is_dir() or tree.resolve() not in (source, *source.parents):
                raise TerminalError(
                    f"Commit {commit[:12]} of {redact(self.url)} has no directory {directory!r}: "
                    "fix the app's git.directory in promotions.yaml."
                )
            shutil.copytree(source, destination, symlinks=True, ignore=shutil.ignore_patterns(".git"))

        self._batched(copy)

    def diff(self, base: str, branch: str, head: str) -> str:
        """The change a request (`head` of `branch`) brings, as `git diff base...head`."""

        def look(batch: _Batch) -> str:
            batch.have(branch, head)
            return str(batch.repo.git.diff(f"refs/remotes/origin/{base}...{head}"))

        return self._batched(look)


@dataclass(eq=False)
class _Queued:
    operation: Callable[[_Batch], object]
    result: object = None
    error: Exception | None = None
    done: bool = False
    pushes: set[str] = field(default_factory=set)  # the refs whose push its outcome needs


@dataclass
class _Queue:
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `waiting`
    running: threading.Lock = field(default_factory=threading.Lock)  # held by the thread running a batch
    waiting: list[_Queued] = field(default_factory=list)


_QUEUES: dict[tuple[Path, str], _Queue] = {}
_QUEUES_LOCK = threading.Lock()


def _queue(workspace: Workspace) -> _Queue:
    """This process's queue for the workspace (two Workspace objects of one repository share it)."""
    key = (workspace.path, json.dumps(workspace._env, sort_keys=True))
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(key, _Queue())


class _Batch:
    """What the operations of one batch share: the clone as just fetched, its one working tree, and the refs to
    push when they are done."""

    def __init__(self, workspace: Workspace, repo: git.Repo) -> None:
        self.workspace, self.repo = workspace, repo
        self.refspecs: dict[str, str] = {}  # ref -> commit
        self.pushes_of: set[str] = set()  # the running operation's

    def remote_head(self, branch: str) -> str | None:
        """The branch's head as the remote had it when the batch began (a request branch: as it has it now), its
        commit in the clone."""
        if not branch.startswith(REQUEST_BRANCHES):
            try:
                return str(self.repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}"))
            except git.GitCommandError:
                return None
        workspace = self.workspace
        with self.repo.git.custom_environment(**workspace._env):
            listed = str(workspace._run(lambda: self.repo.git.ls_remote("origin", f"refs/heads/{branch}"), "read"))
        heads = [line.split("\t")[0] for line in listed.splitlines() if line.endswith(f"\trefs/heads/{branch}")]
        if not heads:
            return None
        self.have(branch, heads[0])
        return heads[0]

    def have(self, branch: str, commit: str) -> None:
        """Fetch `branch` unless the clone has `commit` (pushed from another machine's clone)."""
        try:
            self.repo.git.cat_file("-e", f"{commit}^{{commit}}")
        except git.GitCommandError:
            workspace = self.workspace
            with self.repo.git.custom_environment(**workspace._env):
                # from the URL: fetched from `origin`, git would keep the branch as origin's
                workspace._run(lambda: self.repo.git.fetch("--quiet", workspace.url, f"refs/heads/{branch}"), "fetch")

    def tip(self, branch: str) -> str | None:
        """The branch's head with what this batch committed to it so far (to be pushed)."""
        ref = f"refs/heads/{branch}"
        if ref in self.refspecs:
            self.pushes_of.add(ref)
            return self.refspecs[ref]
        return self.remote_head(branch)

    def push(self, branch: str, commit: str) -> None:
        ref = f"refs/heads/{branch}"
        self.refspecs[ref] = commit
        self.pushes_of.add(ref)

    def missing(self, branch: str) -> NoReturn:
        raise TerminalError(f"Branch {branch!r} does not exist in {redact(self.workspace.url)}.")

    def tree(self, commit: str) -> Path:
        """The workspace's one working tree, at `commit` and holding nothing else: kept between uses, so that
        moving it rewrites only the files that differ."""
        workspace = self.workspace
        tree = workspace.path.parent / f"{workspace.path.name}.tree"
        try:
            kept = git.Repo(tree)
            kept.git.reset("--hard", "--quiet", commit)  # also ends a merge a conflict left open
            kept.git.clean("-ffdxq")
        except (git.GitCommandError, git.NoSuchPathError, git.InvalidGitRepositoryError):
            # Not made yet, or left broken by a process killed inside git (a stale index.lock): made afresh.
            shutil.rmtree(tree, ignore_errors=True)
            self.repo.git.worktree("prune")
            self.repo.git.worktree("add", "--detach", "--quiet", str(tree), commit)
        return tree


def _fetched_refs(repo: git.Repo) -> tuple[str, ...]:
    try:
        return tuple(str(value) for value in repo.config_reader().get_values('remote "origin"', "fetch"))
    except (configparser.NoSectionError, configparser.NoOptionError):
        return ()


def _track(repo: git.Repo) -> None:
    """Fetch (and record pushes of) the environment branches as origin/*, not the request branches; the refs the
    clone copied are packed into one file."""
    repo.git.config("--replace-all", "remote.origin.fetch", _FETCHED[0])
    repo.git.config("--add", "remote.origin.fetch", _FETCHED[1])
    requests = repo.git.for_each_ref("--format=delete %(refname)", f"refs/remotes/origin/{REQUEST_BRANCHES}")
    if requests:
        subprocess.run(["git", "update-ref", "--stdin"], cwd=repo.git_dir, input=f"{requests}\n", text=True, check=True)
    repo.git.pack_refs("--all")
    repo.close()


def _contains(repo: git.Repo, branch_head: str, commit: str) -> bool:
    """Whether `commit` is in the history of `branch_head` (False for a commit this clone does not have)."""
    try:
        repo.git.merge_base("--is-ancestor", commit, branch_head)
    except git.GitCommandError:
        return False
    return True


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _bot_identity() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }
