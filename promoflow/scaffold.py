"""`promoflow init`: a commented promotions.yaml for an existing environments repository.

`promotions_yaml` writes the text from what `init`'s flags say; `existing_branches` reads the repository's branches,
so each environment gets the branch that is already there (`env/dev`, `dev` or `environments/dev`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field

from promoflow import references
from promoflow.config import NAME_PATTERN
from promoflow.errors import TerminalError

BRANCH_CANDIDATES = ("env/{}", "{}", "environments/{}")  # the first is what `init` writes when none exists yet
DOCKER_HUB_REGISTRY = "https://registry-1.docker.io"
LS_REMOTE_TIMEOUT_SECONDS = 20
_GITHUB_URL = re.compile(r"^(?:https://github\.com/|git@github\.com:)([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


@dataclass
class App:
    name: str
    path: str
    images: list[str] = field(default_factory=list)


def parse_apps(apps: list[str], images: list[str]) -> list[App]:
    """`NAME=PATH` apps and `[APP=]IMAGE` images (without `APP=` the image is the only app's)."""
    parsed: dict[str, App] = {}
    for entry in apps:
        name, sep, path = entry.partition("=")
        if not sep or not path:
            raise TerminalError(f"--app {entry!r}: write NAME=PATH, e.g. --app web=apps/web.")
        if not re.fullmatch(NAME_PATTERN, name):
            raise TerminalError(f"--app {entry!r}: an app name is lowercase letters, digits and '-', e.g. web.")
        if name in parsed:
            raise TerminalError(f"--app {name} is given twice.")
        parsed[name] = App(name, path.strip("/"))
    if not parsed:
        raise TerminalError("Name at least one app: --app NAME=PATH (its manifests' directory in each environment).")
    for entry in images:
        app, sep, image = entry.rpartition("=") if "=" in entry else ("", "", entry)
        if not sep and len(parsed) > 1:
            raise TerminalError(f"--image {entry!r}: with several apps, write APP=IMAGE.")
        owner = parsed.get(app) if sep else next(iter(parsed.values()))
        if owner is None:
            raise TerminalError(f"--image {entry!r}: there is no --app {app}.")
        try:
            references.image_name(image)
        except ValueError as error:
            raise TerminalError(f"--image {entry!r}: {error}.") from None
        owner.images.append(image)
    bare = [a.name for a in parsed.values() if not a.images]
    if bare:
        raise TerminalError(f"App {bare[0]} has no image: add --image {bare[0]}=IMAGE (as written in its manifests).")
    return list(parsed.values())


def parse_environments(names: str) -> list[str]:
    environments = [name.strip() for name in names.split(",") if name.strip()]
    for name in environments:
        if not re.fullmatch(NAME_PATTERN, name):
            raise TerminalError(f"--envs: {name!r} is not an environment name (lowercase letters, digits and '-').")
    if not environments or len(set(environments)) != len(environments):
        raise TerminalError("--envs: name each environment once, in promotion order, e.g. --envs dev,staging,prod.")
    return environments


def existing_branches(repository: str) -> set[str] | None:
    """The branches of the repository (a path or a git URL), or None when it cannot be read."""
    try:
        listed = subprocess.run(
            ["git", "ls-remote", "--heads", repository],
            capture_output=True,
            text=True,
            timeout=LS_REMOTE_TIMEOUT_SECONDS,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    return {line.split("refs/heads/", 1)[1] for line in listed.stdout.splitlines() if "refs/heads/" in line}


def environment_branch(name: str, branches: set[str] | None) -> str:
    candidates = [pattern.format(name) for pattern in BRANCH_CANDIDATES]
    return next((branch for branch in candidates if branches and branch in branches), candidates[0])


def github_repository(url: str) -> str:
    found = _GITHUB_URL.match(url)
    if found is None:
        raise TerminalError(
            "With --forge github, --repo is the repository's GitHub URL (https://github.com/OWNER/NAME.git); "
            "for GitHub Enterprise, write the `github:` section of promotions.yaml by hand."
        )
    return found.group(1)


def image_source(image: str) -> dict[str, str]:
    """Where a registry serves an image, by docker's rule: a first component with '.' or ':' (or `localhost`) is
    the registry's host, anything else is on Docker Hub (official images under `library/`)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        scheme = "http" if first.split(":")[0] in ("localhost", "127.0.0.1") else "https"
        return {"registry": f"{scheme}://{first}", "repository": rest}
    return {"registry": DOCKER_HUB_REGISTRY, "repository": image if rest else f"library/{image}"}


def promotions_yaml(
    repository: str,
    environments: list[str],
    apps: list[App],
    forge: str,
    layout: str,
    branches: set[str] | None,
) -> str:
    """The commented promotions.yaml. Approvals: none into the first environment, one into each after it."""

    def text(value: str) -> str:
        return json.dumps(value)  # a JSON string is a YAML string: quoted, escaped

    lines = [
        "# promotions.yaml: how releases of your apps move through your environments.",
        "# Written by `promoflow init`. Check it with `promoflow validate`; `promoflow schema` describes every field.",
        "version: 1",
        "",
        "# The git repository holding the environments' manifests.",
        "repository:",
        f"  url: {text(repository)}  # a git URL, or a path relative to this file",
    ]
    if forge == "github":
        lines += [
            "  forge: github  # each promotion is a pull request; reviews approve it, GitHub merges it",
            "  github:",
            f"    repository: {github_repository(repository)}",
            "    token: env:GITHUB_TOKEN  # where the token is: env:VARIABLE or prefect:BLOCK (see the README)",
        ]
    else:
        lines.append("  forge: local  # each promotion is a branch plus a record, approved with `promoflow approve`")
    if layout == "directories":
        main = next((b for b in ("main", "master") if branches and b in branches), "main")
        lines += [
            "  layout: directories  # one branch, one directory per environment (clusters/<environment>)",
            f"  branch: {text(main)}",
        ]
    else:
        lines.append("  layout: branches  # one branch per environment")
    lines += ["", "# In promotion order: a release enters an environment after it succeeded in the one before."]
    lines.append("environments:")
    for index, name in enumerate(environments):
        lines.append(f"  - name: {name}")
        if layout == "branches":
            branch = environment_branch(name, branches)
            missing = branches is not None and branch not in branches
            lines.append(
                f"    branch: {text(branch)}" + ("  # not in the repository yet: create it" if missing else "")
            )
        if index == 0:
            lines.append("    approval: {required: 0}  # promoted without waiting for a person")
        else:
            lines += [
                "    approval:",
                "      required: 1  # one approval before the merge",
                "      # approvers: [alice, bob]  # only these people (default: anyone but the requester)",
            ]
        lines.append("    # cluster: {target: kubernetes, context: NAME}  # or argocd / flux; default none: the merge")
    lines += ["", "# Your apps: where their manifests are in each environment, and where their releases come from."]
    lines.append("apps:")
    for app in apps:
        lines += [f"  - name: {app.name}", f"    path: {text(app.path)}", "    images:"]
        for image in app.images:
            source = image_source(image)
            lines += [
                f"      - name: {text(image)}  # as written in the manifests",
                f"        source: {{registry: {text(source['registry'])}, repository: {text(source['repository'])}}}",
                '        policy: {semver: "*"}  # the highest version; e.g. "^1.4", or a regex (see the README)',
            ]
    return "\n".join(lines) + "\n"
