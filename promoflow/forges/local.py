"""The local forge: a promotion request is a git branch plus a record; promoflow merges it itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.forges import Look, Request, StatusState, register
from promoflow.gitops.manifests import ImagePin
from promoflow.records import Bundle, Promotion, Release

if TYPE_CHECKING:
    from promoflow.config import ApprovalPolicy
    from promoflow.project import Project


@register("local")
class LocalForge:
    """Nothing but git: the request is the prepared branch and its record; approvals come from the Prefect UI and
    the CLI; promoflow merges it with a merge commit naming the promotion, its requester and its approvers."""

    name = "local"
    wake_events: tuple[str, ...] = ()
    wake_resources: tuple[str, ...] = ()

    def __init__(self, project: Project) -> None:
        self.workspace = project.workspace

    def open(self, promotion: Promotion, branch: str, base: str, head: str, title: str, description: str) -> Request:
        return Request(forge=self.name, branch=branch, base=base, head=head, title=title, description=description)

    def look(self, request: Request, policy: ApprovalPolicy, requester: str, checks: list[str]) -> Look:
        return Look(request.head)

    def merge(self, promotion: Promotion, request: Request, message: str) -> str:
        return self.workspace.merge(request.base, request.branch, request.head, message)

    def report(self, promotion: Promotion, request: Request | None, state: StatusState, text: str) -> None:
        return None  # the records say it all

    def hold(self, promotion: Promotion, request: Request, why: str | None) -> None:
        return None  # `promoflow status` shows it

    def comment(self, request: Request, text: str) -> None:
        return None

    def close(self, request: Request, comment: str) -> None:
        return None  # the branch stays, for the record; it is never merged


def title(promotion: Promotion, release: Release) -> str:
    verb = "Roll back" if promotion.kind == "rollback" else "Promote"
    return f"{verb} {promotion.app} {release.label} to {promotion.environment}"


def commit_message(promotion: Promotion, release: Release, pins: list[ImagePin]) -> str:
    lines = [
        title(promotion, release),
        "",
        f"Release: {release.id} ({release.label})",
        *[f"Image: {p.name}:{p.tag}@{p.digest}" for p in pins],
        *([f"Config-commit: {release.commit}"] if release.commit else []),
        f"Promotion: {promotion.id}",
        f"Requested-by: {promotion.requested_by}",
    ]
    if promotion.reason:
        lines.append(f"Reason: {promotion.reason}")
    return "\n".join(lines) + "\n"


def bundle_title(bundle: Bundle, environment: str) -> str:
    return f"Promote {bundle.group} {bundle.label} to {environment}"


def bundle_commit_message(promotion: Promotion, bundle: Bundle, members: list[Release]) -> str:
    """The commit of a bundle's one request: every member's release."""
    from promoflow.releases import pins_of

    lines = [bundle_title(bundle, promotion.environment), "", f"Bundle: {bundle.id} ({bundle.label})"]
    for release in members:
        lines.append(f"Release: {release.app} {release.id} ({release.label})")
        lines += [f"Image: {p.name}:{p.tag}@{p.digest}" for p in pins_of(release)]
        lines += [f"Config-commit: {release.commit}"] if release.commit else []
    lines.append(f"Requested-by: {promotion.requested_by}")
    if promotion.reason:
        lines.append(f"Reason: {promotion.reason}")
    return "\n".join(lines) + "\n"


def merge_message(promotion: Promotion, request: Request, approvers: list[str], shared: bool) -> str:
    """`shared`: the one request of a bundle, merged once for every member."""
    lines = [
        f"Merge {'request' if shared else f'promotion {promotion.id}'}: {request.title}",
        "",
        f"Branch: {request.branch}",
        f"Requested-by: {promotion.requested_by}",
        *[f"Approved-by: {name}" for name in approvers],
    ]
    return "\n".join(lines) + "\n"


def describe(
    promotion: Promotion,
    heading: str,
    of: list[Release],
    branch: str,
    diff: str,
    run_url: str | None = None,
) -> str:
    """Markdown for the request (a Prefect artifact, the approval form, a pull request's body): `of` the release
    promoted, or every member's of a bundle's one request."""
    from promoflow.releases import pins_of

    images = "\n".join(f"| `{p.name}` | `{p.tag}` | `{p.digest}` |" for release in of for p in pins_of(release))
    reason = f"\n**Reason:** {promotion.reason}\n" if promotion.reason else ""
    run = f" [Prefect run]({run_url})." if run_url else ""
    table = f"| image | tag | digest |\n|---|---|---|\n{images}\n\n" if images else ""
    config = "".join(f"Config commit: `{release.commit}`.\n\n" for release in of if release.commit)
    what = f"bundle `{promotion.bundle_id}`" if len(of) > 1 else f"release `{of[0].id}`"
    return (
        f"## {heading}\n\n"
        f"Promotion **{promotion.id}** of {what}, requested by **{promotion.requested_by}**, "
        f"branch `{branch}`.{run}\n{reason}\n"
        f"{table}{config}"
        f"```diff\n{diff.strip()[:6000]}\n```\n"
    )
