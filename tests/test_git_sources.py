"""Git config sources and group bundles, end to end through the real flows, git repositories and Prefect."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promoflow.config import ConfigSource
from promoflow.sources.git import counts, glob_regex
from tests.conftest import Sandbox

REQUESTER = {"PROMOFLOW_USER": "rita"}
IDENTITY = {
    "GIT_AUTHOR_NAME": "dev",
    "GIT_AUTHOR_EMAIL": "dev@x",
    "GIT_COMMITTER_NAME": "dev",
    "GIT_COMMITTER_EMAIL": "dev@x",
}


class ConfigRepo:
    """A real git repository where people commit an app's config."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "--quiet", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **IDENTITY},
        ).stdout.strip()

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        """Write (or, for None, delete) files, commit, return the commit id."""
        for name, text in files.items():
            path = self.path / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")


def env_files(sandbox: Sandbox, branch: str, path: str) -> dict[str, str]:
    names = sandbox.git("ls-tree", "-r", "--name-only", branch, "--", path).split()
    return {name.removeprefix(path + "/"): sandbox.git("show", f"{branch}:{name}").strip() for name in names}


def history(sandbox: Sandbox, *args: str) -> list[dict[str, Any]]:
    data = sandbox.cli_json("history", *args)
    assert isinstance(data, list)
    return data


def status(sandbox: Sandbox) -> dict[tuple[str, str], dict[str, Any]]:
    data = sandbox.cli_json("status")
    assert isinstance(data, list)
    return {(s["app"], s["environment"]): s for s in data}


# -- path filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**", "a/b/c.yaml", True),
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "a/b.yaml", False),
        ("**/*.yaml", "b.yaml", True),
        ("**/*.yaml", "a/b/c.yaml", True),
        ("overlays/", "overlays/prod/x.yaml", True),
        ("overlays/*", "overlays/prod/x.yaml", False),
        ("a?.md", "ab.md", True),
        ("a.yaml", "a_yaml", False),
    ],
)
def test_path_globs(pattern: str, path: str, expected: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(path)) is expected


def test_excluded_paths_never_count_even_when_included() -> None:
    source = ConfigSource(url="x", include=["**/*.yaml", "*.md"], exclude=["drafts/**", "NOTES.md"])
    assert counts(source, "deploy.yaml") and counts(source, "README.md")
    assert not counts(source, "drafts/deploy.yaml") and not counts(source, "NOTES.md")
    assert not counts(source, "script.sh")


# -- config-only and combined releases --------------------------------------------------------------------

CONFIG_ONLY = """\
version: 1
repository: {url: .promoflow/demo/repo.git}
environments:
  - {name: dev, branch: env/dev}
apps:
  - name: conf
    path: apps/conf
    git:
      url: config-src          # relative to promotions.yaml
      branch: main
      directory: deploy/conf
      exclude: ["**/*.md"]
"""


