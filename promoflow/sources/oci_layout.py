"""OCI image-layout directories as a source of tags, plus a tiny publisher.

Layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):

    <dir>/oci-layout            {"imageLayoutVersion": "1.0.0"}
    <dir>/index.json            an image index; manifests[] are descriptors, tagged by the
                                annotation org.opencontainers.image.ref.name
    <dir>/blobs/<alg>/<hex>     content-addressed blobs (manifests, configs, layers)

`list_tags` and `resolve` read a layout and validate what they rely on; `publish` writes a small
but valid single-platform image (linux/amd64, one gzip layer) and tags it, which is what tests,
demos and local pipelines need. Stdlib only; no Prefect imports.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from promoflow import references
from promoflow.sources.semver import parse_version

if sys.platform != "win32":
    import fcntl

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "REF_NAME_ANNOTATION",
    "SourceError",
    "list_tags",
    "publish",
    "resolve",
]

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CREATED_ANNOTATION = "org.opencontainers.image.created"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
PAYLOAD_PATH = "payload"

_DIGEST = references.REGISTERED_DIGEST
# A tag as registries accept it (distribution spec), so published tags survive a round trip.
_TAG = references.TAG
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})", re.ASCII)
_MAX_KNOWN_TAGS = 10


class SourceError(Exception):
    """The layout is missing or invalid, or does not have the asked-for tag."""


def list_tags(layout_dir: Path) -> dict[str, str]:
    """Tag -> manifest digest (`sha256:<hex>`), in index.json order.

    Tags come from the `org.opencontainers.image.ref.name` annotation of index.json's
    `manifests[]`; a full reference (`registry:5000/repo:1.2.0`) yields the part after its last
    `:` (`1.2.0`). Entries without a usable tag are skipped. Raises SourceError when the layout is
    missing or invalid, a referenced blob is missing, or one tag names two different manifests.
    """
    layout_dir = Path(layout_dir)
    _check_layout_file(layout_dir)
    index = _read_index(layout_dir)
    tags: dict[str, str] = {}
    for position, entry in enumerate(index["manifests"]):
        where = f"index.json manifests[{position}]"
        digest, size = _descriptor(layout_dir, entry, where)
        tag = _tag_of(entry)
        if tag is not None:
            where += f" (tag {tag!r})"
        _check_blob(layout_dir, digest, size, where)
        if tag is None:
            continue
        if tag in tags and tags[tag] != digest:
            raise _invalid(layout_dir, f"tag {tag!r} names two different manifests ({tags[tag]} and {digest})")
        tags[tag] = digest
    return tags


def resolve(layout_dir: Path, tag: str) -> str:
    """The manifest digest a tag points to; SourceError if the layout lacks the tag."""
    tags = list_tags(layout_dir)
    if tag in tags:
        return tags[tag]
    known = _newest_first(list(tags))
    shown = ", ".join(known[:_MAX_KNOWN_TAGS]) or "none"
    if len(known) > _MAX_KNOWN_TAGS:
        shown += f" (and {len(known) - _MAX_KNOWN_TAGS} more)"
    raise SourceError(f"tag {tag!r} not found in {layout_dir}; known tags: {shown}")


def publish(
    layout_dir: Path,
    tag: str,
    *,
    created: str | None = None,
    payload: bytes | None = None,
) -> str:
    """Write a single-platform (linux/amd64) image into the layout and point `tag` at it.

    The image has one gzip layer holding the file `payload` (default content: the tag), a config
    blob and a manifest; bytes are deterministic for the same tag/payload/created, so publishing
    the same thing twice yields the same digest. `created` (RFC 3339, e.g.
    `2024-05-01T12:00:00Z`) is recorded in the config and as a manifest annotation. The layout is
    created if the directory is missing or empty; an existing entry for the tag is replaced (the
    tag moves). index.json is replaced atomically, under an exclusive lock on the directory.
    Returns the manifest digest. Raises ValueError for a bad tag or timestamp, SourceError if the
    directory is something other than an OCI image layout.
    """
    layout_dir = Path(layout_dir)
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"invalid tag {tag!r}: use 1-128 characters from [A-Za-z0-9_.-], not starting with . or -")
    if created is not None:
        _check_timestamp(created)
    layer_tar = _layer_tar(tag.encode() if payload is None else bytes(payload))
    layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    config = _canonical_json(_image_config(_digest(layer_tar), created))
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": _digest(layer), "size": len(layer)}],
    }
    if created is not None:
        manifest_doc["annotations"] = {CREATED_ANNOTATION: created}
    manifest = _canonical_json(manifest_doc)
    manifest_digest = _digest(manifest)

    if layout_dir.exists() and not layout_dir.is_dir():
        raise _not_a_layout(layout_dir, "not a directory")
    layout_dir.mkdir(parents=True, exist_ok=True)
    with _locked(layout_dir):
        index = _prepare_layout(layout_dir)
        for blob in (layer, config, manifest):
            _write_blob(layout_dir, blob)
        entry = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
        kept: list[Any] = []
        position = None
        for existing in index["manifests"]:
            if isinstance(existing, dict) and _tag_of(existing) == tag:
                position = len(kept) if position is None else position
                continue
            kept.append(existing)
        kept.insert(len(kept) if position is None else position, entry)
        index["manifests"] = kept
        _write_atomic(layout_dir / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())
    return manifest_digest


# --- reading -----------------------------------------------------------------------------------


def built_at(layout_dir: Path, digest: str) -> datetime | None:
    """When the image with this manifest digest was built (its config's `created`); None when unknown."""
    from promoflow.sources import config_created, config_digest

    try:
        config = config_digest(_blob_path(layout_dir, digest).read_bytes())
        if config is None or not _DIGEST.fullmatch(config):  # a hostile digest must not name a path
            return None
        return config_created(_blob_path(layout_dir, config).read_bytes())
    except (OSError, ValueError):  # a blob gone or a digest not of this layout: nothing to say
        return None


def _not_a_layout(layout_dir: Path, what: str) -> SourceError:
    return SourceError(f"{layout_dir} is not an OCI image layout: {what}")


def _invalid(layout_dir: Path, what: str) -> SourceError:
    return SourceError(f"{layout_dir} is not a valid OCI image layout: {what}")


def _read_json(layout_dir: Path, name: str) -> Any:
    try:
        text = (layout_dir / name).read_bytes()
    except FileNotFoundError:
        raise _not_a_layout(layout_dir, f"{name} file missing") from None
    except OSError as error:
        raise _invalid(layout_dir, f"cannot read {name}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise _invalid(layout_dir, f"{name} is not valid JSON ({error})") from None


def _check_layout_file(layout_dir: Path) -> None:
    if not layout_dir.exists():
        raise SourceError(f"{layout_dir} does not exist (expected an OCI image layout directory)")
    if not layout_dir.is_dir():
        raise _not_a_layout(layout_dir, "not a directory")
    marker = _read_json(layout_dir, LAYOUT_FILE)
    version = marker.get("imageLayoutVersion") if isinstance(marker, dict) else None
    if not isinstance(version, str):
        raise _invalid(layout_dir, f"{LAYOUT_FILE} file has no imageLayoutVersion string")
    if version != LAYOUT_VERSION:
        raise _invalid(
            layout_dir,
            f"unsupported imageLayoutVersion {version!r} in {LAYOUT_FILE} (expected {LAYOUT_VERSION})",
        )


def _read_index(layout_dir: Path) -> dict[str, Any]:
    index = _read_json(layout_dir, INDEX_FILE)
    if not isinstance(index, dict):
        raise _invalid(layout_dir, "index.json is not a JSON object")
    if index.get("schemaVersion") != 2:
        raise _invalid(layout_dir, f"index.json schemaVersion is {index.get('schemaVersion')!r}, expected 2")
    if not isinstance(index.get("manifests"), list):
        raise _invalid(layout_dir, "index.json has no manifests list")
    return index


def _descriptor(layout_dir: Path, entry: Any, where: str) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise _invalid(layout_dir, f"{where} is not a JSON object")
    digest = entry.get("digest")
    size = entry.get("size")
    if not isinstance(entry.get("mediaType"), str):
        raise _invalid(layout_dir, f"{where} has no mediaType")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise _invalid(layout_dir, f"{where} has an invalid digest {digest!r} (expected sha256:<64 hex>)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(layout_dir, f"{where} has an invalid size {size!r}")
    annotations = entry.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise _invalid(layout_dir, f"{where} has invalid annotations (expected string values)")
    return digest, size


def _blob_path(layout_dir: Path, digest: str) -> Path:
    algorithm, encoded = digest.split(":", 1)
    return layout_dir / "blobs" / algorithm / encoded


def _check_blob(layout_dir: Path, digest: str, size: int, where: str) -> None:
    path = _blob_path(layout_dir, digest)
    relative = path.relative_to(layout_dir).as_posix()
    try:
        actual = path.stat().st_size if path.is_file() else None
    except OSError:
        actual = None
    if actual is None:
        raise _invalid(layout_dir, f"blob {digest} referenced by {where} is missing (expected {relative})")
    if actual != size:
        raise _invalid(
            layout_dir,
            f"blob {relative} referenced by {where} has {actual} bytes, the descriptor says {size}",
        )


def _tag_of(entry: dict[str, Any]) -> str | None:
    """The tag of an index entry: its ref.name annotation, or the tag part of a full reference."""
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(name, str) or not name:
        return None
    reference = False
    at = name.find("@")
    if at != -1 and _DIGEST.fullmatch(name[at + 1 :]):  # repo:tag@sha256:... pins a digest too
        name, reference = name[:at], True
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[colon + 1 :] or None
    if slash != -1 or reference:  # registry/repo with no tag part
        return None
    return name


def _newest_first(tags: list[str]) -> list[str]:
    """Semver tags from the highest version down, then the other tags alphabetically."""
    versions = [(version, tag) for tag in tags if (version := parse_version(tag)) is not None]
    versions.sort(key=lambda item: item[0], reverse=True)
    return [tag for _, tag in versions] + sorted(tag for tag in tags if parse_version(tag) is None)


# --- writing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on the directory, so concurrent publishers do not lose tags."""
    if sys.platform == "win32":
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare_layout(layout_dir: Path) -> dict[str, Any]:
    """The current index of the layout, creating the layout in a missing or empty directory."""
    if not (layout_dir / LAYOUT_FILE).exists():
        if any(layout_dir.iterdir()):
            raise _not_a_layout(
                layout_dir,
                f"{LAYOUT_FILE} file missing and the directory is not empty; refusing to turn it into an image layout",
            )
        _write_atomic(layout_dir / LAYOUT_FILE, _canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
    else:
        _check_layout_file(layout_dir)
    (layout_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not (layout_dir / INDEX_FILE).exists():
        return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    return _read_index(layout_dir)


def _write_blob(layout_dir: Path, blob: bytes) -> None:
    path = _blob_path(layout_dir, _digest(blob))
    with contextlib.suppress(OSError):
        if path.stat().st_size == len(blob):
            return  # content-addressed: same name and size is the same blob
    _write_atomic(path, blob)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _check_timestamp(created: str) -> None:
    valid = isinstance(created, str) and _RFC3339.fullmatch(created) is not None
    if valid:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            valid = False
    if not valid:
        raise ValueError(f"created must be an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got {created!r}")


def _layer_tar(payload: bytes) -> bytes:
    info = tarfile.TarInfo(PAYLOAD_PATH)
    info.size = len(payload)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _image_config(diff_id: str, created: str | None) -> dict[str, Any]:
    history: dict[str, Any] = {"created_by": "promoflow.sources.oci_layout.publish"}
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [history],
    }
    if created is not None:
        config["created"] = created
        history["created"] = created
    return config


def _canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
