"""Step: cut the promotion branch from the environment branch with only the release's change: the app's
config directory as of the release's commit (git-sourced apps), then the image references pinned."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from tempfile import TemporaryDirectory

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow import releases
from promoflow.config import App
from promoflow.errors import TerminalError
from promoflow.forges import local
from promoflow.gitops.manifests import ManifestError, pin_images
from promoflow.project import Project
from promoflow.promotion import request_branch
from promoflow.records import Release
from tasks._shared import project


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(config: str, promotion_id: int) -> list[str]:
    """Returns the files changed; empty when the environment already runs this release."""
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    release = db.get_release(promotion.release_id)
    app = p.config.app(promotion.app)
    env = p.config.environment(promotion.environment)
    pins = releases.pins_of(release)
    branch = request_branch(promotion, release)

    def pin(tree: Path) -> list[str]:
        if not (tree / app.path).is_dir():
            raise TerminalError(
                f"App {app.name}'s path {app.path} does not exist in branch {env.branch}: "
                "fix the app's path in promotions.yaml or add the manifests there."
            )
        try:
            return [f"{app.path}/{name}" for name in pin_images(tree / app.path, pins)]
        except ManifestError as error:  # name files as `branch:path`, not by the throwaway worktree
            raise ManifestError(str(error).replace(f"{tree}/", f"{env.branch}:")) from None

    with db.step(promotion_id, "prepare", branch=branch, base=env.branch) as detail, TemporaryDirectory() as tmp:
        # The config is exported before the environment's workspace is locked: both may be one repository.
        config_dir = _export_config(p, app, release, Path(tmp) / "config")

        def edit(tree: Path) -> list[str]:
            copied = replace_tree(tree / app.path, config_dir) if config_dir else []
            return sorted({*(f"{app.path}/{name}" for name in copied), *pin(tree)})

        change = p.workspace.prepare(env.branch, branch, edit, local.commit_message(promotion, release, pins))
        detail.update(head=change.head, files=list(change.files), reused=not change.created)
        if release.commit:
            detail.update(config_commit=release.commit)
    if change.files:
        db.update_promotion(promotion_id, request_branch=branch, request_head=change.head)
    return list(change.files)


def _export_config(p: Project, app: App, release: Release, destination: Path) -> Path | None:
    if release.commit is None:
        return None
    source = p.git_source(app)
    if source is None:
        raise TerminalError(
            f"Release {release.label} of {app.name} carries config commit {release.commit[:12]}, but the app "
            "has no `git` source in promotions.yaml any more: add it back or promote another release."
        )
    source.export(release.commit, destination)
    return destination


def replace_tree(app_dir: Path, config_dir: Path) -> list[str]:
    """Make `app_dir` a copy of `config_dir`; returns the files added, changed or removed (relative to it)."""
    before = _files(app_dir)
    if app_dir.is_dir():
        shutil.rmtree(app_dir)
    shutil.copytree(config_dir, app_dir, symlinks=True)
    after = _files(app_dir)
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def _files(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {
        path.relative_to(directory).as_posix(): os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        for path in directory.rglob("*")
        if path.is_symlink() or path.is_file()
    }
