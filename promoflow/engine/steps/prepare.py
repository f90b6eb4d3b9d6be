"""Step: the promotion request's branch, cut from the environment with only the release's change (the app's
config directory as of the release's commit for git-sourced apps, then the image references pinned), or, with
`promote: branch`, the previous environment's branch as it is."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from promoflow import releases
from promoflow.config import App, Environment
from promoflow.engine.results import Done, StepResult
from promoflow.engine.steps import register
from promoflow.errors import TerminalError
from promoflow.forges import local
from promoflow.gitops.links import refuse_links_leaving
from promoflow.gitops.manifests import ManifestError, pin_images
from promoflow.project import Project
from promoflow.promotion import bundle_releases, bundle_request_branch, request_branch, shared_request
from promoflow.records import Promotion, Release

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Prepared(BaseModel):
    branch: str
    base: str
    head: str
    files: list[str] = Field(description="changed; empty when the environment already runs the release")
    mode: Literal["edit", "branch"] = "edit"
    reused: bool = Field(False, description="an earlier run had prepared the branch")
    config_commit: str | None = None


@register
class Prepare:
    name = "prepare"
    output = Prepared

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        previous = p.config.previous(promotion.app, promotion.environment)
        if p.config.repository.promote == "branch" and previous is not None and promotion.kind == "promotion":
            prepared = _from_previous_branch(p, promotion, previous.name)
        else:
            prepared = _edited_branch(p, promotion)
        if prepared.files:
            p.db.update_promotion(ctx.promotion_id, request_branch=prepared.branch, request_head=prepared.head)
        return Done(prepared)


def changed(ctx: Context) -> bool:
    """Whether the promotion prepared a change (else there is nothing to request, approve or merge)."""
    prepared = ctx.output(Prepare.name, Prepared)
    return prepared is not None and bool(prepared.files)


def _edited_branch(p: Project, promotion: Promotion) -> Prepared:
    """The request branch: the environment with the release pinned; for a member of a bundle that shares one
    request, with every member's release pinned (the members' promotions all prepare the same branch)."""
    release = p.db.get_release(promotion.release_id)
    env = p.config.environment(promotion.environment)
    bundle = shared_request(p, promotion)
    if bundle is None:
        changes = [(p.config.app(promotion.app), release)]
        branch = request_branch(promotion, release)
        message = local.commit_message(promotion, release, releases.pins_of(release))
    else:
        changes = [(p.config.app(member.app), member) for member in bundle_releases(p, bundle, promotion)]
        branch = promotion.request_branch or bundle_request_branch(promotion)
        message = local.bundle_commit_message(promotion, bundle, [member for _, member in changes])
    with TemporaryDirectory() as tmp:
        # The config is exported before the environment's workspace is locked: both may be one repository.
        edits = [
            _edit(app, env, release, _export_config(p, app, release, Path(tmp) / app.name)) for app, release in changes
        ]
        change = p.workspace.prepare(
            env.branch,
            branch,
            lambda tree: sorted({f for edit in edits for f in edit(tree)}),
            message,
            promotion.request_head,
        )
    return Prepared(
        branch=branch,
        base=env.branch,
        head=change.head,
        files=list(change.files),
        reused=not change.created,
        config_commit=release.commit,
    )


def _edit(app: App, env: Environment, release: Release, config_dir: Path | None) -> Callable[[Path], list[str]]:
    """What the release changes in the app's directory: its config commit's files (git-sourced), its images pinned."""
    directory = app.directory(env)
    pins = releases.pins_of(release)

    def pin(tree: Path) -> list[str]:
        if not (tree / directory).is_dir():
            raise TerminalError(
                f"App {app.name}'s path {directory} does not exist in branch {env.branch}: "
                "fix the app's path in promotions.yaml or add the manifests there."
            )
        try:
            pinned = pin_images(tree / directory, pins, tree, app.helm_values())
            return [f"{directory}/{name}" for name in pinned]
        except ManifestError as error:  # name files as `branch:path`, not by the working tree
            raise ManifestError(str(error).replace(f"{tree}/", f"{env.branch}:")) from None

    def edit(tree: Path) -> list[str]:
        refuse_links_leaving(tree, tree / directory)  # before the copy below reads or removes anything there
        copied = replace_tree(tree / directory, config_dir) if config_dir else []
        return sorted({*(f"{directory}/{name}" for name in copied), *pin(tree)})

    return edit


def _from_previous_branch(p: Project, promotion: Promotion, previous: str) -> Prepared:
    """Branch mode: the request is the previous environment's branch, which must run this release."""
    db = p.db
    state = db.environment_state(promotion.app, previous)
    if state is None or state.current_release != promotion.release_id:
        running = db.get_release(state.current_release).display_name if state and state.current_release else None
        raise TerminalError(
            f"With `promote: branch` a release moves on as its environment's branch: {previous} runs "
            f"{running or 'nothing promoflow knows'}, not {db.get_release(promotion.release_id).display_name}; "
            f"promote that release to {previous} first."
        )
    source = p.config.environment(previous).branch
    target = p.config.environment(promotion.environment).branch
    head, files = p.workspace.compare(target, source)
    return Prepared(branch=source, base=target, head=head, files=files, mode="branch")


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
