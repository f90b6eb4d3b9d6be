from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from promoflow.gitops.manifests import (
    ImagePin,
    ImageUse,
    ManifestError,
    find_images,
    parse_image_reference,
    pin_images,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
OLD = "sha256:" + "0" * 64


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def read(root: Path, rel: str) -> str:
    return (root / rel).read_bytes().decode()


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ kustomization


KUSTOMIZATION = """\
# Kustomization for the demo app (prod)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: demo   # keep

resources:
- deployment.yaml  # the app
- service.yaml

images:
# web: promoted by promoflow
- newTag: "1.0.0"   # current
  digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000'
  name: registry.example.com/demo/web

# the worker keeps its own tag
- name: registry.example.com/demo/worker
  newTag: 7.7.7
labels:
- pairs: {app: demo}
  includeSelectors: true
"""

KUSTOMIZATION_PINNED = """\
# Kustomization for the demo app (prod)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: demo   # keep

resources:
- deployment.yaml  # the app
- service.yaml

images:
# web: promoted by promoflow
- newTag: "1.2.0"   # current
  digest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111'
  name: registry.example.com/demo/web

# the worker keeps its own tag
- name: registry.example.com/demo/worker
  newTag: 7.7.7
labels:
- pairs: {app: demo}
  includeSelectors: true
"""


def test_kustomization_comments_and_key_order_preserved(tmp_path: Path) -> None:
    write(tmp_path, "kustomization.yaml", KUSTOMIZATION)

    changed = pin_images(tmp_path, [ImagePin("registry.example.com/demo/web", "1.2.0", D1)])

    assert changed == ["kustomization.yaml"]
    assert read(tmp_path, "kustomization.yaml") == KUSTOMIZATION_PINNED


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        pytest.param(
            "images:\n- name: web\n  newTag: 1.0.0\n- name: api\n  newTag: 3.0.0\n",
            f"images:\n- name: web\n  newTag: 1.2.0\n  digest: {D1}\n- name: api\n  newTag: 3.0.0\n",
            id="dash-at-parent-indent",
        ),
        pytest.param(
            "images:\n  - name: web\n    newTag: 1.0.0\n  - name: api\n    newTag: 3.0.0\n",
            f"images:\n  - name: web\n    newTag: 1.2.0\n    digest: {D1}\n  - name: api\n    newTag: 3.0.0\n",
            id="dash-indented",
        ),
        pytest.param(
            "images:\n    - name: web\n      newTag: 1.0.0\n    - name: api\n      newTag: 3.0.0\n",
            f"images:\n    - name: web\n      newTag: 1.2.0\n      digest: {D1}\n    - name: api\n"
            "      newTag: 3.0.0\n",
            id="dash-indented-four",
        ),
    ],
)
def test_sequence_indent_styles(tmp_path: Path, original: str, expected: str) -> None:
    write(tmp_path, "kustomization.yaml", original)

    assert pin_images(tmp_path, [ImagePin("web", "1.2.0", D1)]) == ["kustomization.yaml"]
    assert read(tmp_path, "kustomization.yaml") == expected


def test_four_space_mapping_indent(tmp_path: Path) -> None:
    original = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "metadata:\n"
        "    name: demo\n"
        "images:\n"
        "    -   name: web\n"
        "        newTag: 1.0.0\n"
    )
    write(tmp_path, "kustomization.yml", original)

    assert pin_images(tmp_path, [ImagePin("web", "1.2.0", D1)]) == ["kustomization.yml"]
    assert read(tmp_path, "kustomization.yml") == original.replace(
        "        newTag: 1.0.0\n", f"        newTag: 1.2.0\n        digest: {D1}\n"
    )


def test_new_name_entry(tmp_path: Path) -> None:
    original = (
        "images:\n"
        "- name: web  # placeholder used in base/\n"
        "  newName: registry.example.com/demo/web\n"
        "  newTag: 1.0.0\n"
        f"  digest: {OLD}\n"
    )
    write(tmp_path, "kustomization.yaml", original)

    assert find_images(tmp_path) == [ImageUse("kustomization.yaml", "registry.example.com/demo/web", "1.0.0", OLD)]
    assert pin_images(tmp_path, [ImagePin("registry.example.com/demo/web", "1.2.0", D1)]) == ["kustomization.yaml"]
    assert read(tmp_path, "kustomization.yaml") == (
        "images:\n"
        "- name: web  # placeholder used in base/\n"
        "  newName: registry.example.com/demo/web\n"
        "  newTag: 1.2.0\n"
        f"  digest: {D1}\n"
    )


