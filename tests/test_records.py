"""The records on SQLite and on a real PostgreSQL: migrations, step intent/outcome, the slot, rejections."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from promoflow.records import Approval, Database, Promotion, Release


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'records.db'}")
    return Database(request.getfixturevalue("postgres_url"))


def _promotion(db: Database, release: str = "r1", env: str = "dev") -> int:
    db.save_release(Release(id=release, app="web", label=release, images="[]", origin="test"))
    created = db.create_promotion(Promotion(app="web", environment=env, release_id=release, requested_by="rita"))
    assert created.id is not None
    return created.id


def test_migrations_build_exactly_the_models_schema(db: Database) -> None:
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_a_step_records_its_intent_before_and_its_outcome_after(db: Database) -> None:
    pid = _promotion(db)
    with db.step(pid, "merge", into="env/dev") as detail:
        (during,) = db.steps(pid)
        assert (during.outcome, during.ended_at) == ("running", None)
        detail["merge_commit"] = "abc"
    (after,) = db.steps(pid)
    assert after.outcome == "succeeded" and after.attempt == 1
    assert after.duration_seconds is not None and after.ended_at is not None
    assert '"merge_commit": "abc"' in after.detail

    with pytest.raises(RuntimeError), db.step(pid, "merge"):
        raise RuntimeError("push to https://bot:s3cr3t-token@git.example.com/x.git failed")
    failed = db.steps(pid)[-1]
    assert (failed.attempt, failed.outcome) == (2, "failed")
    assert failed.error is not None and "s3cr3t" not in failed.error and "***@git.example.com" in failed.error


def test_only_one_promotion_holds_an_app_environment_slot(db: Database) -> None:
    contenders = [_promotion(db, f"r{i}") for i in range(6)]
    results: dict[int, object] = {}

    def claim(pid: int) -> None:
        results[pid] = db.try_claim_slot(pid, "web", "dev")

    threads = [threading.Thread(target=claim, args=(pid,)) for pid in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [pid for pid, holder in results.items() if holder is None]
    assert len(winners) == 1
    assert all(holder.id == winners[0] for holder in results.values() if holder is not None)  # type: ignore[attr-defined]
    assert db.try_claim_slot(winners[0], "web", "dev") is None  # re-entrant: a re-run keeps its slot

    db.update_promotion(winners[0], state="succeeded")  # a terminal state frees the slot
    assert db.try_claim_slot(contenders[-1] if winners[0] != contenders[-1] else contenders[0], "web", "dev") is None


def test_rollback_target_skips_the_current_and_rejected_releases(db: Database) -> None:
    for release in ("r1", "r2", "r3"):
        pid = _promotion(db, release)
        db.update_promotion(pid, state="succeeded")
        db.set_current("web", "dev", release, pid)
    assert db.rollback_target("web", "dev") == "r2"
    db.reject_release("web", "dev", "r2", "broken", None)
    assert db.rollback_target("web", "dev") == "r1"
    assert db.clear_rejection("web", "dev", "r2") and db.rollback_target("web", "dev") == "r2"


def test_a_cli_decision_waits_for_the_flow_to_judge_it(db: Database) -> None:
    pid = _promotion(db)
    sent = db.add_approval(Approval(promotion_id=pid, approver="carl", decision="approve", source="cli"))
    assert db.pending_approval(pid, "carl", "approve") == sent
    assert sent.id is not None
    db.update_approval(sent.id, True, "counted")
    assert db.pending_approval(pid, "carl", "approve") is None


def test_the_rollback_target_is_the_release_that_was_good_most_recently(db: Database) -> None:
    first = _promotion(db, "r2")  # created first...
    baseline = _promotion(db, "r1")  # ...the baseline is adopted while it runs, so it has the higher id
    db.update_promotion(baseline, state="succeeded")
    db.update_promotion(first, state="succeeded")  # r2 became good after r1
    third = _promotion(db, "r3")
    db.update_promotion(third, state="succeeded")
    db.set_current("web", "dev", "r3", third)
    assert db.rollback_target("web", "dev") == "r2"


def test_processes_meeting_a_new_sqlite_database_migrate_it_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"from promoflow.records import Database; Database({url!r}).promotions()"
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    failures = [p.communicate()[1] for p in processes if p.wait() != 0]
    assert failures == []
