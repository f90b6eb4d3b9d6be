"""docker-compose.yml: valid Compose, the intended topology (scalable workers on a process work pool), the image's
tools, and the deployments built natively (no Docker). tests/test_workers.py runs the same topology natively."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).parents[1] / ".." / "shared" / "data" / "compose-spec" / "compose-spec.json"
HEARTBEAT_SECONDS = 30  # deployments.heartbeats.HEARTBEAT_SECONDS


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` with nothing set: what a fresh local `docker compose up` sees."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _interpolate(str(value)) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"]  # written without the trailing '#' jsonschema looks up: name it
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_topology() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "prefect-server", "deploy", "worker", "webhook"}
    assert services["webhook"]["command"][:2] == ["promoflow", "webhook"]
    assert "--watch-here" not in services["webhook"]["command"]  # pushes go to Prefect, the workers run the watch
    assert _depends_on(services["webhook"]) == {"deploy": "service_completed_successfully"}

    assert services["postgres"]["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert _depends_on(services["prefect-server"]) == {"postgres": "service_healthy"}
    assert _depends_on(services["deploy"]) == {"prefect-server": "service_healthy"}

    # Both the Prefect server and promoflow keep their data in the postgres service, in separate databases.
    prefect_db = urlsplit(_environment(services["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert (prefect_db.scheme, prefect_db.hostname) == ("postgresql+asyncpg", "postgres")
    assert prefect_db.path == f"/{_environment(services['postgres'])['POSTGRES_DB']}"
    assert "CREATE DATABASE promoflow" in (ROOT / "deploy" / "postgres-init.sql").read_text()
    for name in ("deploy", "worker", "webhook"):  # one image, one Prefect, one records database
        service, env = services[name], _environment(services[name])
        assert service["build"] == "." and env["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
        records = urlsplit(env["PROMOFLOW_DATABASE_URL"])
        assert (records.scheme, records.hostname, records.path) == ("postgresql+psycopg", "postgres", "/promoflow")
        assert f"{env['PROMOFLOW_CONFIG']}:ro" in [volume.split(":", 1)[1] for volume in service["volumes"]], name


def test_workers_scale_and_start_once_the_deployments_are_registered() -> None:
    """`docker compose up --scale worker=3`: nothing in the worker may be one per host, and the pool and deployments
    the workers poll exist before the first one starts."""
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert all(volume.endswith(":ro") for volume in worker["volumes"])  # no state shared between workers
    assert worker["command"][:5] == ["python", "-m", "deployments.worker", "--pool", "promoflow"]
    assert "--with-healthcheck" in worker["command"] and "8080/health" in " ".join(worker["healthcheck"]["test"])
    assert _depends_on(worker) == {"deploy": "service_completed_successfully", "postgres": "service_healthy"}
    env = _environment(worker)
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_SECONDS  # what the crash automation expects
    assert float(env["PREFECT_WORKER_QUERY_SECONDS"]) <= 5

    assert {d["work_pool"]["name"] for d in _declared()} == {"promoflow"}
    deploy = services["deploy"]
    assert deploy["command"] == ["sh", "/app/deploy/register-deployments.sh"] and deploy["restart"] == "no"
    script = (ROOT / "deploy" / "register-deployments.sh").read_text()
    assert "prefect work-pool create promoflow --type process --overwrite" in script  # idempotent, like the rest
    assert 'deploy --all --prefect-file "$here/deployments/prefect.yaml"' in script
    assert "python -m deployments.heartbeats" in script
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy/register-deployments.sh ./deploy/" in dockerfile and "WORKDIR /app" in dockerfile


def test_the_kubeconfig_is_mounted_read_only_and_none_means_no_cluster() -> None:
    worker = _compose()["services"]["worker"]
    (mount,) = [_interpolate(v) for v in worker["volumes"] if v.startswith("${KUBECONFIG_FILE")]
    source, target, mode = mount.split(":")
    assert (target, mode) == ("/home/promoflow/.kube/config", "ro")  # the image's user's default kubeconfig
    placeholder = yaml.safe_load((ROOT / source).read_text())
    assert placeholder["kind"] == "Config" and placeholder["contexts"] == []


def test_env_example_sets_what_a_first_up_needs() -> None:
    """`cp .env.example .env && docker compose up`: every variable compose insists on is set, to a value the services
    accept; the secrets are placeholders to change."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {"PROMOFLOW_WEBHOOK_SECRET"} and required <= set(example)
    assert set(re.findall(r"\$\{(\w+):-", text)) - {"KUBECONFIG_FILE"} <= set(example)  # the rest documented
    from promoflow.webhooks import MIN_SECRET_LENGTH

    assert len(example["PROMOFLOW_WEBHOOK_SECRET"]) >= MIN_SECRET_LENGTH
    assert "change-me" in example["POSTGRES_PASSWORD"] and "change-me" in example["PROMOFLOW_WEBHOOK_SECRET"]
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_every_build_context_and_bind_mount_exists() -> None:
    for name, service in _compose()["services"].items():
        build = service.get("build")
        if build is not None:
            context, dockerfile = (
                (build, "Dockerfile")
                if isinstance(build, str)
                else (
                    build.get("context", "."),
                    build.get("dockerfile", "Dockerfile"),
                )
            )
            assert (ROOT / context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
        for volume in service.get("volumes", []):
            source = _interpolate(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind-mount source {source} is missing"


def test_the_image_installs_the_postgres_driver_kubectl_and_helm() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements-image.lock" in dockerfile
    assert 'pip install --no-deps ".[postgres]"' in dockerfile
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("psycopg[binary]") for requirement in extras["postgres"])
    image_lock = (ROOT / "requirements-image.lock").read_text()
    assert "\npsycopg-binary==" in image_lock and "\nkubectl-cli-bin==" in image_lock  # kubectl, kustomize in it
    # helm from the Go module tools/kube/go.mod pins (checked against its go.sum), as scripts/kube-build builds it
    assert "COPY tools/kube/go.mod tools/kube/go.sum ./" in dockerfile
    assert "go build" in dockerfile and "helm.sh/helm/v4/cmd/helm" in dockerfile
    assert "COPY --from=helm /out/helm /usr/local/bin/helm" in dockerfile
    assert "helm.sh/helm/v4 v" in (ROOT / "tools" / "kube" / "go.mod").read_text()


def test_the_crash_automation_is_valid_for_prefect() -> None:
    from prefect.automations import AutomationCore

    from deployments.heartbeats import automation

    made = automation()
    again = AutomationCore.model_validate(json.loads(made.model_dump_json()))  # what the API takes
    assert again.trigger.model_dump() == made.trigger.model_dump()
    trigger = made.trigger.model_dump()
    assert trigger["posture"] == "Proactive" and trigger["within"].total_seconds() == 3 * HEARTBEAT_SECONDS
    # a run waiting suspended (no process, no heartbeat) or carried on elsewhere is not crashed
    assert {"prefect.flow-run.Suspended", "prefect.flow-run.Abandoned"} <= set(trigger["expect"])


EXPECTED_PARAMETERS = {
    # the UI's Custom run form of a deployment is made from this schema: an override is given there too
    "promote": {"app", "environment", "release", "requested_by", "reason", "config", "override_freeze", "skip_order"},
    "pipeline": {"app", "release", "requested_by", "config"},
    "rollback": {"app", "environment", "to", "reason", "requested_by", "config"},
    "watch": {"config", "apps", "promote"},
    "reconcile": {"config", "woken_by"},
    "report": {"config", "days"},
    "tick": {"config", "environment"},
}


def test_serve_builds_the_deployments(monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> None:
    from deployments.serve import deployments
    from flows.pipeline import pipeline
    from flows.promote import promote
    from flows.reconcile import reconcile
    from flows.report import report
    from flows.rollback import rollback
    from flows.tick import tick
    from flows.watch import watch

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PROMOFLOW_CONFIG", "promotions.yaml")
    built = {deployment.name: deployment for deployment in deployments()}
    assert set(built) == {"promote", "pipeline", "rollback", "watch", "reconcile", "report", "tick"}
    assert built["tick"].schedules == []  # the demo's environments have no `schedule`
    assert [s.schedule.interval.total_seconds() for s in built["watch"].schedules] == [60]  # type: ignore[union-attr]
    assert [s.schedule.interval.total_seconds() for s in built["reconcile"].schedules] == [30]  # type: ignore[union-attr]
    assert [t.expect for t in built["reconcile"].triggers] == [  # type: ignore[union-attr]
        {"prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", "promoflow.github.*"}
    ]

    assert [s.schedule.cron for s in built["report"].schedules] == ["0 6 * * 1"]  # type: ignore[union-attr]

    for flow in (promote, pipeline, rollback, watch, reconcile, report, tick):
        deployment = built[flow.name]
        assert deployment.entrypoint == f"flows.{flow.name}.{flow.name}"  # imported, wherever it runs
        assert deployment.flow_name == flow.name
        assert deployment.description == flow.description
        assert deployment.tags == ["promoflow"]
        assert deployment.work_pool_name is None  # served, no work pool
        assert deployment.parameters == {"config": str(ROOT / "promotions.yaml")}  # made absolute
        schema = deployment._parameter_openapi_schema  # what serving sends to the API
        assert EXPECTED_PARAMETERS[flow.name] <= set(schema.properties)
    promote_schema = built["promote"]._parameter_openapi_schema
    assert {"app", "environment"} <= set(promote_schema.required or [])


def _declared() -> list[dict[str, Any]]:
    declared = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]
    assert isinstance(declared, list)
    return declared


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_prefect_yaml_declares_what_serve_serves_on_the_process_pool(
    monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    from prefect.events import DeploymentEventTrigger

    from deployments.serve import deployments

    monkeypatch.chdir(ROOT)
    served = {d.name: d for d in deployments()}
    declared = {d["name"]: d for d in _declared()}
    assert {name: d["entrypoint"] for name, d in declared.items()} == {d.name: d.entrypoint for d in served.values()}
    for name, d in declared.items():
        assert d["work_pool"]["name"] == "promoflow"
        assert d.get("concurrency_limit") == served[name].concurrency_limit
        assert [s.get("interval") or s.get("cron") for s in d.get("schedules", [])] == [
            getattr(s.schedule, "cron", None) or s.schedule.interval.total_seconds()  # type: ignore[union-attr]
            for s in served[name].schedules or []
        ]
        specs = [{k: v for k, v in spec.items() if k != "type"} for spec in d.get("triggers", [])]
        triggers = [DeploymentEventTrigger(**spec) for spec in specs]
        assert [t.model_dump(exclude={"id"}) for t in triggers] == [
            t.model_dump(exclude={"id"})  # type: ignore[union-attr]
            for t in served[name].triggers
        ]
    assert declared["watch"]["concurrency_limit"] == 1 and declared["watch"]["triggers"]


@pytest.mark.xdist_group("served")  # it creates (and deletes) the deployments the serve tests serve
def test_prefect_yaml_bakes_no_path_of_the_deploying_machine(tmp_path: Path, prefect_api: str) -> None:
    """Deployed for real: the deployments hold no path and no checkout to enter; the worker brings its own config."""
    import os
    import subprocess
    import sys

    import httpx

    text = (ROOT / "deployments" / "prefect.yaml").read_text()
    assert not [s for s in _strings(yaml.safe_load(text)) if s.startswith("/") or "{{ $" in s]
    api = httpx.Client(base_url=prefect_api, timeout=30)
    pool = "promoflow"
    created_pool = api.post("/work_pools/", json={"name": pool, "type": "process"}).status_code == 201
    prefect_file = str(ROOT / "deployments" / "prefect.yaml")
    deployed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", prefect_file],
        cwd=tmp_path,  # anywhere: nothing is read from the checkout
        env={**os.environ, "PROMOFLOW_ROOT": str(ROOT), "PROMOFLOW_CONFIG": str(ROOT / "promotions.yaml")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = []
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for d in _declared():
            found = api.get(f"/deployments/name/{d['name']}/{d['name']}").json()
            ids.append(found["id"])
            assert found["entrypoint"] == d["entrypoint"] and not found["pull_steps"]
            assert found["parameters"] == {} and found["work_pool_name"] == pool
            assert not [s for s in _strings(found) if str(ROOT) in s or str(tmp_path) in s], found
        watch = api.get("/deployments/name/watch/watch").json()
        assert watch["global_concurrency_limit"]["limit"] == 1
        automations = api.post("/automations/filter", json={}).json()
        mine = [a for a in automations if any(action.get("deployment_id") == watch["id"] for action in a["actions"])]
        assert [a["trigger"]["expect"] for a in mine] == [["promoflow.registry.push"]]
    finally:
        for deployment_id in ids:
            api.delete(f"/deployments/{deployment_id}")  # and the trigger's automation with it
        if created_pool:
            api.delete(f"/work_pools/{pool}")
        api.close()


def test_each_environment_schedule_is_a_tick_schedule_named_after_it(tmp_path: Path) -> None:
    from deployments.serve import environment_schedules
    from promoflow import demo
    from promoflow.project import Project

    demo.write_config(tmp_path)
    config = tmp_path / "promotions.yaml"
    text = config.read_text()
    text = text.replace("    branch: env/dev\n", '    branch: env/dev\n    schedule: {cron: "*/15 * * * *"}\n')
    rrule = "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=10;BYMINUTE=0"
    text = text.replace(
        "    branch: env/prod\n", f"    branch: env/prod\n    schedule: {{rrule: '{rrule}', timezone: Europe/Berlin}}\n"
    )
    config.write_text(text)
    dev, prod = environment_schedules(Project.load(config))
    assert (dev.cron, dev.timezone, dev.slug, dev.parameters) == ("*/15 * * * *", "UTC", "dev", {"environment": "dev"})
    assert (prod.rrule, prod.timezone, prod.slug, prod.parameters) == (
        rrule,
        "Europe/Berlin",
        "prod",
        {"environment": "prod"},
    )
