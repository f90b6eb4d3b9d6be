"""Image and repository names follow the OCI distribution grammar, the same in promotions.yaml, the manifests
promoflow edits and the registry client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promoflow.config_loader import ConfigError, load
from promoflow.errors import PromoflowError
from promoflow.gitops.manifests import parse_image_reference
from promoflow.sources.registry import RegistryClient, RetryPolicy

CONFIG = """\
version: 1
repository: {url: repo.git}
environments:
  - {name: dev, branch: env/dev}
apps:
  - name: web
    path: apps/web
    images:
      - name: "IMAGE"
        source: {registry: "http://127.0.0.1:9", repository: "REPOSITORY"}
"""

VALID = ["acme/my__app", "acme/my_app", "acme/my.app", "acme/my--app", "a/b/c/d", "web", "acme/app2", "0/1"]
INVALID = [
    "acme/My-app",
    "acme/-app",
    "acme/app-",
    "acme//app",
    "acme/app_",
    "acme/my___app",
    "/acme",
    "acme/",
    "a" * 256,
]


def config_problems(tmp_path: Path, image: str, repository: str) -> list[str]:
    path = tmp_path / "promotions.yaml"
    path.write_text(CONFIG.replace("IMAGE", image).replace("REPOSITORY", repository))
    try:
        load(path)
    except ConfigError as error:
        return [f"{p.path}: {p.message}" for p in error.problems]
    return []


def registry_refuses(repository: str) -> str | None:
    """The registry client's answer to listing `repository` on a port nobody listens on: the name's problem, if
    it has one (else the connection fails, which is not about the name)."""

    async def listing() -> None:
        async with RegistryClient("http://127.0.0.1:9", retry=RetryPolicy(attempts=1)) as client:
            await client.list_tags(repository)

    try:
        asyncio.run(listing())
    except PromoflowError as error:
        return str(error) if "not a valid repository name" in str(error) else None
    return None


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_valid_everywhere(tmp_path: Path, name: str) -> None:
    assert config_problems(tmp_path, f"registry.example.com:5000/{name}", name) == []
    assert parse_image_reference(f"registry.example.com:5000/{name}:1.0") == (
        f"registry.example.com:5000/{name}",
        "1.0",
        None,
    )
    assert registry_refuses(name) is None


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_are_refused_everywhere(tmp_path: Path, name: str) -> None:
    problems = config_problems(tmp_path, f"registry.example.com/{name}", name)
    assert [p.split(":")[0] for p in problems] == ["apps[0].images[0].name", "apps[0].images[0].source.repository"]
    assert "not an image name" in problems[0] and "not a repository name" in problems[1]
    with pytest.raises(ValueError):
        parse_image_reference(f"registry.example.com/{name}:1.0")
    assert registry_refuses(name) is not None


def test_an_image_name_with_a_tag_is_refused_in_promotions_yaml(tmp_path: Path) -> None:
    [problem] = config_problems(tmp_path, "ghcr.io/acme/web:1.0", "acme/web")
    assert problem.startswith("apps[0].images[0].name: not an image name (without tag or digest)")