def test_entry_matched_by_name_keeps_new_name(tmp_path: Path) -> None:
    write(tmp_path, "kustomization.yaml", "images:\n- name: web\n  newName: mirror.local/web\n")

    assert pin_images(tmp_path, [ImagePin("web", "2.0.0", D2)]) == ["kustomization.yaml"]
    assert read(tmp_path, "kustomization.yaml") == (
        f"images:\n- name: web\n  newName: mirror.local/web\n  newTag: 2.0.0\n  digest: {D2}\n"
    )


def test_adding_digest_keeps_following_comments_in_place(tmp_path: Path) -> None:
    original = (
        "images:\n"
        '- name: "web"\n'
        '  newTag: "1.0.0"  # bumped by CI\n'
        "\n"
        "# worker\n"
        "- name: worker\n"
        "  newTag: 1.0.0\n"
        "  # end of worker\n"
        "\n"
        "- {name: flow, newTag: '1'}\n"
    )
    write(tmp_path, "kustomization.yaml", original)

    pins = [ImagePin("web", "1.2.0", D1), ImagePin("worker", "1.2", D2), ImagePin("flow", "5", D1)]
    assert pin_images(tmp_path, pins) == ["kustomization.yaml"]
    assert read(tmp_path, "kustomization.yaml") == (
        "images:\n"
        '- name: "web"\n'
        '  newTag: "1.2.0"  # bumped by CI\n'
        f'  digest: "{D1}"\n'  # added with the quoting of its siblings
        "\n"
        "# worker\n"
        "- name: worker\n"
        "  newTag: '1.2'\n"  # quoted, or kustomize would read a float
        f"  digest: {D2}\n"
        "  # end of worker\n"
        "\n"
        f"- {{name: flow, newTag: '5', digest: '{D1}'}}\n"
    )


def test_other_kustomization_file_names(tmp_path: Path) -> None:
    write(tmp_path, "Kustomization", "images:\n- name: web\n  newTag: '1'\n")

    assert find_images(tmp_path) == [ImageUse("Kustomization", "web", "1", None)]
    assert pin_images(tmp_path, [ImagePin("web", "2", D1)]) == ["Kustomization"]
    assert read(tmp_path, "Kustomization") == f"images:\n- name: web\n  newTag: '2'\n  digest: '{D1}'\n"


# ---------------------------------------------------------------- plain manifests


DEPLOYMENT = """\
# web tier
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  creationTimestamp: null
  labels: {app: web}
spec:
  replicas: 2
  template:
    metadata:
      annotations:
        note:   "extra spaces stay"
    spec:
      containers:
        - name: web
          image: "registry.example.com/demo/web:1.0.0"   # app
          args: ["--port", '8080']
          env:
            - name: DEBUG
              value: "False"
        - name: sidecar
          image: registry.example.com/demo/proxy:3.1
      automountServiceAccountToken: True
--- # the service
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80

      targetPort: 8080
...
"""


def test_deployment_multi_document(tmp_path: Path) -> None:
    write(tmp_path, "deployment.yaml", DEPLOYMENT)

    assert pin_images(tmp_path, [ImagePin("registry.example.com/demo/web", "1.2.0", D1)]) == ["deployment.yaml"]
    assert read(tmp_path, "deployment.yaml") == DEPLOYMENT.replace(
        '"registry.example.com/demo/web:1.0.0"', f'"registry.example.com/demo/web:1.2.0@{D1}"'
    )


def test_cronjob(tmp_path: Path) -> None:
    original = (
        "apiVersion: batch/v1\n"
        "kind: CronJob\n"
        "metadata:\n"
        "  name: report\n"
        "spec:\n"
        "  schedule: '0 3 * * *'\n"
        "  jobTemplate:\n"
        "    spec:\n"
        "      template:\n"
        "        spec:\n"
        "          restartPolicy: Never\n"
        "          containers:\n"
        "          - name: report\n"
        f"            image: registry.example.com/demo/report:0.9@{OLD}\n"
    )
    write(tmp_path, "jobs/cronjob.yaml", original)

    assert find_images(tmp_path) == [ImageUse("jobs/cronjob.yaml", "registry.example.com/demo/report", "0.9", OLD)]
    assert pin_images(tmp_path, [ImagePin("registry.example.com/demo/report", "1.0", D1)]) == ["jobs/cronjob.yaml"]
    assert read(tmp_path, "jobs/cronjob.yaml") == original.replace(f"report:0.9@{OLD}", f"report:1.0@{D1}")


