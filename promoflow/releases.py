"""Releases: every image of an app pinned by digest, with an id derived from that content."""

from __future__ import annotations

import hashlib
import json

from promoflow.config import App
from promoflow.errors import NotFound, TerminalError
from promoflow.gitops.manifests import ImagePin, ImageUse
from promoflow.records import Database, Release
from promoflow.sources import Source, policy


def release_id(app: str, pins: list[ImagePin]) -> str:
    content = "\n".join([app, *sorted(f"{p.name}@{p.digest}" for p in pins)])
    return hashlib.sha256(content.encode()).hexdigest()[:12]


def label(pins: list[ImagePin]) -> str:
    tags = {p.tag for p in pins}
    if len(tags) == 1:
        return tags.pop()
    return ",".join(f"{p.name.rsplit('/', 1)[-1]}:{p.tag}" for p in sorted(pins, key=lambda p: p.name))


def record(app: str, pins: list[ImagePin], origin: str) -> Release:
    return Release(
        id=release_id(app, pins),
        app=app,
        label=label(pins),
        images=json.dumps([{"name": p.name, "tag": p.tag, "digest": p.digest} for p in pins]),
        origin=origin,
    )


def pins_of(release: Release) -> list[ImagePin]:
    return [ImagePin(**image) for image in json.loads(release.images)]


def discover(app: App, sources: dict[str, Source]) -> list[ImagePin]:
    """The newest allowed tag of every image, by each image's tag policy."""
    pins = []
    for image in app.images:
        source = sources[image.name]
        tag = policy.select(source.tags(), image.policy)
        if tag is None:
            raise TerminalError(
                f"No tag of {image.name} matches its policy ({policy.describe(image.policy)}): "
                "publish a matching version or change the policy in promotions.yaml."
            )
        pins.append(ImagePin(image.name, tag, source.digest(tag)))
    return pins


def by_tag(app: App, sources: dict[str, Source], tag: str) -> list[ImagePin]:
    """Pins for an explicitly named version: every image of the app must carry that tag."""
    pins = []
    for image in app.images:
        source = sources[image.name]
        if tag not in source.tags():
            raise NotFound(
                f"Unknown release {tag!r} of {app.name}: {image.name} has no such tag "
                f"(`promoflow history {app.name}` lists known releases)."
            )
        pins.append(ImagePin(image.name, tag, source.digest(tag)))
    return pins


def resolve(db: Database, app: App, sources: dict[str, Source], ref: str | None, origin: str) -> Release:
    """A release by id, label or tag; the newest by policy when no ref is given. Recorded once."""
    if ref:
        known = db.release(app.name, ref)
        if known:
            return known
        pins = by_tag(app, sources, ref)
    else:
        pins = discover(app, sources)
    return db.save_release(record(app.name, pins, origin))


def from_manifests(app: App, uses: list[ImageUse], sources: dict[str, Source]) -> list[ImagePin] | None:
    """The release an environment already runs, if every image is pinned to something we can name."""
    pins = []
    for image in app.images:
        use = next((u for u in uses if u.name == image.name and (u.digest or u.tag)), None)
        if use is None:
            return None
        digest = use.digest
        if digest is None and use.tag:
            try:
                digest = sources[image.name].digest(use.tag)
            except NotFound:
                return None
        if digest is None:
            return None
        pins.append(ImagePin(image.name, use.tag or digest[:19], digest))
    return pins