@pytest.mark.prefect
def test_config_commits_are_releases_and_promoting_one_makes_the_app_path_a_copy(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.config.write_text(CONFIG_ONLY)
    repo = ConfigRepo(sandbox.base / "config-src")
    first = repo.commit(
        "conf 1",
        {"deploy/conf/a.yaml": "a: 1\n", "deploy/conf/b.yaml": "b: 1\n", "deploy/conf/README.md": "hi\n"},
    )

    piped = sandbox.cli("pipeline", "conf", env=REQUESTER)
    assert piped.returncode == 0, piped.stderr
    assert env_files(sandbox, "env/dev", "apps/conf") == {"README.md": "hi", "a.yaml": "a: 1", "b.yaml": "b: 1"}
    (promotion,) = history(sandbox, "conf")
    assert promotion["state"] == "succeeded"
    assert promotion["release"] == {"id": promotion["release"]["id"], "label": first[:7], "commit": first}
    assert f"Config-commit: {first}" in sandbox.git("log", "-2", "--format=%B", "env/dev")
    assert status(sandbox)[("conf", "dev")]["current_release"]["commit"] == first

    # commits that touch only excluded files or files outside the directory are no release
    repo.commit("docs", {"deploy/conf/README.md": "hello\n", "elsewhere/x.yaml": "x: 1\n"})
    quiet = sandbox.cli("watch")
    assert quiet.returncode == 0 and "No new releases." in quiet.stdout, quiet.stderr

    third = repo.commit(
        "conf 3", {"deploy/conf/a.yaml": "a: 3\n", "deploy/conf/b.yaml": None, "deploy/conf/sub/c.yaml": "c: 3\n"}
    )
    watched = sandbox.cli("watch")
    assert watched.returncode == 0, watched.stderr
    assert f"New release of conf: {third[:7]}" in watched.stdout
    # the copy is of that commit: the README change of the commit before comes along, b.yaml is removed
    assert env_files(sandbox, "env/dev", "apps/conf") == {"README.md": "hello", "a.yaml": "a: 3", "sub/c.yaml": "c: 3"}
    assert "No new releases." in sandbox.cli("watch").stdout

    # a release named by a tag of the config repository: the same content is the same release
    repo.git("tag", "conf-1", first)
    back = sandbox.cli("promote", "conf", "--to", "dev", "--release", "conf-1", env=REQUESTER)
    assert back.returncode == 0, back.stderr
    assert env_files(sandbox, "env/dev", "apps/conf")["b.yaml"] == "b: 1"
    releases = {p["release"]["id"] for p in history(sandbox, "conf")}
    assert len(releases) == 2

    unknown = sandbox.cli("promote", "conf", "--to", "dev", "--release", "no-such-ref")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "Unknown release 'no-such-ref' of conf: no such config commit" in unknown.stderr


@pytest.mark.prefect
def test_a_combined_release_copies_the_config_then_pins_the_images(sandbox: Sandbox, prefect_api: str) -> None:
    sandbox.edit_config(
        "    path: apps/web\n",
        "    path: apps/web\n    environments: [dev]\n    git: {url: config-src, directory: web}\n",
    )
    repo = ConfigRepo(sandbox.base / "config-src")
    kustomization = (
        "resources: [deployment.yaml]\n"
        "images:\n"
        "  - name: registry.example.com/demo/web  # pinned by promoflow\n"
        '    newTag: "0.0.0"\n'
    )
    commit = repo.commit(
        "web config", {"web/kustomization.yaml": kustomization, "web/deployment.yaml": "kind: Deployment\n"}
    )
    digest = sandbox.publish("1.2.0")

    promoted = sandbox.cli("promote", "web", "--to", "dev", "--release", "1.2.0", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    files = env_files(sandbox, "env/dev", "apps/web")
    assert set(files) == {"kustomization.yaml", "deployment.yaml"}  # service.yaml is gone with the copy
    assert files["deployment.yaml"] == "kind: Deployment"
    assert 'newTag: "1.2.0"' in files["kustomization.yaml"] and f'digest: "{digest}"' in files["kustomization.yaml"]
    assert "# pinned by promoflow" in files["kustomization.yaml"]
    (promotion,) = history(sandbox, "web")
    assert promotion["release"]["label"] == f"1.2.0+{commit[:7]}" and promotion["release"]["commit"] == commit


# -- groups: one bundle, every member into each environment before the next --------------------------------

GROUP = """\
version: 1
repository: {url: .promoflow/demo/repo.git}
environments:
  - {name: dev, branch: env/dev}
  - {name: staging, branch: env/staging}
  - {name: prod, branch: env/prod, auto_promote: false}
apps:
  - name: conf
    path: apps/conf
    git: {url: config-src, directory: conf}
  - name: web
    path: apps/web
    images:
      - name: registry.example.com/demo/web
        source: {oci_layout: .promoflow/demo/oci/web}
groups:
  - name: shop
    apps: [conf, web]
"""


@pytest.mark.prefect
def test_a_group_is_promoted_as_one_bundle_and_a_failing_member_rolls_the_others_back(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.config.write_text(GROUP)
    repo = ConfigRepo(sandbox.base / "config-src")
    first = repo.commit("conf 1", {"conf/a.yaml": "a: 1\n"})
    sandbox.publish("1.2.0")

    piped = sandbox.cli("pipeline", "shop", env=REQUESTER)
    assert piped.returncode == 0, piped.stderr
    promotions = [p for p in reversed(history(sandbox)) if p["kind"] == "promotion"]
    # every member into dev before staging (the members of one environment side by side); prod is not automatic
    assert [p["environment"] for p in promotions] == ["dev", "dev", "staging", "staging"]
    assert {p["app"] for p in promotions[:2]} == {p["app"] for p in promotions[2:]} == {"conf", "web"}
    assert all(p["state"] == "succeeded" for p in promotions)
    (bundle_id,) = {p["bundle_id"] for p in promotions}
    assert bundle_id
    assert env_files(sandbox, "env/staging", "apps/conf") == {"a.yaml": "a: 1"}
    assert 'newTag: "1.2.0"' in sandbox.git("show", "env/staging:apps/web/kustomization.yaml")

    # a new release of one member: the watch hands the group's new bundle to the pipeline, once
    repo.commit("conf 2", {"conf/a.yaml": "a: 2\n"})
    watched = sandbox.cli("watch", env=REQUESTER)
    assert watched.returncode == 0, watched.stderr
    assert env_files(sandbox, "env/staging", "apps/conf") == {"a.yaml": "a: 2"}
    second = [p for p in history(sandbox) if p["kind"] == "promotion" and p["bundle_id"] != bundle_id]
    assert sorted((p["app"], p["environment"]) for p in second) == [("conf", "dev"), ("conf", "staging")]
    assert "No new releases." in sandbox.cli("watch").stdout

    # conf changes, then web fails verification in dev: web rolls itself back, the bundle rolls conf back
    third = repo.commit("conf 3", {"conf/a.yaml": "a: 3\n"})
    sandbox.publish("1.3.0")
    sandbox.config.write_text(
        GROUP.replace(
            "        source: {oci_layout: .promoflow/demo/oci/web}\n",
            "        source: {oci_layout: .promoflow/demo/oci/web}\n"
            "    health_checks:\n      - {url: 'http://127.0.0.1:9/down', attempts: 1, timeout_seconds: 1}\n",
        )
    )
    failed = sandbox.cli("pipeline", "shop", env=REQUESTER)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    conf_second_label = next(p for p in second if p["environment"] == "dev")["release"]["label"]
    assert "stopped in dev: web failed" in failed.stderr
    assert f"conf was rolled back to {conf_second_label}" in failed.stderr
    assert env_files(sandbox, "env/dev", "apps/conf") == {"a.yaml": "a: 2"}
    assert env_files(sandbox, "env/staging", "apps/conf") == {"a.yaml": "a: 2"}  # never reached
    dev = {(p["app"], p["kind"]): p for p in history(sandbox, "--env", "dev") if p["release"]["label"] != "1.1.0"}
    assert dev[("conf", "rollback")]["state"] == "succeeded"
    changed = next(p for p in history(sandbox, "conf", "--env", "dev") if p["release"]["commit"] == third)
    assert changed["state"] == "rolled_back"
    assert dev[("conf", "rollback")]["rollback_of"] == changed["id"]
    assert status(sandbox)[("conf", "dev")]["current_release"]["label"] == conf_second_label
    assert first  # the first commit stays in the records