def test_init_containers(tmp_path: Path) -> None:
    original = (
        "apiVersion: apps/v1\n"
        "kind: StatefulSet\n"
        "spec:\n"
        "  template:\n"
        "    spec:\n"
        "      initContainers:\n"
        "      - name: migrate\n"
        "        image: registry.example.com/demo/web:1.0.0\n"
        "      containers:\n"
        "      - name: db\n"
        "        image: postgres:16\n"
    )
    write(tmp_path, "statefulset.yaml", original)

    assert pin_images(tmp_path, [ImagePin("registry.example.com/demo/web", "1.2.0", D1)]) == ["statefulset.yaml"]
    assert read(tmp_path, "statefulset.yaml") == original.replace("web:1.0.0", f"web:1.2.0@{D1}")


def test_registry_with_port(tmp_path: Path) -> None:
    original = (
        "kind: Pod\n"
        "spec:\n"
        "  containers:\n"
        "  - name: a\n"
        "    image: localhost:5000/demo/web:1.0\n"
        "  - name: b\n"
        "    image: localhost:5000/demo/web\n"
        "  - name: c\n"
        "    image: localhost:5000/demo/other:1.0\n"
    )
    write(tmp_path, "pod.yml", original)

    assert [(u.name, u.tag) for u in find_images(tmp_path)] == [
        ("localhost:5000/demo/web", "1.0"),
        ("localhost:5000/demo/web", None),
        ("localhost:5000/demo/other", "1.0"),
    ]
    assert pin_images(tmp_path, [ImagePin("localhost:5000/demo/web", "2.0", D1)]) == ["pod.yml"]
    assert read(tmp_path, "pod.yml") == (
        "kind: Pod\n"
        "spec:\n"
        "  containers:\n"
        "  - name: a\n"
        f"    image: localhost:5000/demo/web:2.0@{D1}\n"
        "  - name: b\n"
        f"    image: localhost:5000/demo/web:2.0@{D1}\n"
        "  - name: c\n"
        "    image: localhost:5000/demo/other:1.0\n"
    )


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "kind: Pod\r\nspec:\r\n  containers:\r\n  - image: web:1 # c\r\n")
    write(tmp_path, "b.yaml", "kind: Pod\nspec:\n  containers:\n  - image: web:1")

    assert pin_images(tmp_path, [ImagePin("web", "2", D1)]) == ["a.yaml", "b.yaml"]
    assert read(tmp_path, "a.yaml") == f"kind: Pod\r\nspec:\r\n  containers:\r\n  - image: web:2@{D1} # c\r\n"
    assert read(tmp_path, "b.yaml") == f"kind: Pod\nspec:\n  containers:\n  - image: web:2@{D1}"


# ---------------------------------------------------------- idempotence, isolation


def make_app(root: Path) -> Path:
    app = root / "apps" / "demo"
    write(app, "kustomization.yaml", KUSTOMIZATION)
    write(app, "deployment.yaml", DEPLOYMENT)
    write(app, "service.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n")
    return app


