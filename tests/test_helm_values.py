"""Image pins in a Helm chart's values file: the same comment-, order- and quoting-keeping edit as manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promoflow.config import HelmValues
from promoflow.gitops.links import LinkLeavesRepository
from promoflow.gitops.manifests import ImagePin, ImageUse, ManifestError, find_images, pin_images

WEB = "ghcr.io/acme/web"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
PIN = ImagePin(WEB, "1.2.0", D1)
BOTH = {WEB: HelmValues(file="values.yaml", tag="image.tag", digest="image.digest")}

CHART = "apiVersion: v2\nname: web\nversion: 0.1.0\n"
VALUES = """\
# Default values for web.
replicaCount: 2

image:
  repository: ghcr.io/acme/web   # where the image is
  pullPolicy: IfNotPresent
  # Overrides the image tag whose default is the chart appVersion.
  tag: "1.0.0"   # promoted by promoflow
  digest: ''

service: {type: ClusterIP, port: 80}
"""
VALUES_PINNED = f"""\
# Default values for web.
replicaCount: 2

image:
  repository: ghcr.io/acme/web   # where the image is
  pullPolicy: IfNotPresent
  # Overrides the image tag whose default is the chart appVersion.
  tag: "1.2.0"   # promoted by promoflow
  digest: '{D1}'

service: {{type: ClusterIP, port: 80}}
"""
# What `helm create` writes: Go templating that is not YAML by itself, an image made of template expressions.
TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.fullname" . }}
  labels:
    {{- include "web.labels" . | nindent 4 }}
spec:
  template:
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}@{{ .Values.image.digest }}"
"""
# A template that is YAML as it stands, with a literal image: pinned beside the values.
SIDECAR = """\
apiVersion: batch/v1
kind: Job
metadata: {name: "{{ .Release.Name }}-migrate"}
spec:
  template:
    spec:
      containers:
        - name: migrate
          image: ghcr.io/acme/web:1.0.0
"""


def chart(root: Path, values: str = VALUES, **files: str) -> Path:
    app = root / "apps" / "web"
    (app / "templates").mkdir(parents=True)
    (app / "Chart.yaml").write_text(CHART)
    (app / "values.yaml").write_text(values)
    (app / "templates" / "deployment.yaml").write_text(TEMPLATE)
    for name, text in files.items():
        path = app / name.replace("__", "/")
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    return app


def test_tag_and_digest_are_pinned_keeping_comments_order_and_quoting(tmp_path: Path) -> None:
    app = chart(tmp_path)
    assert pin_images(app, [PIN], tmp_path, BOTH) == ["values.yaml"]
    assert (app / "values.yaml").read_text() == VALUES_PINNED
    assert (app / "templates" / "deployment.yaml").read_text() == TEMPLATE  # the chart's own: never touched
    assert pin_images(app, [PIN], tmp_path, BOTH) == []  # pinned already: nothing written


def test_find_images_reads_the_pin_and_takes_placeholders_for_none(tmp_path: Path) -> None:
    app = chart(tmp_path)
    assert find_images(app, tmp_path, BOTH) == [ImageUse("values.yaml", WEB, "1.0.0", None)]  # digest: ''
    pin_images(app, [PIN], tmp_path, BOTH)
    assert find_images(app, tmp_path, BOTH) == [ImageUse("values.yaml", WEB, "1.2.0", D1)]
    assert find_images(app, tmp_path) == []  # without `helm`, a chart's values are no image references


def test_one_value_holding_tag_and_digest_and_the_repository(tmp_path: Path) -> None:
    values = "image:\n  repository: nginx\n  tag: 1.0.0 # the tag\n"
    app = chart(tmp_path, values)
    shared = {WEB: HelmValues(file="values.yaml", repository="image.repository", tag="image.tag", digest="image.tag")}
    pin_images(app, [PIN], tmp_path, shared)
    assert (app / "values.yaml").read_text() == f"image:\n  repository: {WEB}\n  tag: 1.2.0@{D1} # the tag\n"
    assert find_images(app, tmp_path, shared) == [ImageUse("values.yaml", WEB, "1.2.0", D1)]


def test_a_tag_that_reads_as_a_number_stays_a_string(tmp_path: Path) -> None:
    app = chart(tmp_path, "image:\n  tag: 11\n")
    pin_images(app, [ImagePin(WEB, "12", D1)], tmp_path, {WEB: HelmValues(file="values.yaml", tag="image.tag")})
    assert (app / "values.yaml").read_text() == "image:\n  tag: '12'\n"  # helm would render 12 either way


def test_values_and_a_literal_image_in_a_template_are_pinned_together(tmp_path: Path) -> None:
    app = chart(tmp_path, **{"templates__job.yaml": SIDECAR})
    changed = pin_images(app, [PIN], tmp_path, BOTH)
    assert changed == ["templates/job.yaml", "values.yaml"]
    assert f"image: {WEB}:1.2.0@{D1}\n" in (app / "templates" / "job.yaml").read_text()


