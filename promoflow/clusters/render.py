"""Render an environment's manifests into Kubernetes objects, refusing what the API server would refuse later.

An app directory is one of: a kustomization (`kubectl kustomize`, or `kustomize build`), a Helm chart
(`helm template`), or a plain directory of YAML files. Every object is validated here so that a broken
manifest fails the promotion with the file and object to fix, before anything reaches the cluster: names and
shape here, then each built-in kind against Kubernetes' own schema (`schemas`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from promoflow.clusters import schemas
from promoflow.errors import TerminalError
from promoflow.gitops.links import refuse_links_leaving
from promoflow.redact import redact

Manifest = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# RFC 1123: names of most kinds are subdomains; namespaces (and a namespace's own name) are labels.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAMED_KINDS = {"Namespace", "Service"}  # the API server requires a DNS-1123 label for these names
RENDER_TIMEOUT_SECONDS = 120
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(app_dir: Path, root: Path | None = None, values_files: Sequence[str] = ()) -> list[Manifest]:
    """The objects `app_dir` renders to, validated, Namespaces and CRDs first (they must exist before their users).

    `root`: the worktree `app_dir` is in (default: `app_dir`). No symbolic link may lead out of what is read:
    for a kustomization the whole worktree (it may name `../base` and anything else there), else `app_dir`.
    `values_files`: a chart's values files where the app's images are pinned (relative to `app_dir`), given to
    `helm template` after the chart's own `values.yaml`.
    """
    root = root or app_dir
    refuse_links_leaving(root, app_dir)
    if not app_dir.is_dir():
        raise TerminalError(f"{app_dir}: not a directory: point the environment at the app's manifest directory")
    if any((app_dir / name).is_file() for name in KUSTOMIZATION_FILES):
        refuse_links_leaving(root, root)
        sources = [(f"{app_dir.name} (kustomize output)", _kustomize(app_dir))]
    elif (app_dir / "Chart.yaml").is_file():
        sources = [(f"{app_dir.name} (helm template output)", _helm_template(app_dir, values_files))]
    else:
        files = sorted(p for p in app_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        sources = [(p.name, p.read_text()) for p in files]
    objects: list[Manifest] = []
    seen: dict[tuple[str, str, str | None, str], str] = {}
    for source, text in sources:
        for index, document in enumerate(_documents(source, text), start=1):
            where = f"{source}: object {index}"
            validate(document, where)
            key = identity(document)
            where = f"{where} ({document['kind']} {document['metadata']['name']})"
            if key in seen:
                raise TerminalError(f"{where}: duplicate of {seen[key]}: each object may be defined once")
            seen[key] = where
            schemas.check(document, where)
            objects.append(document)
    return sorted(objects, key=apply_order)


def identity(obj: Manifest) -> tuple[str, str, str | None, str]:
    """(group, kind, namespace, name): what makes two manifests the same object, whatever their API version."""
    group = obj["apiVersion"].rpartition("/")[0]
    return group, obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


def apply_order(obj: Manifest) -> int:
    kind = obj.get("kind")
    return 0 if kind == "Namespace" else 1 if kind == "CustomResourceDefinition" else 2


def validate(obj: Any, where: str) -> None:
    """Raise TerminalError, located at `where`, if `obj` is not an object the API server could accept."""
    if not isinstance(obj, dict):
        raise TerminalError(f"{where}: must be a mapping with apiVersion, kind and metadata, not {type(obj).__name__}")
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise TerminalError(f"{where}: {field} must be a non-empty string")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise TerminalError(f"{where} ({obj['kind']}): metadata must be a mapping with a name")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise TerminalError(f"{where} ({obj['kind']}): metadata.name must be a non-empty string")
    where = f"{where} ({obj['kind']} {name})"
    if obj["kind"] in LABEL_NAMED_KINDS:
        _check_name(where, "metadata.name", name, DNS_LABEL, 63, "a DNS-1123 label")
    else:
        _check_name(where, "metadata.name", name, DNS_SUBDOMAIN, 253, "a DNS-1123 subdomain")
    namespace = metadata.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TerminalError(f"{where}: metadata.namespace must be a string")
        _check_name(where, "metadata.namespace", namespace, DNS_LABEL, 63, "a DNS-1123 label")


def _check_name(where: str, field: str, value: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    if len(value) > limit or not pattern.match(value):
        raise TerminalError(
            f"{where}: {field} must be {what} (at most {limit} lowercase letters, digits, '-'"
            f"{', .' if pattern is DNS_SUBDOMAIN else ''}; starting and ending alphanumeric), not {value!r}"
        )


def _documents(source: str, text: str) -> list[Any]:
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise TerminalError(f"{source}{line}: invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise TerminalError(f"{source}: invalid YAML: {error}") from None


def _kustomize(app_dir: Path) -> str:
    if shutil.which("kubectl"):
        return _run(["kubectl", "kustomize", str(app_dir)], app_dir, "kubectl kustomize")
    if shutil.which("kustomize"):
        return _run(["kustomize", "build", str(app_dir)], app_dir, "kustomize build")
    raise TerminalError(f"{app_dir}: is a kustomization, but neither kubectl nor kustomize is installed: install one")


def _helm_template(app_dir: Path, values_files: Sequence[str]) -> str:
    if not shutil.which("helm"):
        raise TerminalError(f"{app_dir}: is a Helm chart, but helm is not installed: install helm to render it")
    values = [option for name in values_files for option in ("--values", str(app_dir / name))]
    return _run(["helm", "template", app_dir.name, str(app_dir), *values], app_dir, "helm template")


def _run(command: list[str], app_dir: Path, tool: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise TerminalError(f"{app_dir}: {tool} did not finish in {RENDER_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        detail = redact(done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")
        raise TerminalError(f"{app_dir}: {tool} failed: {detail}")
    return done.stdout
