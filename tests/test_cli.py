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
    ["sandbox"], ["sandbox", "github"], ["sandbox", "kube"], ["webhook"], ["diff"],
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
