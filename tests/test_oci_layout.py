"""promoflow.sources.oci_layout: publish, list, resolve, and clear errors for broken layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from promoflow.sources.oci_layout import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    SourceError,
    list_tags,
    publish,
    resolve,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def index_of(layout: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((layout / "index.json").read_text())
    return document


def write_index(layout: Path, index: dict[str, Any]) -> None:
    (layout / "index.json").write_text(json.dumps(index))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "web"
    for tag in ("1.0.0", "1.1.0", "v1.2.0-rc.1", "latest"):
        publish(path, tag)
    return path


def test_publish_creates_a_layout_and_lists_tags(layout: Path) -> None:
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    tags = list_tags(layout)
    assert list(tags) == ["1.0.0", "1.1.0", "v1.2.0-rc.1", "latest"]
    assert len(set(tags.values())) == 4
    for tag, digest in tags.items():
        assert digest.startswith("sha256:") and len(digest) == 71
        assert resolve(layout, tag) == digest


def test_digests_are_sha256_of_the_blobs_and_the_image_is_valid(layout: Path) -> None:
    index = index_of(layout)
    assert index["schemaVersion"] == 2
    for blob_file in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob_file.read_bytes()).hexdigest() == blob_file.name

    for entry in index["manifests"]:
        manifest_bytes = blob(layout, entry["digest"])
        assert sha256(manifest_bytes) == entry["digest"]
        assert len(manifest_bytes) == entry["size"]
        assert entry["mediaType"] == MANIFEST_MEDIA_TYPE
        assert entry["platform"] == {"architecture": "amd64", "os": "linux"}

        manifest = json.loads(manifest_bytes)
        assert manifest["schemaVersion"] == 2
        assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
        assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
        config_bytes = blob(layout, manifest["config"]["digest"])
        assert len(config_bytes) == manifest["config"]["size"]
        config = json.loads(config_bytes)
        assert (config["architecture"], config["os"]) == ("amd64", "linux")

        [layer] = manifest["layers"]
        assert layer["mediaType"] == LAYER_MEDIA_TYPE
        layer_bytes = blob(layout, layer["digest"])
        assert len(layer_bytes) == layer["size"]
        tar_bytes = gzip.decompress(layer_bytes)
        assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(tar_bytes)]}
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            [member] = tar.getmembers()
            assert member.isfile() and member.mtime == 0
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == entry["annotations"][REF_NAME_ANNOTATION].encode()


def test_republishing_the_same_content_gives_the_same_digest(layout: Path, tmp_path: Path) -> None:
    before = list_tags(layout)
    index_before = (layout / "index.json").read_bytes()
    assert publish(layout, "1.1.0") == before["1.1.0"]
    assert list_tags(layout) == before
    assert (layout / "index.json").read_bytes() == index_before
    # Same inputs in another layout: byte-identical image.
    other = tmp_path / "other"
    assert publish(other, "1.1.0") == before["1.1.0"]
    stamp = "2024-05-01T12:00:00Z"
    assert publish(other, "1.1.0", created=stamp) == publish(tmp_path / "third", "1.1.0", created=stamp)
    assert publish(other, "1.1.0", created=stamp) != before["1.1.0"]


def test_a_different_payload_moves_the_tag(layout: Path) -> None:
    before = list_tags(layout)
    moved = publish(layout, "1.0.0", payload=b"rebuilt")
    after = list_tags(layout)
    assert moved != before["1.0.0"]
    assert after["1.0.0"] == moved
    assert list(after) == list(before)  # the entry is replaced in place, nothing duplicated
    del after["1.0.0"], before["1.0.0"]
    assert after == before
    refs = [m["annotations"][REF_NAME_ANNOTATION] for m in index_of(layout)["manifests"]]
    assert refs.count("1.0.0") == 1
    assert resolve(layout, "1.0.0") == moved


def test_created_is_recorded_and_validated(tmp_path: Path) -> None:
    digest = publish(tmp_path / "l", "2.0.0", created="2024-05-01T12:00:00Z")
    manifest = json.loads(blob(tmp_path / "l", digest))
    assert manifest["annotations"] == {"org.opencontainers.image.created": "2024-05-01T12:00:00Z"}
    config = json.loads(blob(tmp_path / "l", manifest["config"]["digest"]))
    assert config["created"] == "2024-05-01T12:00:00Z"
    for bad in ("yesterday", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T12:00:00Z"):
        with pytest.raises(ValueError, match="RFC 3339"):
            publish(tmp_path / "l", "2.0.1", created=bad)


@pytest.mark.parametrize("tag", ["", "-rc", ".hidden", "a/b", "repo:tag", "x" * 129, "white space"])
def test_publish_rejects_tags_a_registry_would(tmp_path: Path, tag: str) -> None:
    with pytest.raises(ValueError, match="invalid tag"):
        publish(tmp_path / "l", tag)
    assert not (tmp_path / "l").exists()


def test_publish_refuses_a_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match="oci-layout file missing and the directory is not empty"):
        publish(tmp_path, "1.0.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    publish(empty, "1.0.0")
    assert list(list_tags(empty)) == ["1.0.0"]


def test_concurrent_publishers_do_not_lose_tags(tmp_path: Path) -> None:
    path = tmp_path / "busy"
    tags = [f"1.0.{i}" for i in range(16)]
    threads = [threading.Thread(target=publish, args=(path, tag)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(list_tags(path)) == sorted(tags)


# --- errors ----------------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"does not exist \(expected an OCI image layout directory\)"):
        list_tags(tmp_path / "nope")


def test_a_file_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceError, match="is not an OCI image layout: not a directory"):
        list_tags(tmp_path / "file")
    with pytest.raises(SourceError, match="not a directory"):
        publish(tmp_path / "file", "1.0.0")


def test_missing_oci_layout_file(layout: Path) -> None:
    (layout / "oci-layout").unlink()
    with pytest.raises(SourceError) as caught:
        list_tags(layout)
    assert str(caught.value) == f"{layout} is not an OCI image layout: oci-layout file missing"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "oci-layout is not valid JSON"),
        ("[]", "oci-layout file has no imageLayoutVersion"),
        ('{"imageLayoutVersion": 1}', "oci-layout file has no imageLayoutVersion"),
        ('{"imageLayoutVersion": "2.0.0"}', "unsupported imageLayoutVersion '2.0.0'"),
    ],
)
def test_invalid_oci_layout_file(layout: Path, content: str, message: str) -> None:
    (layout / "oci-layout").write_text(content)
    with pytest.raises(SourceError, match=message):
        list_tags(layout)


def test_missing_index(layout: Path) -> None:
    (layout / "index.json").unlink()
    with pytest.raises(SourceError, match=r"is not an OCI image layout: index\.json file missing"):
        list_tags(layout)


def test_corrupt_index(layout: Path) -> None:
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    with pytest.raises(SourceError) as caught:
        list_tags(layout)
    message = str(caught.value)
    assert message.startswith(f"{layout} is not a valid OCI image layout: index.json is not valid JSON")
    assert "line 1" in message
    # publish does not paper over a corrupt index either
    with pytest.raises(SourceError, match=r"index\.json is not valid JSON"):
        publish(layout, "9.9.9")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda index: index.update(schemaVersion=1), "index.json schemaVersion is 1, expected 2"),
        (lambda index: index.pop("manifests"), "index.json has no manifests list"),
        (lambda index: index["manifests"].append("x"), r"manifests\[4\] is not a JSON object"),
        (
            lambda index: index["manifests"][0].update(digest="md5:abc"),
            r"manifests\[0\] has an invalid digest",
        ),
        (lambda index: index["manifests"][1].update(size=-1), r"manifests\[1\] has an invalid size -1"),
        (lambda index: index["manifests"][1].pop("mediaType"), r"manifests\[1\] has no mediaType"),
        (
            lambda index: index["manifests"][2].update(annotations={REF_NAME_ANNOTATION: 3}),
            r"manifests\[2\] has invalid annotations",
        ),
    ],
)
def test_invalid_index_structure(layout: Path, mutate: Any, message: str) -> None:
    index = index_of(layout)
    mutate(index)
    write_index(layout, index)
    with pytest.raises(SourceError, match=message):
        list_tags(layout)


def test_missing_blob(layout: Path) -> None:
    digest = list_tags(layout)["1.1.0"]
    encoded = digest.split(":")[1]
    (layout / "blobs" / "sha256" / encoded).unlink()
    with pytest.raises(SourceError) as caught:
        list_tags(layout)
    assert str(caught.value) == (
        f"{layout} is not a valid OCI image layout: blob {digest} referenced by "
        f"index.json manifests[1] (tag '1.1.0') is missing (expected blobs/sha256/{encoded})"
    )
    # re-publishing the tag repairs the layout
    assert publish(layout, "1.1.0") == digest
    assert list_tags(layout)["1.1.0"] == digest


def test_truncated_blob(layout: Path) -> None:
    digest = list_tags(layout)["latest"]
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(SourceError, match="has 10 bytes, the descriptor says"):
        list_tags(layout)


def test_resolve_unknown_tag_lists_known_tags(tmp_path: Path) -> None:
    path = tmp_path / "many"
    for minor in range(12):
        publish(path, f"1.{minor}.0")
    publish(path, "latest")
    with pytest.raises(SourceError) as caught:
        resolve(path, "2.0.0")
    assert str(caught.value) == (
        f"tag '2.0.0' not found in {path}; known tags: "
        "1.11.0, 1.10.0, 1.9.0, 1.8.0, 1.7.0, 1.6.0, 1.5.0, 1.4.0, 1.3.0, 1.2.0 (and 3 more)"
    )
    empty = tmp_path / "empty"
    write_empty_layout(empty)
    with pytest.raises(SourceError, match="known tags: none"):
        resolve(empty, "1.0.0")


def write_empty_layout(path: Path) -> None:
    path.mkdir()
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    write_index(path, {"schemaVersion": 2, "manifests": []})


# --- annotations -----------------------------------------------------------------------------


def test_full_reference_annotations(layout: Path) -> None:
    index = index_of(layout)
    digests = [m["digest"] for m in index["manifests"]]
    names = [
        "registry.example.com:5000/team/web:2.0.0",
        "ghcr.io/acme/web:v2.1.0@sha256:" + "a" * 64,
        "web:2.2.0",
        "registry.example.com:5000/team/web",  # a reference without a tag: skipped
    ]
    for entry, name in zip(index["manifests"], names, strict=True):
        entry["annotations"][REF_NAME_ANNOTATION] = name
    index["manifests"].append({"mediaType": MANIFEST_MEDIA_TYPE, "digest": digests[0], "size": 0})
    index["manifests"][-1]["size"] = index["manifests"][0]["size"]  # untagged entry: skipped
    write_index(layout, index)
    assert list_tags(layout) == {"2.0.0": digests[0], "v2.1.0": digests[1], "2.2.0": digests[2]}
    assert resolve(layout, "v2.1.0") == digests[1]

    # publishing a tag replaces an entry whose full reference carries that tag
    moved = publish(layout, "2.0.0", payload=b"new")
    assert list_tags(layout)["2.0.0"] == moved
    refs = [m.get("annotations", {}).get(REF_NAME_ANNOTATION) for m in index_of(layout)["manifests"]]
    assert "registry.example.com:5000/team/web:2.0.0" not in refs


def test_one_tag_on_two_manifests_is_an_error(layout: Path) -> None:
    index = index_of(layout)
    index["manifests"][1]["annotations"][REF_NAME_ANNOTATION] = "docker.io/library/web:1.0.0"
    write_index(layout, index)
    with pytest.raises(SourceError, match=r"tag '1\.0\.0' names two different manifests"):
        list_tags(layout)


def test_layouts_written_by_other_tools_keep_their_extra_fields(layout: Path) -> None:
    index = index_of(layout)
    index["annotations"] = {"org.example.note": "kept"}
    index["manifests"][0]["annotations"]["org.example.other"] = "kept too"
    write_index(layout, index)
    publish(layout, "3.0.0")
    after = index_of(layout)
    assert after["annotations"] == {"org.example.note": "kept"}
    assert after["manifests"][0]["annotations"]["org.example.other"] == "kept too"
    assert not [p.name for p in layout.iterdir() if p.name.endswith(".tmp")]
