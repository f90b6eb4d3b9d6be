"""With `forge: github` over http(s), git gets the token as a header through its environment: clone, fetch and
push work, and the token is written nowhere; a refused token is one sentence, not a hung prompt."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from promoflow import demo
from promoflow.errors import TerminalError
from promoflow.project import Project
from tests.conftest import run_cli
from tests.git_http import serve_git

TOKEN = "ghs_gitTransportToken0123456789abc"


def config_file(base: Path, repository: str, layout: Path | str = "oci") -> Path:
    """A promotions.yaml of one environment and the demo's app, with `repository` as its repository mapping."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "promotions.yaml"
    config.write_text(
        f"""version: 1
repository: {repository}
environments:
  - {{name: dev, branch: env/dev}}
apps:
  - name: web
    path: apps/web
    images:
      - name: registry.example.com/demo/web
        source: {{oci_layout: "{layout}"}}
"""
    )
    return config


def project(base: Path, url: str) -> Project:
    github = '{repository: acme/deploy, token: "env:PF_TEST_GIT_TOKEN"}'
    return Project.load(config_file(base, f"{{url: {url}/deploy.git, forge: github, github: {github}}}"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A directory of served repositories holding `deploy.git`, the demo's environments."""
    demo.build_sandbox(tmp_path / "seed")
    served = tmp_path / "served"
    seed = demo.sandbox_dir(tmp_path / "seed") / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(served / "deploy.git")], check=True)
    return served


