"""Releases: every image of an app pinned by digest, and the config commit of a git-sourced app, with an
id derived from that content. A group's release (a bundle) is one release of each member."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from promoflow.config import App, Image
from promoflow.errors import NotFound, TerminalError
from promoflow.gitops.manifests import ImagePin, ImageUse
from promoflow.records import Bundle, Database, Release, _utc
from promoflow.sources import Source, build_times, policy
from promoflow.sources.git import GitSource


@dataclass
class AppSources:
    """Where an app's releases come from: its image sources by image name, and its git config source."""

    images: dict[str, Source] = field(default_factory=dict)
    git: GitSource | None = None


def release_id(app: str, pins: list[ImagePin], commit: str | None = None) -> str:
    content = [app, *sorted(f"{p.name}@{p.digest}" for p in pins)]
    if commit:
        content.append(f"commit {commit}")
    return hashlib.sha256("\n".join(content).encode()).hexdigest()[:12]


def label(pins: list[ImagePin], commit: str | None = None) -> str:
    tags = {p.tag for p in pins}
    if len(tags) == 1:
        images = tags.pop()
    else:
        images = ",".join(f"{p.name.rsplit('/', 1)[-1]}:{p.tag}" for p in sorted(pins, key=lambda p: p.name))
    if commit is None:
        return images
    return f"{images}+{commit[:7]}" if images else commit[:7]


def record(app: str, pins: list[ImagePin], origin: str, commit: str | None = None) -> Release:
    return Release(
        id=release_id(app, pins, commit),
        app=app,
        label=label(pins, commit),
        images=json.dumps([{"name": p.name, "tag": p.tag, "digest": p.digest} for p in pins]),
        origin=origin,
        commit=commit,
    )


def bundle(group: str, members: list[Release], origin: str) -> Bundle:
    """A group's release; its id comes from the members' release ids."""
    by_app = {r.app: r.id for r in sorted(members, key=lambda r: r.app)}
    content = "\n".join([group, *(f"{app}={rid}" for app, rid in by_app.items())])
    return Bundle(
        id=hashlib.sha256(content.encode()).hexdigest()[:12],
        group=group,
        label=",".join(f"{r.app}:{r.label}" for r in sorted(members, key=lambda r: r.app))[:255],
        releases=json.dumps(by_app),
        origin=origin,
    )


def pins_of(release: Release) -> list[ImagePin]:
    return [ImagePin(**image) for image in json.loads(release.images)]


def newer(app: App, one: Release, other: Release) -> bool:
    """Whether `one` is a newer release of `app` than `other`: by its first image's tag policy where their tags
    differ and the policy ranks them, else by when their content was made (or recorded)."""
    made = [_utc(r.built_at or r.created_at) for r in (one, other)]
    if app.images:
        mine, theirs = pins_of(one)[0].tag, pins_of(other)[0].tag
        # `order: created` ranks by build time, which the records keep (no registry is asked here).
        built = {mine: made[0], theirs: made[1]}.get
        best = policy.ranked([mine, theirs], app.images[0].policy, 1, built) if mine != theirs else []
        if best:
            return best == [mine]
    return made[0] is not None and made[1] is not None and made[0] > made[1]


def discover(app: App, sources: AppSources, origin: str) -> Release:
    """The newest allowed tag of every image by its tag policy, and the newest config commit (not recorded)."""
    commit = sources.git.newest() if sources.git else None
    return record(app.name, newest_pins(app, sources.images), origin, commit)


# How many newer releases the default pick passes over (each costs a digest lookup) before it gives up.
MAX_SKIPPED = 20


@dataclass
class Pick:
    """The release the policy picks for an environment (not recorded yet), and the newer ones it passed over."""

    release: Release
    skipped: list[Release]


