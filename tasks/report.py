"""Tell the forge how a promotion ended: the `promoflow/<env>` commit status on the merged commit and a comment
on the pull request when it failed or was rolled back. Local forge: nothing to tell (the records say it all)."""

from __future__ import annotations

from prefect import get_run_logger

from promoflow.errors import PromoflowError
from promoflow.forges.github import StatusState
from promoflow.project import Project
from tasks._shared import pull_request, run_url


def report(p: Project, promotion_id: int, state: StatusState, text: str, comment: bool) -> None:
    """Best effort: the promotion's outcome is already recorded; a GitHub outage must not change it."""
    if p.config.repository.forge != "github":
        return
    promotion = p.db.promotion(promotion_id)
    try:
        if promotion.merge_commit:
            context = f"promoflow/{promotion.environment}"
            p.github.set_commit_status(promotion.merge_commit, state, context, text, run_url(promotion))
        if comment:
            p.github.comment(pull_request(p.db, promotion_id), text)
    except PromoflowError as error:
        get_run_logger().warning("Could not report promotion %s on GitHub: %s", promotion_id, error)
