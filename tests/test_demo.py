"""`promoflow demo --yes` as a user runs it: its own Prefect server, a simulated or real cluster, two image sources."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promoflow import demo
from promoflow.config_loader import load
from promoflow.errors import TerminalError
from promoflow.sandbox.kube import KubeStandIn
from tests.kube_servers import KubeServer

pytestmark = pytest.mark.prefect
ENVIRONMENTS = ("dev", "staging", "prod")


def _run(base: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "promoflow", *args],
        cwd=base,
        env={**inherited, "COLUMNS": "160", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def _url_after(text: str, label: str) -> str:
    found = re.search(re.escape(label) + r" (http://127\.0\.0\.1:\d+)", text)
    assert found, text
    return found.group(1)


def test_demo_runs_twice_on_the_simulated_cluster_from_the_layout_then_the_registry_and_github(tmp_path: Path) -> None:
    first = _run(tmp_path, "demo", "--yes", "--no-registry")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "promoflow demo: simulated cluster (promoflow's Kubernetes API stand-in)" in out
    assert "Published registry.example.com/demo/web:1.2.0 to the OCI layout source" in out
    assert "local registry" not in out
    assert "approving promotion" in out and "Rolling prod back" in out
    assert "Published registry.example.com/demo/web:1.3.0, whose pods never get ready" in out
    assert "exceeded its progress deadline" in out and "dev runs 1.2.0 again" in out
    assert "Prefect server stopped" in out
    assert not (tmp_path / ".promoflow" / "prefect" / "server.json").exists()
    assert _refused(_url_after(out, "(promoflow's Kubernetes API stand-in) at"))
    assert (tmp_path / "promotions.yaml").read_text() == demo.CONFIG_TEMPLATE.read_text()
    _report_agrees_with_history(tmp_path)

    second = _run(tmp_path, "demo", "--yes", "--registry", "--forge", "github")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Pull requests on the simulated GitHub" in second.stdout
    github = _url_after(second.stdout, "(promoflow's GitHub REST stand-in) at")
    assert _refused(github), "the GitHub stand-in outlived it"
    registry = _url_after(second.stdout, "Image source: local registry")
    assert f"Published registry.example.com/demo/web:1.4.0 to the local registry {registry}/demo/web" in second.stdout
    assert _refused(registry), "the demo's docker-registry outlived it"
    run_config = load(tmp_path / ".promoflow" / "demo" / "promotions.yaml")
    assert run_config.apps[0].images[0].source.registry == registry

    history = json.loads(_run(tmp_path, "history", "--json").stdout)
    promoted = {(p["environment"], p["release"]["label"]): p["state"] for p in history if p["kind"] == "promotion"}
    for env in ENVIRONMENTS:
        assert (env, "1.2.0") in promoted and (env, "1.4.0") in promoted
    assert promoted[("dev", "1.3.0")] == promoted[("dev", "1.5.0")] == "rolled_back"
    assert ("staging", "1.3.0") not in promoted and ("staging", "1.5.0") not in promoted
    applied = [p for p in history if p["kind"] == "promotion" and p["release"]["label"] == "1.4.0"]
    for promotion in applied:
        steps = {s["name"]: s for s in promotion["steps"]}
        namespace = f"promoflow-demo-{promotion['environment']}"
        assert steps["verify"]["detail"]["rollouts"][0]["object"] == f"Deployment {namespace}/web"
        assert steps["verify"]["detail"]["rollouts"][0]["healthy"] is True
    approvals = {
        (p["release"]["label"], a["source"], a["approver"], a["counted"]) for p in history for a in p["approvals"]
    }
    assert approvals == {("1.2.0", "cli", "demo-approver", True), ("1.4.0", "forge", "demo-approver", True)}
    rollbacks = [(p["environment"], p["state"]) for p in history if p["kind"] == "rollback"]
    assert sorted(rollbacks) == [("dev", "succeeded")] * 2 + [("prod", "succeeded")] * 2

    status = {s["environment"]: s for s in json.loads(_run(tmp_path, "status", "--json").stdout)}
    assert status["dev"]["current_release"]["label"] == "1.4.0"  # 1.5.0 never got ready: rolled back
    assert status["prod"]["current_release"]["label"] == "1.1.0"  # rolled back to the baseline
    assert len(status["prod"]["rejected_releases"]) == 2 and len(status["dev"]["rejected_releases"]) == 2


def _report_agrees_with_history(base: Path) -> None:
    """`report web` counts what `history web` shows: succeeded promotions per environment as deployments, and
    in dev the release whose verification failed (1.3.0) as a failed change."""
    history = json.loads(_run(base, "history", "web", "--json").stdout)
    report = json.loads(_run(base, "report", "web", "--json").stdout)
    by_env = {e["environment"]: e for e in report["environments"]}
    assert list(by_env) == list(ENVIRONMENTS)

    def outcome(promotion: dict[str, Any], step: str) -> str | None:
        return next((s["outcome"] for s in reversed(promotion["steps"]) if s["name"] == step), None)

    promotions = [p for p in history if p["kind"] == "promotion"]
    for env in ENVIRONMENTS:
        here = [p for p in promotions if p["environment"] == env]
        deployed = [p for p in here if outcome(p, "finalize") == "succeeded"]
        failed = [p for p in here if outcome(p, "verify") == "failed" or p["state"] == "rolled_back"]
        assert by_env[env]["deployments"] == len(deployed) >= 1, env
        assert by_env[env]["counts"]["change_failure"] == {"failed": len(failed), "changes": len(here)}, env
    dev = by_env["dev"]
    assert dev["change_failure_rate"] == 0.5 and dev["counts"]["time_to_restore"]["restored"] == 1  # 1.3.0
    assert [p["release"]["label"] for p in promotions if outcome(p, "verify") == "failed"] == ["1.3.0"]

    page = _run(base, "report", "web", "--html", "report.html")
    assert page.returncode == 0, page.stderr
    bars = re.findall(
        r'class="deployments" data-environment="(\w+)" data-count="(\d+)"', (base / "report.html").read_text()
    )
    for env in ENVIRONMENTS:
        assert sum(int(count) for name, count in bars if name == env) == by_env[env]["deployments"]


def test_kube_context_promotes_into_that_cluster_one_namespace_per_environment(
    tmp_path: Path, prefect_api: str, kube_server: KubeServer
) -> None:
    # a real API server, as kind or minikube would serve (or the stand-in): the demo must not start its own
    kube_server.write_kubeconfig(tmp_path / "clusters.kubeconfig", context="kind-demo")
    result = _run(
        tmp_path,
        *("demo", "--yes", "--no-registry", "--kube-context", "kind-demo", "--kubeconfig", "clusters.kubeconfig"),
        env={"PREFECT_API_URL": prefect_api},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cluster context kind-demo" in result.stdout and "stand-in" not in result.stdout
    for env in ENVIRONMENTS:
        namespace = f"promoflow-demo-{env}"
        assert kube_server.find("namespaces", "", namespace) is not None
        deployment = kube_server.find("deployments.apps", namespace, "web")
        assert deployment is not None, env
        assert deployment["spec"]["replicas"] == 0  # the demo image cannot be pulled by a real cluster
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        expected = "1.1.0" if env == "prod" else "1.2.0"  # the demo rolls prod back at the end
        assert image.startswith(f"registry.example.com/demo/web:{expected}@sha256:"), (env, image)
    assert kube_server.find("deployments.apps", "default", "web") is None
    run_config = load(tmp_path / ".promoflow" / "demo" / "promotions.yaml")
    assert {(e.cluster.context, e.cluster.kubeconfig) for e in run_config.environments} == {
        ("kind-demo", str(tmp_path / "clusters.kubeconfig"))
    }


def test_a_missing_kube_context_fails_before_anything_is_built(tmp_path: Path) -> None:
    with KubeStandIn() as cluster:
        cluster.write_kubeconfig(tmp_path / "clusters.kubeconfig", context="kind-demo")
    result = _run(tmp_path, "demo", "--yes", "--kube-context", "minikube", "--kubeconfig", "clusters.kubeconfig")
    assert result.returncode == 1
    assert "has no context 'minikube' (it has: kind-demo)" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    missing = _run(tmp_path, "demo", "--kube-context", "kind-demo", "--kubeconfig", "nowhere.kubeconfig")
    assert missing.returncode == 1 and "nowhere.kubeconfig: no such file" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.kubeconfig"]  # nothing half-done


def test_without_docker_registry_the_layout_is_the_source_and_registry_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("git", "kubectl"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    work = tmp_path / "work"
    work.mkdir()
    result = _run(work, "demo", "--yes", "--registry", env={"PATH": str(tools)})
    assert result.returncode == 1 and "--registry needs Debian's `docker-registry`" in result.stderr
    assert not any(work.iterdir())

    monkeypatch.setenv("PATH", str(tools))
    assert demo.registry_wanted(None) is False and demo.registry_wanted(False) is False
    with pytest.raises(TerminalError):
        demo.registry_wanted(True)
    monkeypatch.undo()
    assert demo.registry_wanted(None) is (shutil.which("docker-registry") is not None)


def test_the_tests_project_is_the_demo_s_without_a_cluster(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with_cluster = load(demo.write_config(tmp_path / "a", cluster=True))
    assert {(e.cluster.target, e.cluster.context) for e in with_cluster.environments} == {
        ("kubernetes", "promoflow-demo")
    }
    without = load(demo.write_config(tmp_path / "b"))
    assert {e.cluster.target for e in without.environments} == {"none"}
    assert [e.name for e in without.environments] == [e.name for e in with_cluster.environments]
