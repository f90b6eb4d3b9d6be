"""The command line itself: help on every command, fast read commands that never import Prefect, the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, Sandbox, run_cli

COMMANDS = [
    [], ["validate"], ["schema"], ["status"], ["history"], ["promote"], ["pipeline"], ["approve"], ["reject"],
    ["rollback"], ["demo"], ["release"], ["release", "unreject"], ["server"], ["server", "start"],
    ["server", "stop"], ["server", "status"], ["images"], ["images", "select"], ["images", "preview"], ["watch"],
    ["sandbox"], ["sandbox", "github"], ["sandbox", "kube"], ["webhook"], ["diff"], ["init"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "promoflow")
def test_every_command_explains_itself(command: list[str], tmp_path: Path) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 5


def _imports(args: list[str], cwd: Path) -> set[str]:
    """Top-level modules a command imports (from Python's -X importtime report)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "promoflow", *args], cwd=cwd, capture_output=True, text=True
    )
    return {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}


@pytest.mark.parametrize("args", [["--help"], ["validate"], ["schema"], ["status"], ["history"]])
def test_read_commands_do_not_import_prefect(args: list[str], sandbox: Sandbox) -> None:
    modules = _imports(args, sandbox.base)
    assert "promoflow" in modules
    assert "prefect" not in modules and "kubernetes" not in modules and "github" not in modules


def test_schema_describes_the_documented_example(tmp_path: Path) -> None:
    result = run_cli("schema", cwd=tmp_path)
    schema = json.loads(result.stdout)
    example = yaml.safe_load((ROOT / "promotions.yaml").read_text())
    jsonschema.validate(example, schema)
    assert schema["properties"]["environments"]["description"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "aprovals": 1}, schema)


def test_the_documented_example_is_the_demo_s_and_valid(tmp_path: Path) -> None:
    assert (ROOT / "promotions.yaml").read_text() == (ROOT / "promoflow" / "demo_promotions.yaml").read_text()
    result = run_cli("validate", str(ROOT / "promotions.yaml"), cwd=tmp_path)
    assert result.returncode == 0 and "valid (3 environments, 1 apps)" in result.stdout


