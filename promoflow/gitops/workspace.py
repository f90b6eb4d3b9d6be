"""A git workspace per repository: cloned once, fetched after, edited in throwaway worktrees.

Every operation is idempotent: it first looks at the remote for the branch or merge it
would create and returns that instead of doing the work twice.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from promoflow.errors import TerminalError, TransientError
from promoflow.gitops.links import refuse_links_leaving
from promoflow.redact import redact, register

BOT_NAME = "promoflow"
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


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """`https://user:password@host/...` as the URL without them and the header carrying them (None if it has none).

    Both forms of the password are masked from then on; a user name alone is no secret and stays in the URL.
    """
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.scheme not in ("http", "https") or not at or ":" not in userinfo:
        return url, None
    user, _, password = (unquote(part) for part in userinfo.partition(":"))
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    for secret in (password, userinfo.partition(":")[2], basic):
        register(secret)
    return urlunsplit(parts._replace(netloc=host)), Credentials(
        f"Authorization: Basic {basic}", "the user and password in the URL"
    )


class Workspace:
    """A cached bare clone of `url`. Credentials in the URL are taken out of it and passed the way `credentials`
    are; `setting` names where the URL is configured (for messages)."""

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
            shutil.rmtree(self.path.parent / _key(url), ignore_errors=True)

    @contextmanager
    def _locked(self) -> Iterator[git.Repo]:
        # One process at a time per workspace: worktrees and fetches share refs and locks.
        with open(self.path.parent / f"{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            repo = self._open()
            try:
                with repo.git.custom_environment(**self._env):
                    self._run(lambda: repo.git.fetch("origin", "--prune", "--quiet"), "fetch")
                yield repo
            finally:
                repo.git.worktree("prune")

    def _open(self) -> git.Repo:
        if (self.path / "HEAD").exists():
            return git.Repo(self.path)
        tmp = Path(tempfile.mkdtemp(dir=self.path.parent))
        try:
            self._run(lambda: git.Repo.clone_from(self.url, tmp, bare=True, env={**os.environ, **self._env}), "clone")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        repo = git.Repo(tmp)
        # A bare clone has no remote-tracking refs; ask for them so fetch keeps origin/* current.
        repo.git.config("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        repo.close()
        tmp.rename(self.path)
        return git.Repo(self.path)

    def _run(self, action: Callable[[], object], what: str) -> object:
        try:
            return action()
        except git.GitCommandError as error:
            text = redact(str(error.stderr or error))
            where = f"Cannot {what} {redact(self.url)}"
            if any(word in text for word in ("Authentication failed", "could not read Username", " 401", " 403")):
                if self.credentials is None:
                    raise TerminalError(
                        f"{where}: the remote asks for credentials: give them in the URL (https://USER:TOKEN@HOST/...;"
                        " promoflow sends them as a header and writes them nowhere)."
                    ) from None
                raise TerminalError(
                    f"{where}: the remote refused promoflow's credentials; check {self.credentials.source} "
                    "and that they may read and write the repository."
                ) from None
            if any(word in text for word in ("does not appear to be a git repository", "not found")):
                raise TerminalError(
                    f"{where}: the repository does not exist; check {self.setting} in promotions.yaml."
                ) from None
            if unknown := re.search(r"Could not resolve host(?:name)?:? ([^\s:']+)", text):
                raise TerminalError(
                    f"{where}: the host {unknown[1]} is unknown; check {self.setting} in promotions.yaml."
                ) from None
            raise TransientError(f"{where}: {self._reason(text)}.") from None

    def _reason(self, text: str) -> str:
        """git's own reason (its last `fatal:` or `error:` line), without the command line or local paths."""
        lines = re.findall(r"(?:fatal|error): (.*)", text) or [text.strip().splitlines()[-1]]
        said = re.sub(r"^unable to access '[^']*': ", "", lines[-1].strip().strip("'").strip())
        return said.replace(str(self.path.parent), "the workspace").rstrip(".")

    @staticmethod
    def _remote_head(repo: git.Repo, branch: str) -> str | None:
        try:
            return repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}")
        except git.GitCommandError:
            return None

    def branch_head(self, branch: str) -> str:
        with self._locked() as repo:
            head = self._remote_head(repo, branch)
        if head is None:
            raise TerminalError(f"Branch {branch!r} does not exist in {redact(self.url)}.")
        return head

    @contextmanager
    def checkout(self, ref: str) -> Iterator[Path]:
        """A read-only look at a branch (e.g. to see which images an environment runs)."""
        with self._locked() as repo:
            head = self._remote_head(repo, ref)
            if head is None:
                raise TerminalError(f"Branch {ref!r} does not exist in {redact(self.url)}.")
            with self._worktree(repo, head) as tree:
                yield tree

    @contextmanager
    def _worktree(self, repo: git.Repo, commit: str) -> Iterator[Path]:
        tree = Path(tempfile.mkdtemp(prefix="worktree-", dir=self.path.parent))
        try:
            repo.git.worktree("add", "--detach", "--quiet", str(tree), commit)
            yield tree
        finally:
            shutil.rmtree(tree, ignore_errors=True)

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
        with self._locked() as repo:
            base_head = self._remote_head(repo, base)
            if base_head is None:
                raise TerminalError(
                    f"Environment branch {base!r} does not exist in {redact(self.url)}: "
                    "create it or fix the environment's branch in promotions.yaml."
                )
            existing = self._remote_head(repo, branch)
            if existing is None and prepared and _contains(repo, base_head, prepared):
                existing = prepared
            if existing:
                merged = _contains(repo, base_head, existing)
                span = [f"{existing}~1", existing] if merged else [f"{base_head}...{existing}"]
                files = repo.git.diff("--name-only", *span).split()
                return Change(branch, existing, tuple(files), created=False)
            with self._worktree(repo, base_head) as tree:
                files = edit(tree)
                if not files:
                    return Change(branch, base_head, (), created=False)
                worktree = git.Repo(tree)
                worktree.git.add("--all")
                with worktree.git.custom_environment(**_bot_identity()):
                    worktree.git.commit("--quiet", "-m", message)
                head = worktree.head.commit.hexsha
                with worktree.git.custom_environment(**self._env):
                    self._run(lambda: worktree.git.push("origin", f"{head}:refs/heads/{branch}"), "push")
        return Change(branch, head, tuple(files), created=True)

    def compare(self, base: str, branch: str) -> tuple[str, list[str]]:
        """The head of `branch` and the files it would change in `base` (nothing once merged)."""
        with self._locked() as repo:
            head = self._remote_head(repo, branch)
            if head is None or self._remote_head(repo, base) is None:
                missing = branch if head is None else base
                raise TerminalError(f"Branch {missing!r} does not exist in {redact(self.url)}.")
            return head, repo.git.diff("--name-only", f"refs/remotes/origin/{base}...{head}").split()

    def merge(self, base: str, branch: str, head: str, message: str) -> str:
        """Merge `head` of `branch` into `base` with a merge commit; return that commit.

        Already merged (a re-run after a crash): return the existing merge commit.
        """
        with self._locked() as repo:
            base_head = self._remote_head(repo, base)
            if base_head is None:
                raise TerminalError(f"Environment branch {base!r} does not exist in {redact(self.url)}.")
            if repo.is_ancestor(repo.commit(head), repo.commit(base_head)):
                return self._merge_commit_of(repo, head, base_head)
            with self._worktree(repo, base_head) as tree:
                worktree = git.Repo(tree)
                try:
                    with worktree.git.custom_environment(**_bot_identity()):
                        worktree.git.merge("--no-ff", "--quiet", "-m", message, head)
                except git.GitCommandError:
                    raise TerminalError(
                        f"The promotion branch {branch} conflicts with {base}: "
                        "someone changed the same lines; re-run the promotion to prepare it afresh."
                    ) from None
                merged = worktree.head.commit.hexsha
                # A non-fast-forward rejection means base moved meanwhile: transient, the retry re-merges.
                with worktree.git.custom_environment(**self._env):
                    self._run(lambda: worktree.git.push("origin", f"{merged}:refs/heads/{base}"), "push")
        return merged

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
        with self._locked() as repo:
            if self._remote_head(repo, branch) is None:
                raise TerminalError(f"Branch {branch!r} does not exist in {redact(self.url)}.")
            log = repo.git.log(
                "--first-parent",
                "-m",
                "--name-only",
                "--format=%x00%H",
                f"refs/remotes/origin/{branch}",
                "--",
                prefix or ".",
            )
        for entry in log.split("\0")[1:]:
            commit, *files = entry.split("\n")
            if any(counts(f.removeprefix(prefix)) for f in files if f.startswith(prefix)):
                return commit
        return None

    def resolve(self, ref: str) -> str | None:
        """The commit a branch, tag or (abbreviated) commit id names; None if it names none."""
        with self._locked() as repo:
            for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
                try:
                    return repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}")
                except git.GitCommandError:
                    continue
        return None

    def committed_at(self, commit: str) -> datetime:
        with self._locked() as repo:
            return repo.commit(commit).committed_datetime.astimezone(UTC)

    def export(self, commit: str, directory: str, destination: Path) -> None:
        """Write `directory` as of `commit` to `destination` (which must not exist yet)."""
        with self._locked() as repo, self._worktree(repo, commit) as tree:
            refuse_links_leaving(tree, tree / directory, f"Commit {commit[:12]} of {redact(self.url)}: ")
            source = (tree / directory).resolve()
            if not source.is_dir() or tree.resolve() not in (source, *source.parents):
                raise TerminalError(
                    f"Commit {commit[:12]} of {redact(self.url)} has no directory {directory!r}: "
                    "fix the app's git.directory in promotions.yaml."
                )
            shutil.copytree(source, destination, symlinks=True, ignore=shutil.ignore_patterns(".git"))

    def diff(self, base: str, head: str) -> str:
        """The change a request brings, as `git diff base...head`."""
        with self._locked() as repo:
            return repo.git.diff(f"refs/remotes/origin/{base}...{head}")


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
