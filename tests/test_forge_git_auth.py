"""With `forge: github` over http(s), git gets the token as a header through its environment: clone, fetch and
push work, and the token is written nowhere; a refused token is one sentence, not a hung prompt."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from promoflow import demo
from promoflow.errors import TerminalError
from promoflow.project import Project
from tests.git_http import serve_git

TOKEN = "ghs_gitTransportToken0123456789abc"


def project(base: Path, url: str) -> Project:
    base.mkdir(parents=True, exist_ok=True)
    config = base / "promotions.yaml"
    config.write_text(
        f"""version: 1
repository:
  url: {url}/deploy.git
  forge: github
  github: {{repository: acme/deploy, token: "env:PF_TEST_GIT_TOKEN"}}
environments:
  - {{name: dev, branch: env/dev}}
apps:
  - name: web
    path: apps/web
    images:
      - name: registry.example.com/demo/web
        source: {{oci_layout: oci}}
"""
    )
    return Project.load(config)


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
