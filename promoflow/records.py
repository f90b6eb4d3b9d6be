"""The records: releases, promotions, steps, approvals, environment state.

SQLite in the state directory by default, PostgreSQL by URL. The schema is owned by
Alembic migrations (promoflow/migrations); `Database` upgrades it on first use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, Engine, event, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from promoflow.engine.states import ENDED
from promoflow.errors import NotFound
from promoflow.redact import redact

TERMINAL_STATES: frozenset[str] = frozenset(state.value for state in ENDED)


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo:
        return value
    return value.replace(tzinfo=UTC)


def _timestamp(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class Release(SQLModel, table=True):
    """An immutable bundle: every image of an app pinned by digest. The id is derived from the content."""

    id: str = Field(primary_key=True, max_length=64)
    app: str = Field(index=True, max_length=63)
    label: str = Field(max_length=255)
    images: str = Field(description="JSON list of {name, tag, digest}")
    origin: str = Field(max_length=255, description="where it was discovered")
    commit: str | None = Field(default=None, max_length=64, description="config commit of a git-sourced app")
    # When its content was made (the newest image config `created`, the config commit's time): where its
    # lead time starts. None when no part says so; `created_at` is when promoflow first recorded it.
    built_at: datetime | None = _timestamp(nullable=True)
    created_at: datetime = _timestamp()

    @property
    def display_name(self) -> str:
        return release_name(self.label, self.id)


def release_name(label: str, release_id: str) -> str:
    """A release as people read it, in tables and logs alike: `1.2.0 (129d4a6)`."""
    return f"{label} ({release_id[:7]})"


class Bundle(SQLModel, table=True):
    """A group's release: one release of every member app. The id is derived from the members' ids."""

    id: str = Field(primary_key=True, max_length=64)
    group: str = Field(index=True, max_length=63)
    label: str = Field(max_length=255)
    releases: str = Field(description="JSON object {app: release id}")
    origin: str = Field(max_length=255, description="where it was discovered")
    created_at: datetime = _timestamp()

    def members(self) -> dict[str, str]:
        return dict(json.loads(self.releases))


class Promotion(SQLModel, table=True):
    """One release into one environment; a rollback is a promotion with kind `rollback`."""

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(index=True, max_length=63)
    environment: str = Field(index=True, max_length=63)
    release_id: str = Field(foreign_key="release.id", max_length=64)
    kind: str = Field(default="promotion", max_length=16)
    state: str = Field(default="pending", max_length=32)
    requested_by: str = Field(max_length=255)
    reason: str = Field(default="", max_length=2000)
    rollback_of: int | None = Field(default=None, foreign_key="promotion.id")
    bundle_id: str | None = Field(default=None, foreign_key="bundle.id", max_length=64)
    # Holds "<app>/<environment>" while the promotion runs; unique, so only one runs at a time.
    slot: str | None = Field(default=None, unique=True, max_length=130)
    flow_run_id: str | None = Field(default=None, max_length=64)
    runner: str | None = Field(default=None, max_length=255, description="host:pid running it")
    request_branch: str | None = Field(default=None, max_length=255)
    request_head: str | None = Field(default=None, max_length=64)
    merge_commit: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None)
    waiting: str | None = Field(default=None, description="JSON of promoflow.engine.results.Waiting while it waits")
    # One of the environment's `override_by` let it through freezes and windows, or past environments its
    # release had not been through (a hotfix); `reason` says why.
    overridden_by: str | None = Field(default=None, max_length=255)
    override_freeze: bool = False
    skip_order: bool = False
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    ended_at: datetime | None = _timestamp(nullable=True)


class Step(SQLModel, table=True):
    """One attempt of one step: written as intent before the side effect, completed after."""

    id: int | None = Field(default=None, primary_key=True)
    promotion_id: int = Field(foreign_key="promotion.id", index=True)
    name: str = Field(max_length=64)
    attempt: int
    outcome: str = Field(default="running", max_length=16)
    detail: str = Field(default="{}")
    error: str | None = Field(default=None)
    started_at: datetime = _timestamp()
    ended_at: datetime | None = _timestamp(nullable=True)
    duration_seconds: float | None = None


class Approval(SQLModel, table=True):
    """Every decision anyone made on a promotion, counted or not, with why."""

    id: int | None = Field(default=None, primary_key=True)
    promotion_id: int = Field(foreign_key="promotion.id", index=True)
    approver: str = Field(max_length=255)
    decision: str = Field(max_length=16)
    source: str = Field(max_length=16)
    comment: str = Field(default="", max_length=2000)
    # None while a CLI decision travels to the waiting flow; then whether the policy counted it.
    counted: bool | None = None
    reason: str = Field(default="", max_length=500)
    created_at: datetime = _timestamp()


class EnvironmentState(SQLModel, table=True):
    """What runs where, since when, and the last release verified there."""

    app: str = Field(primary_key=True, max_length=63)
    environment: str = Field(primary_key=True, max_length=63)
    current_release: str | None = Field(default=None, max_length=64)
    current_promotion: int | None = None
    since: datetime | None = _timestamp(nullable=True)
    last_known_good: str | None = Field(default=None, max_length=64)
    verified_at: datetime | None = _timestamp(nullable=True)


class Rejection(SQLModel, table=True):
    """A release that automation must not promote into an environment again until cleared."""

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(max_length=63)
    environment: str = Field(max_length=63)
    release_id: str = Field(max_length=64)
    reason: str = Field(default="", max_length=2000)
    promotion_id: int | None = None
    created_at: datetime = _timestamp()
    cleared_at: datetime | None = _timestamp(nullable=True)


class MetricSample(SQLModel, table=True):
    """One look of an app's metric check at its environment's Prometheus while a promotion was verified there."""

    id: int | None = Field(default=None, primary_key=True)
    promotion_id: int = Field(foreign_key="promotion.id", index=True)
    check_name: str = Field(max_length=63)
    query: str = Field(description="the PromQL sent, placeholders filled in")
    threshold: str = Field(max_length=255, description="as the check said it: `max 0.01`, `min 5`")
    value: float | None = Field(default=None, description="None: no data, or Prometheus did not answer")
    outcome: str = Field(max_length=16, description="pass, fail, no_data, or error (Prometheus did not answer)")
    message: str = Field(default="", max_length=2000, description="why a look is an error")
    taken_at: datetime = _timestamp()


class Freeze(SQLModel, table=True):
    """An environment frozen from the command line (`promoflow freeze`): by whom, since when, until when, why;
    and who lifted it when (`promoflow unfreeze`)."""

    id: int | None = Field(default=None, primary_key=True)
    environment: str = Field(index=True, max_length=63)
    reason: str = Field(max_length=500)
    frozen_by: str = Field(max_length=255)
    since: datetime = _timestamp()
    until: datetime | None = _timestamp(nullable=True)
    lifted_by: str | None = Field(default=None, max_length=255)
    lifted_at: datetime | None = _timestamp(nullable=True)

    def holds(self, at: datetime) -> bool:
        """Whether it holds promotions at `at`."""
        since, until, lifted = _utc(self.since), _utc(self.until), _utc(self.lifted_at)
        return since is not None and since <= at and all(t is None or at < t for t in (until, lifted))


class Database:
    """A handle on the records; cheap to create, one engine per URL per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # -- releases -----------------------------------------------------------------------------
    def save_release(self, release: Release) -> tuple[Release, bool]:
        """Insert once: discovering the same content again yields the same row. Also says whether this call
        recorded it (a watch hands a release on only then: two watches at once must not both)."""
        with self.session() as s:
            existing = s.get(Release, release.id)
            if existing:
                return existing, False
            release.created_at = now()
            s.add(release)
            try:
                s.commit()
            except IntegrityError:  # a concurrent discovery won
                s.rollback()
                found = s.get(Release, release.id)
                assert found is not None
                return found, False
            return release, True

    def known_releases(self, ids: list[str]) -> set[str]:
        """Which of these release ids are recorded (one query for a whole watch cycle)."""
        if not ids:
            return set()
        with self.session() as s:
            return set(s.exec(select(Release.id).where(col(Release.id).in_(ids))).all())

    def release(self, app: str, ref: str) -> Release | None:
        """A release by id, id prefix (at least 6 characters) or label."""
        with self.session() as s:
            exact = s.get(Release, ref)
            if exact and exact.app == app:
                return exact
            rows = s.exec(select(Release).where(Release.app == app)).all()
        by_label = [r for r in rows if r.label == ref]
        if by_label:
            return by_label[0]
        by_prefix = [r for r in rows if len(ref) >= 6 and r.id.startswith(ref)]
        return by_prefix[0] if len(by_prefix) == 1 else None

    def get_release(self, release_id: str) -> Release:
        with self.session() as s:
            found = s.get(Release, release_id)
        if not found:
            raise NotFound(f"Release {release_id} is not in the records.")
        return found

    # -- bundles ------------------------------------------------------------------------------
    def save_bundle(self, bundle: Bundle) -> tuple[Bundle, bool]:
        """Insert once; also says whether this call recorded it (a watch hands a bundle on only then)."""
        with self.session() as s:
            existing = s.get(Bundle, bundle.id)
            if existing:
                return existing, False
            bundle.created_at = now()
            s.add(bundle)
            try:
                s.commit()
            except IntegrityError:  # a concurrent discovery won
                s.rollback()
                found = s.get(Bundle, bundle.id)
                assert found is not None
                return found, False
            return bundle, True

    def bundle(self, group: str, ref: str) -> Bundle | None:
        """A bundle by id, id prefix (at least 6 characters) or label."""
        with self.session() as s:
            exact = s.get(Bundle, ref)
            if exact and exact.group == group:
                return exact
            rows = s.exec(select(Bundle).where(Bundle.group == group).order_by(col(Bundle.created_at).desc())).all()
        by_label = [b for b in rows if b.label == ref]
        if by_label:
            return by_label[0]
        by_prefix = [b for b in rows if len(ref) >= 6 and b.id.startswith(ref)]
        return by_prefix[0] if len(by_prefix) == 1 else None

    def bundles(self, group: str) -> list[Bundle]:
        """A group's bundles, newest first."""
        with self.session() as s:
            query = select(Bundle).where(Bundle.group == group).order_by(col(Bundle.created_at).desc())
            return list(s.exec(query).all())

    def get_bundle(self, bundle_id: str) -> Bundle:
        with self.session() as s:
            found = s.get(Bundle, bundle_id)
        if not found:
            raise NotFound(f"Bundle {bundle_id} is not in the records.")
        return found

    # -- promotions ---------------------------------------------------------------------------
    def promotion(self, promotion_id: int) -> Promotion:
        with self.session() as s:
            found = s.get(Promotion, promotion_id)
        if not found:
            raise NotFound(f"There is no promotion {promotion_id}: `promoflow history` lists them.")
        return found

    def open_promotion(self, app: str, environment: str, release_id: str) -> Promotion | None:
        """The unfinished promotion of this release into this environment, to resume after a crash."""
        with self.session() as s:
            return s.exec(
                select(Promotion)
                .where(Promotion.app == app, Promotion.environment == environment)
                .where(Promotion.release_id == release_id)
                .where(col(Promotion.state).not_in(TERMINAL_STATES))
                .order_by(col(Promotion.id).desc())
            ).first()

    def create_promotion(self, promotion: Promotion) -> Promotion:
        promotion.created_at = promotion.updated_at = now()
        with self.session() as s:
            s.add(promotion)
            s.commit()
            s.refresh(promotion)
        return promotion

    def update_promotion(self, promotion_id: int, **changes: Any) -> Promotion:
        with self.session() as s:
            row = s.get(Promotion, promotion_id)
            if row is None:
                raise NotFound(f"There is no promotion {promotion_id}.")
            if "error" in changes and changes["error"] is not None:
                changes["error"] = redact(changes["error"])
            if row.state in TERMINAL_STATES and changes.get("state", row.state) not in TERMINAL_STATES:
                del changes["state"]  # an ended promotion stays ended (a rollback may have superseded it meanwhile)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = now()
            if changes.get("state") in TERMINAL_STATES:
                row.ended_at = row.updated_at
                row.slot = None
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def merging(self, app: str, environment: str) -> Promotion | None:
        """The unfinished promotion of `app` into `environment` whose merge began and is not recorded as done: the
        environment's branch may already hold its release (a run that ended inside the merge, until a re-run)."""
        with self.session() as s:
            row = s.exec(
                select(Promotion)
                .join(Step, col(Step.promotion_id) == col(Promotion.id))
                .where(Promotion.app == app, Promotion.environment == environment, Step.name == "merge")
                .where(col(Promotion.state).not_in(TERMINAL_STATES))
                .order_by(col(Step.id).desc())
            ).first()
        merge = self.last_step(row.id, "merge") if row and row.id is not None else None
        return row if merge is not None and merge.outcome != "succeeded" else None

    def try_claim_slot(self, promotion_id: int, app: str, environment: str) -> Promotion | None:
        """Take the app/environment slot for this promotion; return the holder if someone else has it."""
        slot = f"{app}/{environment}"
        with self.session() as s:
            holder = s.exec(select(Promotion).where(Promotion.slot == slot)).first()
            if holder and holder.id != promotion_id:
                return holder
            if holder:
                return None
            row = s.get(Promotion, promotion_id)
            assert row is not None
            row.slot = slot
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # lost the race: the unique slot decides
                s.rollback()
                return s.exec(select(Promotion).where(Promotion.slot == slot)).first()
        return None

    def claim_promotions(self, flow_run_id: str, runner: str) -> None:
        """The process `runner` now runs the flow run `flow_run_id` (woken, or started to carry its promotions on):
        it runs the unfinished promotions that name the run."""
        left: list[tuple[int, str]] = []  # promotions another process ran before it ended
        with self.session() as s:
            query = select(Promotion).where(Promotion.flow_run_id == flow_run_id)
            for row in s.exec(query.where(col(Promotion.state).not_in(TERMINAL_STATES))):
                if row.runner and row.runner != runner and row.id is not None:
                    left.append((row.id, row.runner))
                row.runner, row.updated_at = runner, now()
                s.add(row)
            s.commit()
        for promotion_id, before in left:
            self.interrupt_steps(promotion_id, f"the process running it ({before}) ended first")

    def active_promotions(self) -> list[Promotion]:
        """Every promotion that has not ended, oldest first."""
        with self.session() as s:
            query = select(Promotion).where(col(Promotion.state).not_in(TERMINAL_STATES)).order_by(col(Promotion.id))
            return list(s.exec(query).all())

    def promotions(
        self,
        app: str | list[str] | None = None,
        environment: str | None = None,
        limit: int = 100,
    ) -> list[Promotion]:
        """The newest promotions first, of one app or of any of a list of apps (a group's members)."""
        query = select(Promotion).order_by(col(Promotion.id).desc()).limit(limit)
        if isinstance(app, list):
            query = query.where(col(Promotion.app).in_(app))
        elif app:
            query = query.where(Promotion.app == app)
        if environment:
            query = query.where(Promotion.environment == environment)
        with self.session() as s:
            return list(s.exec(query).all())

    # -- steps --------------------------------------------------------------------------------
    @contextmanager
    def step(self, promotion_id: int, name: str, **detail: Any) -> Iterator[dict[str, Any]]:
        """Record the intent, run the body, record the outcome (the yielded dict becomes the detail)."""
        info: dict[str, Any] = dict(detail)
        started = time.monotonic()
        with self.session() as s:
            attempt = s.exec(select(func.count()).where(Step.promotion_id == promotion_id, Step.name == name)).one() + 1
            row = Step(
                promotion_id=promotion_id,
                name=name,
                attempt=attempt,
                detail=json.dumps(info, default=str),
                started_at=now(),
            )
            s.add(row)
            s.commit()
            s.refresh(row)
        try:
            yield info
        except BaseException as error:
            self._end_step(row, "failed", info, started, redact(str(error) or type(error).__name__))
            raise
        self._end_step(row, "succeeded", info, started, None)

    def _end_step(self, row: Step, outcome: str, info: dict[str, Any], started: float, error: str | None) -> None:
        with self.session() as s:
            row.outcome = outcome
            row.detail = redact(json.dumps(info, default=str))
            row.error = error
            row.ended_at = now()
            row.duration_seconds = round(time.monotonic() - started, 3)
            s.add(row)
            s.commit()

    def begin_step(self, promotion_id: int, name: str, at: datetime | None = None) -> Step:
        """The intent to run a step (`at`: now): its open waiting record if it was waiting, else a new attempt."""
        with self.session() as s:
            last = s.exec(
                select(Step).where(Step.promotion_id == promotion_id, Step.name == name).order_by(col(Step.id).desc())
            ).first()
            if last is not None and last.outcome == "waiting":
                last.started_at = _utc(last.started_at)  # type: ignore[assignment]
                return last
            if last is not None and last.outcome == "running":  # its process died in it: this is a new attempt
                last.outcome, last.error, last.ended_at = "interrupted", "the process running it ended", now()
                s.add(last)
            row = Step(
                promotion_id=promotion_id,
                name=name,
                attempt=(last.attempt if last else 0) + 1,
                started_at=at or now(),
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            row.started_at = _utc(row.started_at)  # type: ignore[assignment]
            return row

    def wait_step(self, row: Step, detail: dict[str, Any]) -> None:
        """The step waits: its record stays open, with what it waits for."""
        with self.session() as s:
            row.outcome = "waiting"
            row.detail = redact(json.dumps(detail, default=str))
            s.add(row)
            s.commit()

    def end_step(self, row: Step, outcome: str, detail: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.session() as s:
            row.outcome = outcome
            if detail is not None:
                row.detail = redact(json.dumps(detail, default=str))
            row.error = redact(error) if error else None
            row.ended_at = now()
            started = _utc(row.started_at)
            row.duration_seconds = round((row.ended_at - started).total_seconds(), 3) if started else None
            s.add(row)
            s.commit()

    def interrupt_steps(self, promotion_id: int, why: str, outcomes: tuple[str, ...] = ("running",)) -> None:
        """Close the steps a process left running when it ended (and, given `waiting` among `outcomes`, those
        waiting when the promotion ended): their outcome is `interrupted`."""
        with self.session() as s:
            for row in s.exec(select(Step).where(Step.promotion_id == promotion_id, col(Step.outcome).in_(outcomes))):
                row.outcome, row.error, row.ended_at = "interrupted", why, now()
                s.add(row)
            s.commit()

    def steps(self, promotion_id: int) -> list[Step]:
        with self.session() as s:
            return list(s.exec(select(Step).where(Step.promotion_id == promotion_id).order_by(col(Step.id))).all())

    def last_step(self, promotion_id: int, name: str) -> Step | None:
        with self.session() as s:
            return s.exec(
                select(Step).where(Step.promotion_id == promotion_id, Step.name == name).order_by(col(Step.id).desc())
            ).first()

    def last_outcome(self, app: str, environment: str, name: str) -> dict[str, Any] | None:
        """The detail of the newest succeeded `name` step of any promotion of this app into this environment."""
        with self.session() as s:
            row = s.exec(
                select(Step)
                .join(Promotion, col(Step.promotion_id) == col(Promotion.id))
                .where(Promotion.app == app, Promotion.environment == environment)
                .where(Step.name == name, Step.outcome == "succeeded")
                .order_by(col(Step.id).desc())
            ).first()
        return json.loads(row.detail) if row else None

    # -- approvals ----------------------------------------------------------------------------
    def add_approval(self, approval: Approval) -> Approval:
        approval.created_at = now()
        with self.session() as s:
            s.add(approval)
            s.commit()
            s.refresh(approval)
        return approval

    def update_approval(self, approval_id: int, counted: bool, reason: str) -> None:
        with self.session() as s:
            row = s.get(Approval, approval_id)
            assert row is not None
            row.counted, row.reason = counted, reason
            s.add(row)
            s.commit()

    def pending_approval(self, promotion_id: int, approver: str, decision: str) -> Approval | None:
        """A CLI decision on its way to the waiting flow (sent, not yet evaluated)."""
        with self.session() as s:
            return s.exec(
                select(Approval)
                .where(Approval.promotion_id == promotion_id, Approval.approver == approver)
                .where(Approval.decision == decision, col(Approval.counted).is_(None))
                .order_by(col(Approval.id))
            ).first()

    def approvals(self, promotion_id: int) -> list[Approval]:
        with self.session() as s:
            return list(
                s.exec(select(Approval).where(Approval.promotion_id == promotion_id).order_by(col(Approval.id))).all()
            )

    def request_approvals(self, promotion: Promotion) -> list[Approval]:
        """The decisions on the promotion's request: its own, and, when its bundle shares one request, those
        recorded on the other members' promotions of it."""
        if promotion.bundle_id is None or promotion.request_branch is None:
            assert promotion.id is not None
            return self.approvals(promotion.id)
        with self.session() as s:
            return list(
                s.exec(
                    select(Approval)
                    .join(Promotion, col(Approval.promotion_id) == col(Promotion.id))
                    .where(Promotion.bundle_id == promotion.bundle_id, Promotion.environment == promotion.environment)
                    .where(Promotion.request_branch == promotion.request_branch)
                    .order_by(col(Approval.id))
                ).all()
            )

    # -- metric samples -----------------------------------------------------------------------
    def add_metric_sample(self, sample: MetricSample) -> MetricSample:
        sample.query, sample.message = redact(sample.query), redact(sample.message)[:2000]
        with self.session() as s:
            s.add(sample)
            s.commit()
            s.refresh(sample)
        sample.taken_at = _utc(sample.taken_at)  # type: ignore[assignment]
        return sample

    def metric_samples(self, promotion_id: int) -> list[MetricSample]:
        """A promotion's looks at its metric checks, oldest first."""
        with self.session() as s:
            rows = list(
                s.exec(
                    select(MetricSample).where(MetricSample.promotion_id == promotion_id).order_by(col(MetricSample.id))
                ).all()
            )
        for row in rows:
            row.taken_at = _utc(row.taken_at)  # type: ignore[assignment]
        return rows

    # -- environment state ------------------------------------------------------------------
    def environment_state(self, app: str, environment: str) -> EnvironmentState | None:
        with self.session() as s:
            return s.get(EnvironmentState, (app, environment))

    def environment_states(self) -> list[EnvironmentState]:
        with self.session() as s:
            return list(s.exec(select(EnvironmentState)).all())

    def set_current(self, app: str, environment: str, release_id: str, promotion_id: int | None) -> None:
        with self.session() as s:
            row = s.get(EnvironmentState, (app, environment)) or EnvironmentState(app=app, environment=environment)
            row.current_release, row.current_promotion, row.since = release_id, promotion_id, now()
            s.add(row)
            s.commit()

    def set_known_good(self, app: str, environment: str, release_id: str) -> None:
        with self.session() as s:
            row = s.get(EnvironmentState, (app, environment))
            assert row is not None
            row.last_known_good, row.verified_at = release_id, now()
            s.add(row)
            s.commit()

    def rollback_target(self, app: str, environment: str) -> str | None:
        """The newest release verified in this environment other than the current one, not rejected."""
        state = self.environment_state(app, environment)
        current = state.current_release if state else None
        rejected = self.rejected(app, environment)
        with self.session() as s:
            rows = s.exec(
                select(Promotion)
                .where(Promotion.app == app, Promotion.environment == environment)
                .where(Promotion.state == "succeeded")
                # by when each became good: a baseline is adopted inside the first promotion, so ids mislead
                .order_by(col(Promotion.ended_at).desc(), col(Promotion.id).desc())
            ).all()
        for row in rows:
            if row.release_id != current and row.release_id not in rejected:
                return row.release_id
        return None

    # -- rejections ---------------------------------------------------------------------------
    def reject_release(
        self, app: str, environment: str, release_id: str, reason: str, promotion_id: int | None
    ) -> None:
        if release_id in self.rejected(app, environment):
            return
        with self.session() as s:
            s.add(
                Rejection(
                    app=app,
                    environment=environment,
                    release_id=release_id,
                    reason=reason,
                    promotion_id=promotion_id,
                    created_at=now(),
                )
            )
            s.commit()

    def rejected(self, app: str, environment: str) -> dict[str, Rejection]:
        with self.session() as s:
            rows = s.exec(
                select(Rejection)
                .where(Rejection.app == app, Rejection.environment == environment)
                .where(col(Rejection.cleared_at).is_(None))
            ).all()
        return {r.release_id: r for r in rows}

    def clear_rejection(self, app: str, environment: str, release_id: str) -> bool:
        with self.session() as s:
            rows = s.exec(
                select(Rejection)
                .where(Rejection.app == app, Rejection.environment == environment)
                .where(Rejection.release_id == release_id, col(Rejection.cleared_at).is_(None))
            ).all()
            for row in rows:
                row.cleared_at = now()
                s.add(row)
            s.commit()
        return bool(rows)

    # -- freezes -----------------------------------------------------------------------------
    def freeze(self, freeze: Freeze) -> Freeze:
        with self.session() as s:
            s.add(freeze)
            s.commit()
            s.refresh(freeze)
        return freeze

    def freezes(self, environment: str | None = None, at: datetime | None = None) -> list[Freeze]:
        """The freezes of one environment (or all), oldest first; with `at`, those holding promotions then."""
        query = select(Freeze).order_by(col(Freeze.id))
        if environment is not None:
            query = query.where(Freeze.environment == environment)
        with self.session() as s:
            rows = list(s.exec(query).all())
        return [f for f in rows if at is None or f.holds(at)]

    def lift_freezes(self, environment: str, by: str, at: datetime) -> list[Freeze]:
        """End the freezes holding `environment` at `at`, recording who lifted them; returns them."""
        with self.session() as s:
            rows = [f for f in s.exec(select(Freeze).where(Freeze.environment == environment)) if f.holds(at)]
            for row in rows:
                row.lifted_by, row.lifted_at = by, at
                s.add(row)
            s.commit()
            for row in rows:
                s.refresh(row)
        return rows


def as_dict(row: SQLModel) -> dict[str, Any]:
    """A record as JSON-ready data (UTC ISO timestamps)."""
    data = row.model_dump()
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = _utc(value).isoformat()  # type: ignore[union-attr]
    return data


@cache
def _engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _migrate(engine)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; wait for a busy database rather than fail.
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    # Two processes meeting a new database must not both create the tables: SQLite takes a lock file
    # beside the database, PostgreSQL an advisory lock in the migration's transaction. The upgrade starts
    # from the revision it finds once it holds the lock.
    with _sqlite_lock(engine):
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # WAL lets the CLI read while a flow writes; it is kept in the file. Switching needs
                # the database to itself, hence here, under the lock, rather than on every connect.
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            if MigrationContext.configure(connection).get_current_revision() == head:
                return
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(7261001)"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


@contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database:
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
