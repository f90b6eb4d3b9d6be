"""Symbolic links committed to an environment branch or a config source: promoflow never reads or writes through one
that leads out of the repository (it refuses, naming the file), and keeps following those that stay inside it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promoflow.clusters.render import render
from promoflow.errors import TerminalError
from promoflow.gitops.links import LinkLeavesRepository
from promoflow.gitops.manifests import ImagePin, pin_images
from tests.conftest import Sandbox
from tests.test_git_sources import CONFIG_ONLY, IDENTITY, ConfigRepo

REQUESTER = {"PROMOFLOW_USER": "rita"}
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\ndata: {secret: from-outside}\n"


def commit_to(sandbox: Sandbox, branch: str, change: Any) -> None:
    """`change(tree)` in a clone of `branch`, committed and pushed (links committed as links)."""
    tree = sandbox.base / "clone"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(sandbox.repo), str(tree)], check=True)
    change(tree)
    for args in (["add", "-A"], ["commit", "-qm", "a link"], ["push", "-q", "origin", branch]):
        subprocess.run(["git", "-C", str(tree), *args], check=True, env={**os.environ, **IDENTITY})


def errors(stderr: str) -> list[str]:
    """What the CLI said to the user (the rest of stderr is Prefect's run log)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def history(sandbox: Sandbox) -> list[dict[str, Any]]:
    data = sandbox.cli_json("history", "web")
    assert isinstance(data, list)
    return data


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every repository, holding what a hostile link would reach."""
    place = tmp_path / "outside"
    place.mkdir()
    return place


@pytest.mark.prefect
@pytest.mark.parametrize("link", ["file", "directory"])
def test_promote_refuses_a_link_leaving_the_repository_and_writes_nothing_outside(
    sandbox: Sandbox, outside: Path, link: str, prefect_api: str
) -> None:
    app = "apps/web"
    kustomization = sandbox.git("show", f"env/dev:{app}/kustomization.yaml")
    if link == "file":
        (outside / "kustomization.yaml").write_text(kustomization)
        named = f"{app}/kustomization.yaml"
    else:
        for name in ("kustomization.yaml", "deployment.yaml", "service.yaml"):
            (outside / name).write_text(sandbox.git("show", f"env/dev:{app}/{name}"))
        named = app

    def plant(tree: Path) -> None:
        target = tree / named
        if target.is_dir():
            subprocess.run(["git", "-C", str(tree), "rm", "-rq", named], check=True)
        else:
            target.unlink()
        target.parent.mkdir(exist_ok=True)  # git rm took the emptied apps/ away
        target.symlink_to(outside / "kustomization.yaml" if link == "file" else outside)

    commit_to(sandbox, "env/dev", plant)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    sandbox.publish("1.2.0")

    result = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert result.returncode == 1, result.stdout + result.stderr
    (said,) = errors(result.stderr)
    assert said.startswith(f"error: {named} is a symbolic link to {outside}") and "outside the repository" in said
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before  # nothing written through the link
    assert sandbox.git("branch", "--list", "promoflow/*") == ""
    (promotion,) = [p for p in history(sandbox) if p["kind"] == "promotion"]
    assert promotion["state"] == "failed" and "symbolic link" in promotion["error"]


def test_an_edit_writes_through_a_link_that_stays_inside_the_worktree(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "kustomization.yaml").write_text("images:\n  - name: shop/web\n    newTag: '1.0'\n")
    app = tmp_path / "apps" / "web"
    app.mkdir(parents=True)
    (app / "kustomization.yaml").symlink_to("../../shared/kustomization.yaml")
    pin = ImagePin("shop/web", "2.0", "sha256:" + "a" * 64)
    assert pin_images(app, [pin], tmp_path) == ["kustomization.yaml"]
    assert (app / "kustomization.yaml").is_symlink()
    assert "newTag: '2.0'" in (shared / "kustomization.yaml").read_text()


def kustomized_worktree(tree: Path) -> Path:
    """A worktree with an app rendered by kustomize from a base elsewhere in it, through a link that stays inside."""
    base = tree / "base"
    base.mkdir(parents=True)
    (base / "kustomization.yaml").write_text("resources: [config.yaml]\n")
    (base / "config.yaml").write_text(CONFIG_MAP.replace("outside", "inside"))
    app = tree / "apps" / "web"
    app.mkdir(parents=True)
    (app / "base").symlink_to("../../base")  # inside: fine
    (app / "kustomization.yaml").write_text("resources: [base]\nnamespace: web\n")
    return app


def test_render_follows_links_inside_the_worktree(tmp_path: Path) -> None:
    app = kustomized_worktree(tmp_path / "tree")
    [config] = render(app, tmp_path / "tree")
    assert config["metadata"] == {"name": "inside", "namespace": "web"}


@pytest.mark.parametrize("link", ["file", "directory"])
def test_render_refuses_a_link_leaving_the_worktree_before_kustomize_reads_it(
    tmp_path: Path, outside: Path, link: str
) -> None:
    tree = tmp_path / "tree"
    app = kustomized_worktree(tree)
    (outside / "config.yaml").write_text(CONFIG_MAP)
    (outside / "kustomization.yaml").write_text("resources: [config.yaml]\n")
    if link == "file":  # the base (not the app's own directory) reaches out: kustomize would read it
        (tree / "base" / "config.yaml").unlink()
        (tree / "base" / "config.yaml").symlink_to(outside / "config.yaml")
        named = "apps/web/base/config.yaml"  # found through the app's link to the base
    else:
        (app / "kustomization.yaml").write_text("resources: [base, extra]\n")
        (app / "extra").symlink_to(outside)
        named = "apps/web/extra"
    with pytest.raises(LinkLeavesRepository, match=f"^{named} is a symbolic link to {outside}") as refused:
        render(app, tree)
    assert "from-outside" not in str(refused.value)


@pytest.mark.parametrize("link", ["file", "directory"])
def test_render_of_a_plain_directory_refuses_links_leaving_it(tmp_path: Path, outside: Path, link: str) -> None:
    tree = tmp_path / "tree"
    (tree / "apps").mkdir(parents=True)
    (outside / "config.yaml").write_text(CONFIG_MAP)
    if link == "file":
        app = tree / "apps" / "web"
        app.mkdir()
        (app / "config.yaml").symlink_to(outside / "config.yaml")
        named = "apps/web/config.yaml"
    else:
        app = tree / "apps" / "web"
        app.symlink_to(outside)
        named = "apps/web"
    with pytest.raises(TerminalError, match=f"^{named} is a symbolic link to {outside}"):
        render(app, tree)


@pytest.mark.prefect
@pytest.mark.parametrize("link", ["file", "directory"])
def test_a_config_source_exporting_a_link_leaving_its_repository_is_refused(
    sandbox: Sandbox, outside: Path, link: str, prefect_api: str
) -> None:
    sandbox.config.write_text(CONFIG_ONLY)
    repo = ConfigRepo(sandbox.base / "config-src")
    (outside / "secret.yaml").write_text("token: from-outside\n")
    repo.commit("conf 1", {"deploy/conf/a.yaml": "a: 1\n"})
    if link == "file":
        (repo.path / "deploy/conf/secret.yaml").symlink_to(outside / "secret.yaml")
        named = "deploy/conf/secret.yaml"
    else:
        (repo.path / "deploy/conf/more").symlink_to(outside)
        named = "deploy/conf/more"
    commit = repo.commit("a link", {})
    before = sandbox.git("rev-parse", "env/dev")

    result = sandbox.cli("promote", "conf", "--to", "dev", env=REQUESTER)
    assert result.returncode == 1, result.stdout + result.stderr
    (said,) = errors(result.stderr)
    assert said.startswith(f"error: Commit {commit[:12]} of {sandbox.base / 'config-src'}: {named} is a symbolic link")
    assert "Traceback" not in result.stderr
    assert sandbox.git("rev-parse", "env/dev") == before
    assert sandbox.git("branch", "--list", "promoflow/*") == ""
