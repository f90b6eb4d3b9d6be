"""The rules of a promotion, independent of Prefect: start or resume, order, guards, baseline.

The steps in tasks/ call these; the CLI calls some of them directly.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from promoflow import holds, releases
from promoflow.config import App, Group
from promoflow.errors import NotFound, TerminalError
from promoflow.gitops.manifests import ImageUse, find_images
from promoflow.gitops.workspace import REQUEST_BRANCHES
from promoflow.project import Project
from promoflow.records import Bundle, Promotion, Release
from promoflow.releases import AppSources

Kind = str  # "promotion" | "rollback" | "baseline"


def sources(project: Project, app: App) -> AppSources:
    images = {image.name: project.source(image) for image in app.images}
    return AppSources(images, project.git_source(app))


def newest_allowed(project: Project, app: App, environment: str, origin: str) -> tuple[Release, list[str]]:
    """The newest release by the tag policies that is not rejected for `environment`, recorded, and a sentence
    for each newer one passed over."""
    rejected = project.db.rejected(app.name, environment)
    picked = releases.pick(app, sources(project, app), environment, rejected, origin)
    said = [
        f"Skipped release {skipped.display_name}: rejected for {environment} ({rejected[skipped.id].reason})."
        for skipped in picked.skipped
    ]
    return project.db.save_release(picked.release)[0], said


def request_branch(promotion: Promotion, release: Release) -> str:
    """`promoflow/<env>/<app>/<release>`, suffixed with the promotion: a release promoted again later (a
    rollback to it) gets its own branch instead of finding the old, merged one."""
    return f"{REQUEST_BRANCHES}{promotion.environment}/{promotion.app}/{release.label}-{release.id[:7]}-p{promotion.id}"


def shared_request(project: Project, promotion: Promotion) -> Bundle | None:
    """The bundle whose one request this promotion shares with the other members (`bundle_request`), if any."""
    if promotion.kind != "promotion" or promotion.bundle_id is None:
        return None
    group = project.config.group_of(promotion.app)
    return project.db.get_bundle(promotion.bundle_id) if group is not None and group.bundle_request else None


def bundle_releases(project: Project, bundle: Bundle, promotion: Promotion) -> list[Release]:
    """The releases a bundle's one request into the promotion's environment brings, in the group's order."""
    members = bundle.members()
    group = project.config.group(bundle.group)
    assert group is not None, "a shared request's group"
    env = project.config.environment(promotion.environment)
    return [project.db.get_release(members[app]) for app in group.apps if env in project.config.route(app)]


def bundle_request_branch(lead: Promotion) -> str:
    """`promoflow/<env>/bundle-<bundle>-p<lead>`: the one request of a bundle's promotion into an environment, named
    after its first member's promotion (promoted again later, the bundle gets a new one)."""
    return f"{REQUEST_BRANCHES}{lead.environment}/bundle-{lead.bundle_id}-p{lead.id}"


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def start(
    project: Project,
    app: str,
    environment: str,
    release_ref: str | None,
    requested_by: str,
    kind: Kind = "promotion",
    reason: str = "",
    rollback_of: int | None = None,
    bundle_id: str | None = None,
    override_freeze: bool = False,
    skip_order: bool = False,
) -> Promotion:
    """The promotion to run: the unfinished one of this release (resumed after a crash), or a new one.
    `override_freeze`: the requester lets it through the environment's freezes and windows; `skip_order`: past the
    environments before that its release has not been through (a hotfix); both for `reason`.

    Raises a terminal error, changing nothing, for unknown apps, environments and releases, and for an override
    the requester may not give.
    """
    config = project.config
    app_config = config.app(app)
    config.previous(app, environment)  # validates the environment is on the app's route
    override: dict[str, Any] = {}
    for flag, field, given in (
        ("--override-freeze", "override_freeze", override_freeze),
        ("--skip-order", "skip_order", skip_order),
    ):
        if given:
            holds.check_override(config.environment(environment), requested_by, reason, flag)
            override |= {"overridden_by": requested_by, field: True}
    release = releases.resolve(project.db, app_config, sources(project, app_config), release_ref, "oci-layout")
    existing = project.db.open_promotion(app, environment, release.id)
    if existing and existing.id is not None:
        _refuse_if_running_elsewhere(existing)
        if existing.runner and existing.runner != runner_id():
            project.db.interrupt_steps(existing.id, f"the process running it ({existing.runner}) ended first")
        return project.db.update_promotion(existing.id, reason=reason, **override) if override else existing
    return project.db.create_promotion(
        Promotion(
            app=app,
            environment=environment,
            release_id=release.id,
            kind=kind,
            requested_by=requested_by,
            reason=reason,
            rollback_of=rollback_of,
            bundle_id=bundle_id,
            **override,
        )
    )


