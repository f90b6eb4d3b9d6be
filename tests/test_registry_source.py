"""An app whose images come from a real registry (Debian's docker-registry), promoted end to end."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.conftest import Sandbox
from tests.registry_fixtures import (
    BASIC_PASSWORD,
    BASIC_USER,
    Pushed,
    basic_registry_fixture,
    pushed_fixture,
    registry_fixture,
    registry_storage_fixture,
)

__all__ = [  # fixtures used by name below
    "basic_registry_fixture",
    "pushed_fixture",
    "registry_fixture",
    "registry_storage_fixture",
]

pytestmark = pytest.mark.prefect


@pytest.fixture
def registry_app(sandbox: Sandbox, registry: str, pushed: Pushed) -> Sandbox:
    sandbox.edit_config(
        "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
        f"          registry: {registry}\n          repository: team/web",
    )
    return sandbox


def test_images_preview_lists_one_page_and_heads_one_tag(registry_app: Sandbox, pushed: Pushed) -> None:
    (preview,) = json.loads(registry_app.cli("images", "preview", "web", "--json").stdout)
    assert preview["tags"] == 31  # 30 versions and `latest`
    assert preview["pick"] == "1.2.9"
    assert preview["digest"] == pushed.digest("team/web", "1.2.9")


def test_a_release_from_the_registry_is_promoted_pinned_by_its_digest(
    registry_app: Sandbox, pushed: Pushed, prefect_api: str
) -> None:
    promoted = registry_app.cli("promote", "web", "--to", "dev", "--release", "1.2.3", env={"PROMOFLOW_USER": "rita"})
    assert promoted.returncode == 0, promoted.stderr
    kustomization = registry_app.git("show", "env/dev:apps/web/kustomization.yaml")
    assert 'newTag: "1.2.3"' in kustomization
    assert f"digest: {pushed.digest('team/web', '1.2.3')}" in kustomization

    unknown = registry_app.cli("promote", "web", "--to", "dev", "--release", "9.9.9")
    assert unknown.returncode == 1 and "Unknown release '9.9.9' of web" in unknown.stderr


def test_registry_credentials_come_from_a_prefect_secret_block_ahead_of_the_environment(
    sandbox: Sandbox, basic_registry: str, pushed: Pushed, prefect_api: str
) -> None:
    from prefect.blocks.system import Secret

    from promoflow.sources.registry import env_names

    Secret(value=BASIC_PASSWORD).save("pf-basic-registry", overwrite=True)
    Secret(value="not-the-password-31").save("pf-basic-wrong", overwrite=True)
    sandbox.edit_config(
        "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
        f"          registry: {basic_registry}\n          repository: team/web\n"
        f"          credentials: {{username: {BASIC_USER}, password: 'prefect:pf-basic-registry'}}",
    )
    # wrong credentials in the environment: the ones promotions.yaml names win
    user_var, password_var = env_names(urlsplit(basic_registry).netloc)
    wrong_env = {user_var: BASIC_USER, password_var: "from-the-environment-0"}
    preview = sandbox.cli("images", "preview", "web", "--json", env=wrong_env)
    assert preview.returncode == 0, preview.stderr
    (image,) = json.loads(preview.stdout)
    assert image["pick"] == "1.2.9" and image["digest"] == pushed.digest("team/web", "1.2.9")

    sandbox.edit_config("prefect:pf-basic-registry", "prefect:pf-basic-wrong")
    refused = sandbox.cli("images", "preview", "web")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "prefect:pf-basic-wrong" in refused.stderr and "not-the-password-31" not in refused.stderr

    sandbox.edit_config("prefect:pf-basic-wrong", "prefect:pf-basic-absent")
    missing = sandbox.cli("images", "preview", "web")
    assert missing.returncode == 1
    assert "registry password of registry.example.com/demo/web is missing" in missing.stderr
    assert "Prefect Secret block 'pf-basic-absent'" in missing.stderr


def test_a_watch_cycle_uses_the_credentials_promotions_yaml_names(
    sandbox: Sandbox, basic_registry: str, pushed: Pushed, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle's shared per-registry clients take the source's named credentials (read before the loop),
    not the wrong ones in the environment; a secret it cannot read fails that app only, in one sentence."""
    from prefect.blocks.system import Secret

    from promoflow import watching
    from promoflow.project import Project
    from promoflow.sources.registry import env_names

    Secret(value=BASIC_PASSWORD).save("pf-basic-cycle", overwrite=True)
    sandbox.edit_config(
        "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
        f"          registry: {basic_registry}\n          repository: team/web\n"
        f"          credentials: {{username: {BASIC_USER}, password: 'prefect:pf-basic-cycle'}}",
    )
    user_var, password_var = env_names(urlsplit(basic_registry).netloc)
    monkeypatch.setenv(user_var, BASIC_USER)
    monkeypatch.setenv(password_var, "from-the-environment-0")
    project = Project.load(sandbox.config)
    cycle = watching.run_cycle(project, list(project.config.apps))
    assert cycle.failed == {}
    assert cycle.newest["web"].label == "1.2.9"

    sandbox.edit_config("prefect:pf-basic-cycle", "prefect:pf-basic-gone")
    project = Project.load(sandbox.config)
    cycle = watching.run_cycle(project, list(project.config.apps))
    assert "Prefect Secret block 'pf-basic-gone'" in str(cycle.failed["web"]) and cycle.new == []


def test_the_newest_build_is_previewed_and_promoted_from_the_registry(
    sandbox: Sandbox, registry: str, prefect_api: str
) -> None:
    import uuid

    import httpx

    from tests.registry_fixtures import push_image

    repository = f"built{uuid.uuid4().hex[:8]}/web"  # the session's registry is shared: a repository of our own
    built = {"main-7": "2026-12-01T09:30:00Z", "main-12": "2026-12-01T08:00:00Z", "main-9": "2026-12-01T10:45:00Z"}
    with httpx.Client(base_url=registry, timeout=10) as http:
        digests = {tag: push_image(http, repository, tag, tag, created=at).digest for tag, at in built.items()}
    sandbox.edit_config(
        "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
        f"          registry: {registry}\n          repository: {repository}",
    )
    sandbox.edit_config('          semver: ">=1.0.0 <2"', "          order: created\n          regex: ^main-")
    sandbox.edit_config("          prerelease: false                       # 1.2.0-rc.1 is never picked\n", "")
    (preview,) = json.loads(sandbox.cli("images", "preview", "web", "--json").stdout)
    assert preview["candidates"] == ["main-9", "main-7", "main-12"]  # by build time, not by the build number
    assert preview["built"] == {tag: at.replace("Z", "+00:00") for tag, at in built.items()}
    assert preview["pick"] == "main-9" and preview["digest"] == digests["main-9"]

    promoted = sandbox.cli("promote", "web", "--to", "dev", env={"PROMOFLOW_USER": "rita"})
    assert promoted.returncode == 0, promoted.stderr
    kustomization = sandbox.git("show", "env/dev:apps/web/kustomization.yaml")
    assert 'newTag: "main-9"' in kustomization and f"digest: {digests['main-9']}" in kustomization