def pick(app: App, sources: AppSources, environment: str, rejected: Collection[str], origin: str) -> Pick:
    """The newest release by the tag policies that is not rejected for `environment` (`rejected`: its ids). Past
    a rejected one, every image steps down its ranking together; the config commit stays the newest. Nothing is
    recorded."""
    newest = discover(app, sources, origin)
    skipped = [newest]
    if newest.id not in rejected:
        return Pick(newest, [])
    rankings = {}
    for image in app.images:
        source = sources.images[image.name]
        rankings[image.name] = policy.ranked(source.tags(), image.policy, MAX_SKIPPED + 1, build_times(source))
    for depth in range(1, MAX_SKIPPED + 1):
        if not rankings or any(depth >= len(ranked) for ranked in rankings.values()):
            break  # nothing older (a config-only app has one candidate: the newest commit)
        tags = {name: ranked[depth] for name, ranked in rankings.items()}
        pins = [ImagePin(name, tag, sources.images[name].digest(tag)) for name, tag in tags.items()]
        candidate = record(app.name, pins, origin, newest.commit)
        if candidate.id not in rejected:
            return Pick(candidate, skipped)
        skipped.append(candidate)
    raise TerminalError(
        f"Every release of {app.name} its policy allows is rejected for {environment} (the newest: "
        f"{newest.display_name}): name one with --release, clear a rejection with `promoflow release unreject`, "
        "or publish a new one."
    )


def _no_tag(image: Image) -> TerminalError:
    return TerminalError(
        f"No tag of {image.name} matches its policy ({policy.describe(image.policy)}): "
        "publish a matching version or change the policy in promotions.yaml."
    )


def newest_pins(app: App, sources: dict[str, Source]) -> list[ImagePin]:
    pins = []
    for image in app.images:
        source = sources[image.name]
        tag = policy.select(source.tags(), image.policy, build_times(source))
        if tag is None:
            raise _no_tag(image)
        pins.append(ImagePin(image.name, tag, source.digest(tag)))
    return pins


def by_tag(app: App, sources: dict[str, Source], tag: str) -> list[ImagePin] | None:
    """Pins for an explicitly named version: every image of the app must carry that tag."""
    pins = []
    for image in app.images:
        source = sources[image.name]
        if tag not in source.tags():
            return None
        pins.append(ImagePin(image.name, tag, source.digest(tag)))
    return pins


def named(app: App, sources: AppSources, ref: str, origin: str) -> Release:
    """A release named by an image tag (the config at its newest commit), or by a commit, branch or tag of
    the config repository (the images at their newest allowed tags)."""
    pins = by_tag(app, sources.images, ref) if app.images else None
    if pins is not None:
        return record(app.name, pins, origin, sources.git.newest() if sources.git else None)
    commit = sources.git.commit(ref) if sources.git else None
    if commit is not None:
        return record(app.name, newest_pins(app, sources.images), origin, commit)
    what = "image tag" + (" or config commit" if sources.git else "") if app.images else "config commit"
    raise NotFound(
        f"Unknown release {ref!r} of {app.name}: no such {what} (`promoflow history {app.name}` lists known releases)."
    )


def resolve(db: Database, app: App, sources: AppSources, ref: str | None, origin: str) -> Release:
    """A release by id, label, tag or config commit; the newest by policy when no ref is given. Recorded once."""
    if ref:
        known = db.release(app.name, ref)
        if known:
            return known
        return save(db, named(app, sources, ref, origin), sources)
    return save(db, discover(app, sources, origin), sources)


def save(db: Database, release: Release, sources: AppSources) -> Release:
    """Record a release; a new one first learns when it was built (its sources are asked only then)."""
    if release.id in db.known_releases([release.id]):
        return db.get_release(release.id)
    release.built_at = built_at(release, sources)
    return db.save_release(release)


def built_at(release: Release, sources: AppSources) -> datetime | None:
    """When the newest part of a release was made: its images' `created`, its config commit's time. None if
    any part does not say: a lead time from an older part would be too short."""
    times = [sources.images[pin.name].built_at(pin.digest) for pin in pins_of(release)]
    if release.commit and sources.git:
        times.append(sources.git.committed_at(release.commit))
    known = [t for t in times if t is not None]
    return max(known) if known and len(known) == len(times) else None


def from_manifests(app: App, uses: list[ImageUse], sources: AppSources) -> list[ImagePin] | None:
    """The release an environment already runs, if every image is pinned to something we can name."""
    pins = []
    for image in app.images:
        use = next((u for u in uses if u.name == image.name and (u.digest or u.tag)), None)
        if use is None:
            return None
        digest = use.digest
        if digest is None and use.tag:
            try:
                digest = sources.images[image.name].digest(use.tag)
            except NotFound:
                return None
        if digest is None:
            return None
        pins.append(ImagePin(image.name, use.tag or digest[:19], digest))
    return pins