def resolve_bundle(project: Project, group: Group, ref: str | None, origin: str) -> Bundle:
    """A group's bundle by id or label; with no ref, the newest release of every member. Recorded once."""
    db = project.db
    if ref:
        known = db.bundle(group.name, ref)
        if known is None:
            raise NotFound(
                f"Unknown bundle {ref!r} of group {group.name}: name it by id or label, or leave it out to take "
                "the newest release of every member."
            )
        return known
    members = [project.config.app(name) for name in group.apps]
    chosen = [releases.resolve(db, app, sources(project, app), None, origin) for app in members]
    bundle, _ = db.save_bundle(releases.bundle(group.name, chosen, origin))
    return bundle


def _refuse_if_running_elsewhere(promotion: Promotion) -> None:
    if runner_alive(promotion):
        raise TerminalError(
            f"Promotion {promotion.id} of this release is already running ({promotion.runner}); "
            f"wait for it or follow it with `promoflow history {promotion.app}`."
        )


def runner_alive(promotion: Promotion) -> bool | None:
    """Whether another process on this host runs the promotion; None when that cannot be told."""
    return process_alive(promotion.runner)


def process_alive(runner: str | None) -> bool | None:
    """Whether the process `runner` (a `runner_id()`) lives on, other than this one; None when that cannot be told
    (another host)."""
    host, _, pid = (runner or "").partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_order(project: Project, promotion: Promotion) -> None:
    """A release enters an environment only after it succeeded in the one before (unless a hotfix skips the
    order), and if not rejected."""
    if promotion.kind == "rollback":
        return
    db = project.db
    release = db.get_release(promotion.release_id).display_name
    rejection = db.rejected(promotion.app, promotion.environment).get(promotion.release_id)
    if rejection:
        raise TerminalError(
            f"Release {release} of {promotion.app} was rejected for {promotion.environment} "
            f"({rejection.reason}); clear it with `promoflow release unreject {promotion.app} "
            f"{promotion.release_id} --env {promotion.environment}` to promote it again."
        )
    previous = project.config.previous(promotion.app, promotion.environment)
    if (
        previous is not None
        and not promotion.skip_order
        and not _succeeded_in(project, promotion.app, previous.name, promotion.release_id)
    ):
        raise TerminalError(
            f"Release {release} of {promotion.app} has not succeeded in {previous.name} yet: "
            f"promote it there first (`promoflow promote {promotion.app} --to {previous.name}`)."
        )


def _succeeded_in(project: Project, app: str, environment: str, release_id: str) -> bool:
    db = project.db
    state = db.environment_state(app, environment)
    verified = [
        p for p in db.promotions(app, environment, limit=1000) if p.release_id == release_id and p.state == "succeeded"
    ]
    return bool(verified) and state is not None and state.last_known_good is not None


def runs(project: Project, app: str, environment: str, release_id: str) -> bool:
    """Whether `environment` runs `release_id` of `app`, verified."""
    state = project.db.environment_state(app, environment)
    return state is not None and state.last_known_good == release_id and state.current_release == release_id


