"""Symbolic links in a worktree: those that stay inside it work; one that leads out of it is refused.

A link committed to an environment branch or to a config source can point anywhere on the machine running
promoflow: followed, it would make a promotion rewrite a file outside the repository (a manifest edit writes
the link's target) or a render read one (`kubectl kustomize`, `helm template`). So before reading or writing
a directory of a worktree, promoflow looks at every link in it, and on the way to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from promoflow.errors import TerminalError


class LinkLeavesRepository(TerminalError):
    """A symbolic link whose target is outside the worktree promoflow reads or writes."""


def refuse_links_leaving(root: Path, directory: Path, where: str = "") -> None:
    """Raise `LinkLeavesRepository` naming the first link, on the way from `root` to `directory` or anywhere under
    `directory`, that resolves outside `root`; links to directories inside `root` are followed and looked at too.
    `where` (e.g. "commit 1a2b3c of URL: ") says which repository the named file belongs to."""
    top = os.path.realpath(root)

    def check(link: str) -> None:
        real = os.path.realpath(link)
        if real != top and not real.startswith(top + os.sep):
            name = os.path.relpath(link, root)
            raise LinkLeavesRepository(
                f"{where}{name} is a symbolic link to {os.readlink(link)}, outside the repository: promoflow never "
                "reads or writes through such a link; commit the file or directory itself instead."
            )

    way = Path(root)
    for part in Path(os.path.relpath(directory, root)).parts:
        way = way / part
        if way.is_symlink():
            check(str(way))
    pending, seen = [str(directory)], set()
    while pending:
        current = pending.pop()
        if os.path.realpath(current) in seen or not os.path.isdir(current):
            continue
        seen.add(os.path.realpath(current))
        with os.scandir(current) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_symlink():
                    check(entry.path)
                    if os.path.isdir(entry.path):
                        pending.append(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
