"""Git config sources: commits on a branch that touch the app's config directory are config releases."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from promoflow.config import ConfigSource
from promoflow.errors import NotFound
from promoflow.gitops.workspace import Workspace
from promoflow.redact import redact


@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regular expression: `*` and `?` stay within one directory, `**` crosses them
    (`**/` also matches no directory at all), a pattern ending in `/` matches everything under it."""
    if pattern.endswith("/"):
        pattern += "**"
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def counts(source: ConfigSource, path: str) -> bool:
    """Whether a change to `path` (relative to the source's directory) makes a release."""

    def matches(patterns: list[str]) -> bool:
        return any(glob_regex(p).fullmatch(path) for p in patterns)

    return matches(source.include) and not matches(source.exclude)


@dataclass
class GitSource:
    """An app's config source: a branch of a repository, read through a cached clone."""

    app: str
    config: ConfigSource
    url: str
    state_dir: Path

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.url, self.state_dir, setting=f"the `git.url` of app {self.app}")

    def newest(self) -> str:
        """The newest commit of the branch that changed an included, not excluded, file."""
        commit = self.workspace.newest_commit(
            self.config.branch, self.config.directory, lambda path: counts(self.config, path)
        )
        if commit is None:
            raise NotFound(
                f"No commit of branch {self.config.branch} of {redact(self.url)} changes the config of {self.app} "
                f"(directory {self.config.directory!r}, include {self.config.include}, exclude {self.config.exclude}):"
                " commit some or fix the app's `git` source in promotions.yaml."
            )
        return commit

    def commit(self, ref: str) -> str | None:
        """The commit a branch, tag or commit id of the repository names; None if it names none."""
        return self.workspace.resolve(ref)

    def committed_at(self, commit: str) -> datetime:
        return self.workspace.committed_at(commit)

    def export(self, commit: str, destination: Path) -> None:
        self.workspace.export(commit, self.config.directory, destination)
