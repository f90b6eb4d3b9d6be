"""Step: cut the promotion branch from the environment branch with only the image references changed."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow import releases
from promoflow.errors import TerminalError
from promoflow.forges import local
from promoflow.gitops.manifests import ManifestError, pin_images
from promoflow.promotion import request_branch
from tasks._shared import project


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(config: str, promotion_id: int) -> list[str]:
    """Returns the files changed; empty when the environment already runs this release."""
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    release = db.get_release(promotion.release_id)
    app = p.config.app(promotion.app)
    env = p.config.environment(promotion.environment)
    pins = releases.pins_of(release)
    branch = request_branch(promotion, release)

    def edit(tree: Path) -> list[str]:
        if not (tree / app.path).is_dir():
            raise TerminalError(
                f"App {app.name}'s path {app.path} does not exist in branch {env.branch}: "
                "fix the app's path in promotions.yaml or add the manifests there."
            )
        try:
            return [f"{app.path}/{name}" for name in pin_images(tree / app.path, pins)]
        except ManifestError as error:  # name files as `branch:path`, not by the throwaway worktree
            raise ManifestError(str(error).replace(f"{tree}/", f"{env.branch}:")) from None

    with db.step(promotion_id, "prepare", branch=branch, base=env.branch) as detail:
        change = p.workspace.prepare(env.branch, branch, edit, local.commit_message(promotion, release, pins))
        detail.update(head=change.head, files=list(change.files), reused=not change.created)
    if change.files:
        db.update_promotion(promotion_id, request_branch=branch, request_head=change.head)
    return list(change.files)