def test_read_commands_on_a_new_project(sandbox: Sandbox) -> None:
    assert "No promotions yet" in sandbox.cli("history").stdout
    status = sandbox.cli_json("status")
    assert [(s["environment"], s["current_release"]) for s in status] == [  # type: ignore[union-attr]
        ("dev", None),
        ("staging", None),
        ("prod", None),
    ]
    unknown = sandbox.cli("history", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: Unknown app 'nope'")


def test_a_broken_config_stops_every_command_with_exit_2(sandbox: Sandbox) -> None:
    sandbox.edit_config("required: 1", "required: one")
    for args in (["status"], ["history"], ["promote", "web", "--to", "dev"]):
        result = sandbox.cli(*args)
        assert result.returncode == 2, args
        assert "promotions.yaml:" in result.stderr and "expected an integer" in result.stderr


def test_validate_reports_problems_as_json_for_editors_and_ci(sandbox: Sandbox) -> None:
    assert sandbox.cli_json("validate") == {"file": "promotions.yaml", "valid": True, "problems": []}
    sandbox.edit_config("required: 1", "required: one")
    broken = sandbox.cli("validate", "--json")
    assert broken.returncode == 2
    report = json.loads(broken.stdout)
    assert report["valid"] is False and len(report["problems"]) == 2
    first = report["problems"][0]
    assert (first["line"], first["path"]) == (24, "environments[1].approval.required")
    assert "expected an integer" in first["message"]


MARKUP = ":x: [bold]b[/bold] [a-z]"  # an emoji code, Rich markup and a regex class: printed as they are


def test_user_and_config_text_is_printed_as_it_is_never_as_rich_markup(sandbox: Sandbox) -> None:
    unknown = sandbox.cli("history", f"web{MARKUP}")
    assert f"Unknown app 'web{MARKUP}'" in unknown.stderr, unknown.stderr
    sandbox.edit_config('semver: ">=1.0.0 <2"', f"regex: '{MARKUP}|[0-9]'")
    preview = sandbox.cli("images", "preview", "web")
    assert preview.returncode == 0, preview.stderr
    assert f"regex '{MARKUP}|[0-9]'" in preview.stdout.replace("\n", ""), preview.stdout
    sandbox.edit_config("apps:", f"'{MARKUP}': 1\napps:")
    invalid = sandbox.cli("validate")
    assert f"unknown key '{MARKUP}'" in invalid.stderr, invalid.stderr


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = run_cli("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"promoflow {version('promoflow')}\n")


def test_init_writes_a_promotions_yaml_that_validate_accepts_and_never_overwrites(sandbox: Sandbox) -> None:
    args = ["init", "--repo", str(sandbox.repo), "--app", "web=apps/web", "--image", "registry.example.com/demo/web"]
    written = sandbox.cli(*args, "--config", "mine.yaml")
    assert written.returncode == 0, written.stderr
    config = sandbox.base / "mine.yaml"
    text = config.read_text()
    assert text.startswith("# promotions.yaml") and 'url: ".promoflow/demo/repo.git"' in text  # relative to the file
    assert "not in the repository" not in text  # env/dev, env/staging and env/prod are there
    validated = sandbox.cli("validate", "mine.yaml")
    assert validated.returncode == 0 and "valid (3 environments, 1 apps)" in validated.stdout, validated.stderr
    data = yaml.safe_load(text)
    assert [(e["name"], e["branch"], e["approval"]["required"]) for e in data["environments"]] == [
        ("dev", "env/dev", 0),
        ("staging", "env/staging", 1),
        ("prod", "env/prod", 1),
    ]
    assert data["apps"][0]["images"][0]["source"] == {
        "registry": "https://registry.example.com",
        "repository": "demo/web",
    }
    assert sandbox.cli("status", "--config", "mine.yaml").returncode == 0

    again = sandbox.cli(*args, "--config", "mine.yaml", "--envs", "qa")
    assert (
        again.returncode == 1
        and again.stderr == "error: mine.yaml already exists: edit it, or give another file with --config.\n"
    )
    assert config.read_text() == text
    assert sandbox.cli(*args).returncode == 1  # ./promotions.yaml is there too


def test_init_takes_the_branches_the_repository_has_and_the_github_repository_from_its_url(tmp_path: Path) -> None:
    served = tmp_path / "served"
    bare = served / "acme" / "deploy.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git = ["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=a@example.com"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    for branch in ("dev", "environments/prod"):
        subprocess.run([*git, "push", "-q", "origin", f"HEAD:refs/heads/{branch}"], check=True, capture_output=True)
    github = {  # https://github.com/ is this directory, for git only: no network
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{served}/.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://github.com/",
    }
    result = run_cli(
        "init", "--repo", "https://github.com/acme/deploy.git", "--forge", "github", "--envs", "dev,staging,prod",
        "--app", "web=apps/web", "--app", "api=apps/api", "--image", "web=ghcr.io/acme/web", "--image", "api=nginx",
        cwd=tmp_path, env=github,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((tmp_path / "promotions.yaml").read_text())
    assert data["repository"]["github"]["repository"] == "acme/deploy"
    assert [e["branch"] for e in data["environments"]] == ["dev", "env/staging", "environments/prod"]
    assert 'env/staging"  # not in the repository yet' in (tmp_path / "promotions.yaml").read_text()
    sources = [app["images"][0]["source"] for app in data["apps"]]
    assert sources == [
        {"registry": "https://ghcr.io", "repository": "acme/web"},
        {"registry": "https://registry-1.docker.io", "repository": "library/nginx"},
    ]
    assert run_cli("validate", cwd=tmp_path).returncode == 0


def test_init_with_layout_directories_writes_one_branch_and_no_environment_branches(tmp_path: Path) -> None:
    """`--layout directories`: the repository's own main branch (here `master`), no branch per environment, each
    environment's directory the default clusters/<name>; `validate` accepts it."""
    bare = tmp_path / "deploy.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git = ["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=a@example.com"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:refs/heads/master"], check=True, capture_output=True)
    result = run_cli(
        "init", "--repo", "deploy.git", "--layout", "directories", "--envs", "dev,prod", "--app", "web=apps/web",
        "--image", "ghcr.io/acme/web", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((tmp_path / "promotions.yaml").read_text())
    assert data["repository"]["layout"] == "directories" and data["repository"]["branch"] == "master"
    assert [set(e) for e in data["environments"]] == [{"name", "approval"}] * 2  # no branch per environment
    validated = run_cli("validate", cwd=tmp_path)
    assert validated.returncode == 0 and "valid (2 environments, 1 apps)" in validated.stdout, validated.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "web"], "--app 'web': write NAME=PATH"),
        (["--app", "Web=apps/web", "--image", "nginx"], "an app name is lowercase"),
        (["--app", "web=apps/web"], "App web has no image"),
        (["--app", "web=apps/web", "--image", "Acme/Web"], "not an image name"),
        (["--app", "web=a", "--app", "api=b", "--image", "nginx"], "with several apps, write APP=IMAGE"),
        (["--app", "web=a", "--image", "nginx", "--envs", "dev,Prod"], "'Prod' is not an environment name"),
        (["--app", "web=a", "--image", "nginx", "--forge", "github"], "--repo is the repository's GitHub URL"),
    ],
)
def test_init_refuses_what_it_cannot_write_with_one_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("init", "--repo", "deploy.git", *args, cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not list(tmp_path.iterdir())
