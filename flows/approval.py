"""Decisions on waiting promotions from the Prefect UI: the approval form of a paused or suspended run (Resume),
recorded by promoflow.decisions as the CLI's `approve` / `reject` are."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from promoflow import decisions
from promoflow.config import ApprovalPolicy
from promoflow.project import Project
from promoflow.records import Approval


class ApprovalForm(RunInput):
    """The form a person fills in on the paused run (Prefect UI: Resume)."""

    decision: Literal["approve", "reject"] = Field("approve", description="Approve or reject the promotion.")
    approver: str = Field(description="Your name, as listed in the environment's approvers.")
    comment: str = Field("", description="Why (kept in the records).")


def receive(
    project: Project, promotion_id: int, policy: ApprovalPolicy, approver: str, decision: str, comment: str
) -> Approval:
    """Record a decision from the UI's form, counted or not as the policy says."""
    return decisions.record(project, promotion_id, approver, decision, comment, "ui")
