"""Step: open the promotion request on the forge: local, record it and publish its description; github, open
(or find) the pull request."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from promoflow import failpoints, releases
from promoflow.forges import local
from tasks._shared import project, run_url


@task(name="open-request", cache_policy=NO_CACHE)
def open_request(config: str, promotion_id: int) -> str:
    """Returns the request's description (markdown), shown in the UI and the approval form."""
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    release = db.get_release(promotion.release_id)
    env = p.config.environment(promotion.environment)
    forge = p.config.repository.forge
    assert promotion.request_branch and promotion.request_head
    with db.step(promotion_id, "open_request", forge=forge, branch=promotion.request_branch) as detail:
        diff = p.workspace.diff(env.branch, promotion.request_head)
        pins = releases.pins_of(release)
        description = local.describe(promotion, release, pins, promotion.request_branch, diff, run_url(promotion))
        if forge == "github":
            pull = p.github.open_request(
                promotion.request_branch,
                env.branch,
                local.title(promotion, release),
                description,
                ["promotion", f"env:{env.name}"],
                promotion.request_head,
            )
            detail.update(number=pull.number, url=pull.url, head=pull.head_sha, created=pull.created)
            description = f"Pull request: [#{pull.number}]({pull.url})\n\n{description}"
        create_markdown_artifact(
            key=f"promotion-{promotion_id}", markdown=description, description=local.title(promotion, release)
        )
    failpoints.hit("after-open-request")
    return description