def test_clone_fetch_and_push_carry_the_token_as_a_header_and_store_it_nowhere(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_GIT_TOKEN", TOKEN)
    with serve_git(root, TOKEN) as (url, seen):
        p = project(tmp_path / "work", url)
        head = p.workspace.branch_head("env/dev")  # clones, then fetches
        change = p.workspace.prepare(
            "env/dev", "promoflow/dev/web/test", lambda tree: [_touch(tree / "apps/web/note.txt")], "a change\n"
        )
    assert change.created and change.head != head
    pushed = subprocess.run(
        ["git", "--git-dir", str(root / "deploy.git"), "rev-parse", "promoflow/dev/web/test"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert pushed == change.head
    assert seen and all(header.startswith("Basic ") for header in seen if header)
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode())
    for path in p.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and encoded not in data, path


def test_a_refused_token_is_one_sentence_not_a_prompt(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_GIT_TOKEN", "ghs_revokedToken0000000000000000")
    with serve_git(root, TOKEN) as (url, _):
        p = project(tmp_path / "work", url)
        with pytest.raises(TerminalError, match="refused promoflow's credentials; check the token") as refused:
            p.workspace.branch_head("env/dev")
    assert "ghs_revokedToken" not in str(refused.value)


def _touch(path: Path) -> str:
    path.write_text("promoted\n")
    return "apps/web/note.txt"


# -- credentials written into repository.url, with the local forge ---------------------------------------------

URL_USER = "deployer"
URL_PASSWORD = "glpat-Url@Token0123456789abcdef"  # written percent-encoded in the URL
URL_SECRET = "glpat-Url%40Token0123456789abcdef"


def local_project(base: Path, url: str, layout: Path) -> Path:
    return config_file(base, f'{{url: "{url}"}}', layout)


def test_credentials_in_repository_url_go_as_a_header_and_are_stored_nowhere(tmp_path: Path, root: Path) -> None:
    """A whole promotion with `https://user:TOKEN@host/...` and the local Prefect server kept in the state directory:
    neither the token nor its base64 form is in any file there (records, Prefect's database and logs, git configs),
    and Prefect's files are private."""
    from promoflow.sources import oci_layout

    layout = demo.sandbox_dir(tmp_path / "seed") / "oci" / "web"
    oci_layout.publish(layout, "1.2.0")
    with serve_git(root, URL_PASSWORD, user=URL_USER) as (url, seen):
        credentialed = url.replace("http://", f"http://{URL_USER}:{URL_SECRET}@") + "/deploy.git"
        config = local_project(tmp_path / "work", credentialed, layout)
        # Nothing inherited from the session (its Prefect server, settings or promoflow variables): only this.
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ} | {
            "PROMOFLOW_USER": "rita",
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
        }
        try:
            promoted = run_cli("promote", "web", "--to", "dev", cwd=config.parent, env=env, timeout=300, inherit=False)
        finally:
            run_cli("server", "stop", cwd=config.parent, env=env, inherit=False)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    pushed = subprocess.run(
        ["git", "--git-dir", str(root / "deploy.git"), "show", "env/dev:apps/web/kustomization.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"1.2.0"' in pushed

    state = config.parent / ".promoflow"
    secrets = [URL_PASSWORD.encode(), URL_SECRET.encode(), base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode())]
    looked = [path for path in state.rglob("*") if path.is_file()]
    names = {path.name for path in looked}
    assert {"promoflow.db", "prefect.db", "config"} <= names, (promoted.stdout, promoted.stderr)
    for path in looked:
        data = path.read_bytes()
        assert not [secret for secret in secrets if secret in data], path
    for path in (state / "prefect").rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    for text in (promoted.stdout, promoted.stderr):
        assert URL_PASSWORD not in text and URL_SECRET not in text
    assert seen and all(header.startswith("Basic ") for header in seen)  # sent at once, never asked for


@pytest.mark.parametrize("given", ["wrong password in the URL", "no credentials"])
def test_a_refused_local_remote_names_its_url_not_github_token(tmp_path: Path, root: Path, given: str) -> None:
    with serve_git(root, URL_PASSWORD, user=URL_USER) as (url, _):
        if given == "no credentials":
            repository = url + "/deploy.git"
        else:
            repository = url.replace("http://", f"http://{URL_USER}:wrong-password@") + "/deploy.git"
        p = Project.load(local_project(tmp_path / "work", repository, tmp_path / "oci"))
        with pytest.raises(TerminalError) as refused:
            p.workspace.branch_head("env/dev")
    said = str(refused.value)
    assert "github" not in said and "wrong-password" not in said
    assert said.startswith(f"Cannot clone {url}/deploy.git: the remote ")
    if given == "no credentials":
        assert "give them in the URL" in said
    else:
        assert "check the user and password in the URL" in said


def test_a_clone_of_an_unknown_host_fails_once_in_one_sentence_and_leaves_nothing(tmp_path: Path) -> None:
    config = local_project(tmp_path / "work", "https://git.nowhere.invalid/acme/deploy.git", tmp_path / "oci")
    p = Project.load(config)
    with pytest.raises(TerminalError) as failed:  # terminal: not worth retrying
        p.workspace.branch_head("env/dev")
    said = str(failed.value)
    assert said == (
        "Cannot clone https://git.nowhere.invalid/acme/deploy.git: the host git.nowhere.invalid is unknown; "
        "check repository.url in promotions.yaml."
    )
    assert list((p.state_dir / "workspaces").iterdir()) == [] or all(
        path.suffix == ".lock" for path in (p.state_dir / "workspaces").iterdir()
    )


URL_TOKEN = "glpat-OnlyAToken0123456789abcd"  # `https://TOKEN@host/...`: the token as the user, no password


@pytest.mark.parametrize(
    ("userinfo", "user", "password"),
    [(f"{URL_USER}:{URL_SECRET}", URL_USER, URL_PASSWORD), (URL_TOKEN, URL_TOKEN, "")],
    ids=["user and password", "token alone"],
)
def test_url_credentials_of_either_form_go_as_a_header_and_are_masked(
    tmp_path: Path, root: Path, userinfo: str, user: str, password: str
) -> None:
    """A clone, a fetch and a push with credentials in repository.url: sent at once as the header git would send,
    in no file of the state directory, masked in what promoflow says."""
    from promoflow.redact import redact

    with serve_git(root, password, user=user) as (url, seen):
        p = Project.load(
            local_project(
                tmp_path / "work", url.replace("http://", f"http://{userinfo}@") + "/deploy.git", tmp_path / "oci"
            )
        )
        head = p.workspace.branch_head("env/dev")
        change = p.workspace.prepare(
            "env/dev", "promoflow/dev/web/test", lambda tree: [_touch(tree / "apps/web/note.txt")], "a change\n"
        )
    assert change.created and change.head != head
    assert seen and all(header.startswith("Basic ") for header in seen)  # never a 401 and a prompt first
    basic = base64.b64encode(f"{user}:{password}".encode())
    secret = (password or user).encode()
    for path in p.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and basic not in data, path
    assert (password or user) not in redact(f"cloning {url} as {userinfo}: {basic.decode()}")


def test_a_user_name_alone_stays_in_the_url_and_is_not_masked(tmp_path: Path) -> None:
    from promoflow.gitops.workspace import split_credentials

    assert split_credentials("https://deployer@git.example.com/deploy.git") == (
        "https://deployer@git.example.com/deploy.git",
        None,
    )
    assert split_credentials("ssh://git@git.example.com/deploy.git")[1] is None


def test_credentials_in_an_app_s_git_url_are_sent_as_a_header_and_stored_nowhere(tmp_path: Path, root: Path) -> None:
    """A git config source (`apps[].git.url`) with credentials in its URL: its clone reads the commits and exports
    the config, and the state directory holds neither the password nor the header."""
    from promoflow.config import ConfigSource
    from promoflow.sources.git import GitSource

    with serve_git(root, URL_PASSWORD, user=URL_USER) as (url, seen):
        credentialed = url.replace("http://", f"http://{URL_USER}:{URL_SECRET}@") + "/deploy.git"
        state = tmp_path / "state"
        source = GitSource(
            "web", ConfigSource(url=credentialed, branch="env/dev", directory="apps/web"), credentialed, state
        )
        commit = source.newest()
        source.export(commit, tmp_path / "exported")
    assert (tmp_path / "exported" / "kustomization.yaml").is_file()
    assert seen and all(header.startswith("Basic ") for header in seen)
    basic = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode())
    for path in state.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert URL_PASSWORD.encode() not in data and URL_SECRET.encode() not in data and basic not in data, path
