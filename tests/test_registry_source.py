"""An app whose images come from a real registry (Debian's docker-registry), promoted end to end."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Sandbox
from tests.registry_fixtures import Pushed, pushed_fixture, registry_fixture, registry_storage_fixture

__all__ = ["pushed_fixture", "registry_fixture", "registry_storage_fixture"]  # fixtures used by name below

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
