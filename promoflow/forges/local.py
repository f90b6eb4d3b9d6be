"""The local forge: a promotion request is a git branch plus a record; promoflow merges it itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.forges import Look, Request, StatusState, register
from promoflow.gitops.manifests import ImagePin
from promoflow.records import Promotion, Release

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


def merge_message(promotion: Promotion, release: Release, branch: str, approvers: list[str]) -> str:
    lines = [
        f"Merge promotion {promotion.id}: {title(promotion, release)}",
        "",
        f"Branch: {branch}",
        f"Requested-by: {promotion.requested_by}",
        *[f"Approved-by: {name}" for name in approvers],
    ]
    return "\n".join(lines) + "\n"


def describe(
    promotion: Promotion,
    release: Release,
    pins: list[ImagePin],
    branch: str,
    diff: str,
    run_url: str | None = None,
) -> str:
    """Markdown for the request (a Prefect artifact, the approval form, a pull request's body)."""
    images = "\n".join(f"| `{p.name}` | `{p.tag}` | `{p.digest}` |" for p in pins)
    reason = f"\n**Reason:** {promotion.reason}\n" if promotion.reason else ""
    run = f" [Prefect run]({run_url})." if run_url else ""
    table = f"| image | tag | digest |\n|---|---|---|\n{images}\n\n" if pins else ""
    config = f"Config commit: `{release.commit}`.\n\n" if release.commit else ""
    return (
        f"## {title(promotion, release)}\n\n"
        f"Promotion **{promotion.id}** of release `{release.id}`, requested by **{promotion.requested_by}**, "
        f"branch `{branch}`.{run}\n{reason}\n"
        f"{table}{config}"
        f"```diff\n{diff.strip()[:6000]}\n```\n"
    )