def test_idempotent(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    pins = [ImagePin("registry.example.com/demo/web", "1.2.0", D1)]

    assert pin_images(app, pins) == ["deployment.yaml", "kustomization.yaml"]
    before = snapshot(app)
    past = 1_000_000_000
    for path in app.rglob("*.yaml"):
        os.utime(path, (past, past))

    assert pin_images(app, pins) == []
    assert snapshot(app) == before
    assert all(path.stat().st_mtime == past for path in app.rglob("*.yaml"))


def test_other_images_untouched(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    before = snapshot(app)

    assert pin_images(app, [ImagePin("registry.example.com/demo/worker", "8.0.0", D2)]) == ["kustomization.yaml"]
    after = snapshot(app)
    assert after["deployment.yaml"] == before["deployment.yaml"]
    assert after["service.yaml"] == before["service.yaml"]
    assert read(app, "kustomization.yaml") == KUSTOMIZATION.replace(
        "  newTag: 7.7.7\n", f"  newTag: 8.0.0\n  digest: {D2}\n"
    )
    assert sorted(p.name for p in app.iterdir()) == ["deployment.yaml", "kustomization.yaml", "service.yaml"]


def test_file_mode_preserved(tmp_path: Path) -> None:
    path = write(tmp_path, "kustomization.yaml", "images:\n- name: web\n")
    path.chmod(0o640)

    pin_images(tmp_path, [ImagePin("web", "1", D1)])

    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# ------------------------------------------------------------------------- errors


def test_image_not_referenced(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    before = snapshot(app)
    pins = [
        ImagePin("registry.example.com/demo/web", "1.2.0", D1),  # would change files
        ImagePin("registry.example.com/demo/ghost", "1.0.0", D2),
    ]

    with pytest.raises(ManifestError) as info:
        pin_images(app, pins)

    message = str(info.value)
    assert f"image registry.example.com/demo/ghost is not referenced in {app}" in message
    assert "add it to kustomization.yaml images: or a container image" in message
    assert snapshot(app) == before


def test_syntax_error(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    write(app, "broken/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: [1, 2\n  b: 3\n")
    before = snapshot(app)

    with pytest.raises(ManifestError) as info:
        pin_images(app, [ImagePin("registry.example.com/demo/web", "1.2.0", D1)])

    assert "broken/configmap.yaml:5" in str(info.value)
    assert "syntax error" in str(info.value)
    assert snapshot(app) == before


def test_syntax_error_line_in_later_document(tmp_path: Path) -> None:
    write(tmp_path, "multi.yaml", "a: 1\n---\nb: 2\n---\nc: {\n")

    with pytest.raises(ManifestError, match=r"multi\.yaml:6"):
        find_images(tmp_path)


def test_invalid_image_reference(tmp_path: Path) -> None:
    write(tmp_path, "pod.yaml", "kind: Pod\nspec:\n  containers:\n  - name: x\n    image: Web:1\n")

    with pytest.raises(ManifestError, match=r"pod\.yaml:5: invalid image reference 'Web:1'"):
        find_images(tmp_path)


def test_missing_app_dir(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist in the environment branch"):
        pin_images(tmp_path / "apps" / "missing", [ImagePin("web", "1", D1)])
    with pytest.raises(ManifestError, match="does not exist in the environment branch"):
        find_images(tmp_path / "apps" / "missing")


@pytest.mark.parametrize(
    "pin",
    [
        ImagePin("web:1.0", "1.0", D1),
        ImagePin("web", "bad tag", D1),
        ImagePin("web", "1.0", "sha256:abc"),
    ],
)
def test_invalid_pin(tmp_path: Path, pin: ImagePin) -> None:
    write(tmp_path, "kustomization.yaml", "images:\n- name: web\n")

    with pytest.raises(ManifestError, match="invalid image pin"):
        pin_images(tmp_path, [pin])


# -------------------------------------------------------------------- find_images


def test_find_images(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    write(app, ".github/ci.yaml", "kind: Pod\nspec:\n  containers:\n  - image: ignored:1\n")
    write(app, "values.yaml", "image: not-a-manifest:1\n")

    assert find_images(app) == [
        ImageUse("deployment.yaml", "registry.example.com/demo/web", "1.0.0", None),
        ImageUse("deployment.yaml", "registry.example.com/demo/proxy", "3.1", None),
        ImageUse("kustomization.yaml", "registry.example.com/demo/web", "1.0.0", OLD),
        ImageUse("kustomization.yaml", "registry.example.com/demo/worker", "7.7.7", None),
    ]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("web", ("web", None, None)),
        ("web:1.0", ("web", "1.0", None)),
        ("localhost:5000/web", ("localhost:5000/web", None, None)),
        ("localhost:5000/web:1.0", ("localhost:5000/web", "1.0", None)),
        (f"reg.io:443/a/b:v1@{D1}", ("reg.io:443/a/b", "v1", D1)),
        (f"web@{D1}", ("web", None, D1)),
        ("[::1]:5000/web:1", ("[::1]:5000/web", "1", None)),
    ],
)
def test_parse_image_reference(ref: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_image_reference(ref) == expected


@pytest.mark.parametrize("ref", ["", "Web", "web:", ":1", "web:1:2", "web@sha256:abc", "web:-x"])
def test_parse_image_reference_invalid(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_image_reference(ref)