def test_a_values_file_elsewhere_in_the_app_directory(tmp_path: Path) -> None:
    app = chart(tmp_path, **{"env__prod.values": 'image:\n  digest: ""  # pinned\n'})
    helm = {WEB: HelmValues(file="env/prod.values", digest="image.digest")}
    assert pin_images(app, [PIN], tmp_path, helm) == ["env/prod.values"]
    assert (app / "env" / "prod.values").read_text() == f'image:\n  digest: "{D1}"  # pinned\n'
    assert (app / "values.yaml").read_text() == VALUES


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        (
            HelmValues(file="values.yaml", tag="image.version"),
            "values.yaml:4: values.yaml has no image.version for the `helm.tag` of ghcr.io/acme/web: add it to the "
            "values file where the chart's templates read it, or fix the path in promotions.yaml",
        ),
        (
            HelmValues(file="values.yaml", tag="image.tag.name"),
            "values.yaml:8: values.yaml has no image.tag.name for the `helm.tag`",
        ),
        (
            HelmValues(file="values.yaml", tag="tag"),
            "values.yaml:1: values.yaml has no tag for the `helm.tag`",
        ),
        (
            HelmValues(file="values.yaml", tag="service"),
            "values.yaml:11: service in values.yaml is a mapping, not a value: point the `helm.tag` of "
            "ghcr.io/acme/web at the value itself",
        ),
        (
            HelmValues(file="values-prod.yaml", tag="image.tag"),
            "values-prod.yaml: no such values file (the `helm.file` of ghcr.io/acme/web in promotions.yaml): "
            "add it to the environment, or fix the path",
        ),
    ],
)
def test_what_cannot_be_pinned_is_refused_in_one_sentence_and_nothing_is_written(
    tmp_path: Path, helm: HelmValues, message: str
) -> None:
    app = chart(tmp_path)
    with pytest.raises(ManifestError) as refused:
        pin_images(app, [PIN], tmp_path, {WEB: helm})
    assert message in str(refused.value)
    assert str(refused.value).count(": ") <= 3 and "\n" not in str(refused.value)
    assert (app / "values.yaml").read_text() == VALUES


def test_a_values_file_of_two_documents_is_refused(tmp_path: Path) -> None:
    app = chart(tmp_path, "image: {tag: a}\n---\nimage: {tag: b}\n")
    with pytest.raises(ManifestError, match="a Helm values file is one YAML document, this one has 2"):
        pin_images(app, [PIN], tmp_path, {WEB: HelmValues(file="values.yaml", tag="image.tag")})


def test_a_values_file_linked_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(VALUES)
    repo = tmp_path / "repo"
    app = chart(repo)
    (app / "values.yaml").unlink()
    os.symlink(outside, app / "values.yaml")
    with pytest.raises(LinkLeavesRepository, match=r"apps/web/values\.yaml is a symbolic link to"):
        pin_images(app, [PIN], repo, BOTH)
    assert outside.read_text() == VALUES


def test_a_values_file_linked_inside_the_repository_is_written_through(tmp_path: Path) -> None:
    app = chart(tmp_path)
    shared = tmp_path / "shared-values.yaml"
    (app / "values.yaml").rename(shared)
    os.symlink("../../shared-values.yaml", app / "values.yaml")
    pin_images(app, [PIN], tmp_path, BOTH)
    assert shared.read_text() == VALUES_PINNED and (app / "values.yaml").is_symlink()


def test_a_template_that_is_yaml_with_a_templated_image_is_no_reference(tmp_path: Path) -> None:
    templated = SIDECAR.replace("ghcr.io/acme/web:1.0.0", '"{{ .Values.image.repository }}:{{ .Values.image.tag }}"')
    app = chart(tmp_path, **{"templates__job.yaml": templated})
    assert pin_images(app, [PIN], tmp_path, BOTH) == ["values.yaml"]
    # outside a chart the same text is a broken manifest, refused as before
    (app / "Chart.yaml").unlink()
    with pytest.raises(ManifestError, match="YAML syntax error"):
        find_images(app, tmp_path)


def test_an_image_neither_in_manifests_nor_in_values_is_refused(tmp_path: Path) -> None:
    app = chart(tmp_path)
    with pytest.raises(ManifestError, match=r"or name its Helm values with `helm:` in promotions\.yaml"):
        pin_images(app, [PIN], tmp_path)
    other = ImagePin("ghcr.io/acme/worker", "1.0.0", D2)
    with pytest.raises(ManifestError, match=r"image ghcr\.io/acme/worker is not referenced"):
        pin_images(app, [PIN, other], tmp_path, BOTH)
