"""What keeps a release out of an environment for now: freezes (planned in promotions.yaml, or from `promoflow
freeze`), windows and soak time; who may override them; and which release a scheduled tick would promote. Reads
of the config and the records at a given moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from promoflow.approvals import same_person
from promoflow.config import Environment
from promoflow.errors import TerminalError
from promoflow.project import Project
from promoflow.records import Release, _utc

PLANNED = "promotions.yaml"


@dataclass(frozen=True)
class ActiveFreeze:
    environment: str
    reason: str
    since: datetime
    until: datetime | None  # None: until someone lifts it
    by: str  # who froze it; `promotions.yaml` for a planned freeze
    id: int | None = None  # a freeze from the command line, in the records

    def describe(self) -> str:
        """`year-end (promotions.yaml, until 2027-01-04 00:00 UTC)`."""
        end = f"until {stamp(self.until)}" if self.until else "until lifted"
        return f"{self.reason} ({self.by}, {end})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "by": self.by,
            "source": PLANNED if self.id is None else "promoflow freeze",
        }


def stamp(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def freezes(project: Project, environment: str, at: datetime) -> list[ActiveFreeze]:
    """The freezes holding promotions into `environment` at `at`: planned ones first, then the command line's."""
    planned = [
        ActiveFreeze(f.environment, f.reason, f.start.astimezone(UTC), f.end.astimezone(UTC), PLANNED)
        for f in project.config.freezes
        if f.environment == environment and f.start <= at < f.end
    ]
    recorded = [
        ActiveFreeze(f.environment, f.reason, _utc(f.since), _utc(f.until), f.frozen_by, f.id)  # type: ignore[arg-type]
        for f in project.db.freezes(environment, at)
    ]
    return planned + recorded


def good_since(project: Project, app: str, environment: str, release_id: str) -> datetime | None:
    """Since when `release_id` of `app` has been good in `environment`: when its first promotion there that is still
    good (not failed, not rolled back) succeeded; None if none did."""
    ended = [
        _utc(p.ended_at)
        for p in project.db.promotions(app, environment, limit=1000)
        if p.release_id == release_id and p.state == "succeeded" and p.ended_at is not None
    ]
    return min(e for e in ended if e is not None) if ended else None


def thaw(active: list[ActiveFreeze]) -> datetime | None:
    """When every one of `active` has ended by itself; None if one lasts until lifted."""
    ends = [f.until for f in active]
    return None if any(end is None for end in ends) else max(e for e in ends if e is not None)


def may_override(env: Environment, who: str) -> bool:
    return any(same_person(who, person) for person in env.override_by)


def check_override(env: Environment, who: str, reason: str, what: str) -> None:
    """Refuse, with what to do, an override (`what`: `--override-freeze`, `--skip-order`) that `who` may not give,
    or gives no reason for."""
    if not may_override(env, who):
        allowed = ", ".join(env.override_by) or "nobody (set `override_by` on the environment in promotions.yaml)"
        raise TerminalError(f"{who} may not promote into {env.name} with {what}: allowed are {allowed}.")
    if not reason.strip():
        raise TerminalError(f"{what} needs a reason: add --reason TEXT (it is kept in the records).")


def eligible(project: Project, app: str, environment: str, at: datetime) -> tuple[Release | None, str]:
    """The release a scheduled tick promotes into `environment` at `at`: of the releases that succeeded in the
    environment before and came after the one running here (later to be good there), never ran here and are not
    rejected here, the latest to be good there, soaked as `verified_for` asks; in the first environment, the
    newest the tag policy allows. None with the reason when there is nothing to do."""
    from promoflow.engine.states import PromotionState
    from promoflow.promotion import newest_allowed

    db, config = project.db, project.config
    env = config.environment(environment)
    here = db.promotions(app, environment, limit=1000)
    busy = [p for p in here if not PromotionState(p.state).ended]
    if busy:
        return None, f"promotion {busy[-1].id} of {app} into {environment} has not finished"
    state = db.environment_state(app, environment)
    current = state.current_release if state else None
    previous = config.previous(app, environment)
    if previous is None:
        release, _ = newest_allowed(project, config.app(app), environment, "schedule")
        if release.id == current:
            return None, f"{app} runs {release.display_name} in {environment}: nothing newer"
        return release, f"{release.display_name} of {app} into {environment}"
    ran = {p.release_id for p in here if p.state in ("succeeded", "rolled_back")} | {current}
    good = {p.release_id for p in db.promotions(app, previous.name, limit=1000) if p.state == "succeeded"}
    since = {r: good_since(project, app, previous.name, r) for r in good}
    floor = since.get(current or "") or datetime.min.replace(tzinfo=UTC)
    newer = sorted(
        (r for r in good - ran - set(db.rejected(app, environment)) if (since[r] or floor) > floor),
        key=lambda r: since[r] or floor,
        reverse=True,
    )
    if not newer:
        return None, f"{app} has no release newer than {environment}'s that succeeded in {previous.name}"
    soaking = []
    for release_id in newer:  # the latest to be good there first
        release, soaked = db.get_release(release_id), (since[release_id] or floor) + (env.verified_for or timedelta(0))
        if soaked <= at:
            return release, f"{release.display_name} of {app} into {environment}"
        soaking.append(f"{release.display_name} soaks in {previous.name} until {stamp(soaked)}")
    return None, "; ".join(soaking)