def check_bundle_order(project: Project, group: Group, bundle: Bundle, environment: str) -> list[str]:
    """The members a bundle's promotion into `environment` would change, in order; raises a terminal error,
    changing nothing, when the environment is not on the group's route, a member's release is rejected
    there, or has not succeeded in the member's environment before."""
    config = project.config
    env = config.environment(environment)
    route = config.group_route(group)
    if env not in route:
        raise TerminalError(
            f"Group {group.name} is not promoted to {env.name!r}: its environments are "
            f"{', '.join(e.name for e in route)}."
        )
    members = bundle.members()
    here = [app for app in group.apps if env in config.route(app)]
    rejected = [app for app in here if members[app] in project.db.rejected(app, env.name)]
    if rejected:
        raise TerminalError(
            f"Bundle {bundle.id} of group {group.name} is rejected for {env.name} ({', '.join(rejected)}); clear "
            f"that with `promoflow release unreject APP RELEASE --env {env.name}` to promote it there."
        )
    todo = [app for app in here if not runs(project, app, env.name, members[app])]
    behind = []
    for app in todo:
        previous = config.previous(app, env.name)
        if previous is not None and not _succeeded_in(project, app, previous.name, members[app]):
            behind.append(previous.name)
    if behind:
        raise TerminalError(
            f"Bundle {bundle.label} ({bundle.id}) of group {group.name} has not succeeded in {behind[0]} yet: "
            f"promote it there first (`promoflow promote {group.name} --to {behind[0]} --release {bundle.id}`)."
        )
    return todo


def adopt_baseline(project: Project, app: str, environment: str) -> Release | None:
    """Record what an environment already runs, the first time promoflow meets it.

    That release becomes its current and last known good, so the first promotion has something
    to roll back to. Returns None when the manifests do not name a release promoflow can resolve.
    """
    db = project.db
    if db.environment_state(app, environment) is not None:
        return None
    app_config = project.config.app(app)
    if app_config.git is not None:
        return None  # which config commit a branch runs cannot be told from its files
    env = project.config.environment(environment)

    def images(tree: Path) -> list[ImageUse]:
        app_dir = tree / app_config.directory(env)
        return find_images(app_dir, tree, app_config.helm_values()) if app_dir.is_dir() else []

    uses = project.workspace.on_branch(env.branch, images)
    pins = releases.from_manifests(app_config, uses, sources(project, app_config))
    if pins is None:
        return None
    release = db.save_release(releases.record(app, pins, f"adopted from branch {env.branch}"))[0]
    baseline = db.create_promotion(
        Promotion(
            app=app,
            environment=environment,
            release_id=release.id,
            kind="baseline",
            state="succeeded",
            requested_by="promoflow",
            reason=f"what {env.branch} ran when promoflow first saw it",
        )
    )
    assert baseline.id is not None
    with db.step(baseline.id, "adopt", branch=env.branch, release=release.label):
        db.set_current(app, environment, release.id, baseline.id)
        db.set_known_good(app, environment, release.id)
    db.update_promotion(baseline.id, state="succeeded")
    return release


def culprit(project: Project, promotion: Promotion) -> Promotion | None:
    """The promotion a rollback undoes, whose release it marks rejected once it holds the environment; None for
    anything else, and for the rollback of a bundle's member that only undoes a partial bundle (that release did
    nothing wrong)."""
    if promotion.kind != "rollback" or promotion.rollback_of is None or promotion.bundle_id is not None:
        return None
    return project.db.promotion(promotion.rollback_of)


def rollback_target(project: Project, app: str, environment: str, to: str | None) -> Release:
    """The release a rollback goes to: `to`, or the newest verified one before the current."""
    db = project.db
    app_config = project.config.app(app)
    project.config.previous(app, environment)  # the environment must be on the app's route
    if to:
        target = releases.resolve(db, app_config, sources(project, app_config), to, "named for rollback")
    else:
        found = db.rollback_target(app, environment)
        if found is None:
            raise TerminalError(
                f"No earlier known-good release of {app} in {environment} to roll back to; name one with --to."
            )
        target = db.get_release(found)
    state = db.environment_state(app, environment)
    if state and state.current_release == target.id:
        raise TerminalError(f"{app} already runs {target.label} ({target.id}) in {environment}: nothing to roll back.")
    return target


def require_decidable(promotion: Promotion) -> None:
    """Approvals and rejections are for promotions that are queued or waiting for them."""
    if promotion.state not in ("pending", "awaiting_approval"):
        raise TerminalError(
            f"Promotion {promotion.id} is not waiting for approval (it is {promotion.state.replace('_', ' ')})."
        )
