"""Read the rows the metrics need from the records: three queries, whatever the number of promotions."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlmodel import col, or_, select

from promoflow.metrics import Period, PromotionRow, Report, report
from promoflow.project import Project
from promoflow.records import Database, Promotion, Rejection, Release, Step, _utc


def project_report(project: Project, target: str | None, environment: str | None, period: Period) -> Report:
    """The metrics of an app, a group's members, or every app (None), in one environment or all; raises a
    terminal error naming what exists for an unknown app, group or environment."""
    config = project.config
    apps: list[str] | None = None
    if target:
        group = config.group_or_app(target)
        apps = list(group.apps) if group else [target]
    environments = [e.name for e in config.environments]
    if environment:
        environments = [config.environment(environment).name]
    rows = promotion_rows(project.db, period, apps, environment)
    return report(rows, period, environments, target or "all apps")


def promotion_rows(db: Database, period: Period, apps: list[str] | None, environment: str | None) -> list[PromotionRow]:
    """Every promotion of these apps (all when None) that was running in the period, with its release's
    creation time, when its verification last failed or it succeeded, and the first rejection naming it."""
    since, until = period.since.astimezone(UTC), period.until.astimezone(UTC)
    # anything the period holds (a request, a success, a failure) ended at or after `since`
    where: list[Any] = [
        col(Promotion.created_at) < until,
        or_(col(Promotion.ended_at).is_(None), col(Promotion.ended_at) >= since),
    ]
    if apps is not None:
        where.append(col(Promotion.app).in_(apps))
    if environment:
        where.append(Promotion.environment == environment)
    with db.session() as s:
        found = s.exec(
            select(Promotion, Release.built_at)
            .join(Release, col(Promotion.release_id) == col(Release.id))
            .where(*where)
            .order_by(col(Promotion.id))
        ).all()
        steps = s.exec(
            select(Step)
            .join(Promotion, col(Step.promotion_id) == col(Promotion.id))
            .where(*where, col(Step.name).in_(("verify", "finalize")))
            .order_by(col(Step.id))
        ).all()
        rejections = s.exec(
            select(Rejection)
            .join(Promotion, col(Rejection.promotion_id) == col(Promotion.id))
            .where(*where, col(Rejection.created_at) < until)
            .order_by(col(Rejection.id))
        ).all()
    last_verify: dict[int, Step] = {}
    finalized: dict[int, Step] = {}
    for step in steps:
        if step.name == "verify":
            last_verify[step.promotion_id] = step  # a transient failure retried is not a failed verification
        elif step.outcome == "succeeded":
            finalized.setdefault(step.promotion_id, step)
    rejected: dict[int, Rejection] = {}
    for rejection in rejections:
        if rejection.promotion_id is not None:
            rejected.setdefault(rejection.promotion_id, rejection)
    rows = []
    for promotion, built_at in found:
        assert promotion.id is not None
        verify, done, rejected_by = (
            last_verify.get(promotion.id),
            finalized.get(promotion.id),
            rejected.get(promotion.id),
        )
        rows.append(
            PromotionRow(
                id=promotion.id,
                app=promotion.app,
                environment=promotion.environment,
                kind=promotion.kind,
                release_id=promotion.release_id,
                requested_at=_utc(promotion.created_at),  # type: ignore[arg-type]
                bundle_id=promotion.bundle_id,
                rollback_of=promotion.rollback_of,
                built_at=_utc(built_at),
                succeeded_at=_utc(done.ended_at) if done else None,
                failed_verification_at=_utc(verify.ended_at) if verify and verify.outcome == "failed" else None,
                rejected_at=_utc(rejected_by.created_at) if rejected_by else None,
            )
        )
    return rows
