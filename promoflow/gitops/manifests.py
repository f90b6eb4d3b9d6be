"""Read and edit container image references in an app's manifest directory.

Three kinds of references are understood:

* kustomize ``images:`` entries in ``kustomization.yaml`` / ``kustomization.yml`` /
  ``Kustomization`` files (``name``, ``newName``, ``newTag``, ``digest``);
* container ``image:`` strings in plain Kubernetes manifests (``*.yaml`` / ``*.yml``):
  Deployment, StatefulSet, DaemonSet, ReplicaSet, Job (``spec.template.spec``),
  CronJob (``spec.jobTemplate.spec.template.spec``) and Pod (``spec``), both
  ``containers`` and ``initContainers``; ``kind: List`` items are descended into;
* values of a Helm values file at the dotted paths promotions.yaml names for an image
  (``helm: {file: values.yaml, tag: image.tag, digest: image.digest}``). A path the file
  lacks is refused, not created: the chart's templates would not read a value they do not
  know. In a chart (a directory with ``Chart.yaml``) a template under ``templates/`` or
  ``charts/`` that is not YAML by itself (``{{- if }}`` lines) is not scanned, nor is an
  ``image:`` made of template expressions: those are the chart's, filled from the values.

Edits are done with ruamel.yaml in round-trip mode and are written so that everything
except the changed values stays byte-identical:

* a file is split into its YAML documents at the text level; ``---`` / ``...`` marker
  lines, directives and documents that are not edited are copied verbatim;
* an edited document is dumped with the indentation style detected for it (mapping
  indent, sequence indent and dash offset, verified by a no-op round trip), quotes are
  preserved and lines are never folded;
* whatever ruamel still normalises in an edited document (``key: null`` -> ``key:``,
  ``True`` -> ``true``, extra spaces after ``:`` ...) is undone by applying only the
  changed lines of the dump onto the original text (three-way line merge); the result
  is re-parsed and compared with the intended data before anything is written.

Hidden files and directories (``.git``, ``.github``, ...) are skipped and symlinked
directories are not followed. A symbolic link that leads out of the repository (``root``) is refused
before anything is read (``promoflow.gitops.links``); one that stays inside it is read, and written
through to its target.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import itertools
import logging
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from promoflow import references, yaml12
from promoflow.errors import TerminalError
from promoflow.gitops.links import refuse_links_leaving

if TYPE_CHECKING:
    from promoflow.config import HelmValues

__all__ = [
    "KUSTOMIZATION_FILENAMES",
    "ImagePin",
    "ImageUse",
    "ManifestError",
    "find_images",
    "parse_image_reference",
    "pin_images",
]

log = logging.getLogger(__name__)

KUSTOMIZATION_FILENAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MANIFEST_SUFFIXES = (".yaml", ".yml")
_CHART_TEMPLATE_DIRS = ("templates/", "charts/")

# kind -> path (list of keys) from the document root to the pod spec
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_CONTAINER_LIST_KEYS = ("initContainers", "containers")


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class ImagePin:
    """The tag and digest an image must point to."""

    name: str  # image name as in config, e.g. "registry.example.com/demo/web"
    tag: str  # e.g. "1.2.0"
    digest: str  # "sha256:<64 hex>"


@dataclass(frozen=True)
class ImageUse:
    """One place an image is referenced."""

    file: str  # path relative to the app dir (POSIX separators)
    name: str
    tag: str | None
    digest: str | None


class ManifestError(TerminalError):
    """Terminal: the message names the file (and line if known) and what is wrong."""


_PIN_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)


def parse_image_reference(ref: str) -> tuple[str, str | None, str | None]:
    """Split ``name[:tag][@digest]`` into ``(name, tag, digest)``.

    Follows the docker/distribution reference grammar, so a registry port is part of the
    name (``localhost:5000/web:1.0`` -> ``("localhost:5000/web", "1.0", None)``).
    Raises ``ValueError`` when ``ref`` is not a valid reference.
    """
    if len(ref) > 1024:
        raise ValueError("image reference is too long")
    match = references.REFERENCE.fullmatch(ref)
    if match is None:
        raise ValueError(f"invalid image reference {ref!r}")
    name = match["name"]
    if len(name) > references.MAX_NAME_LENGTH:
        raise ValueError(f"image name longer than {references.MAX_NAME_LENGTH} characters in {ref!r}")
    return name, match["tag"], match["digest"]


def _validate_pins(pins: list[ImagePin]) -> dict[str, ImagePin]:
    by_name: dict[str, ImagePin] = {}
    for pin in pins:
        problems = []
        if not isinstance(pin.name, str) or not references.is_name(pin.name):
            problems.append(f"name {pin.name!r} is not a valid image name (no tag or digest)")
        if not isinstance(pin.tag, str) or not references.TAG.fullmatch(pin.tag):
            problems.append(f"tag {pin.tag!r} is not a valid image tag")
        if not isinstance(pin.digest, str) or not _PIN_DIGEST_RE.fullmatch(pin.digest):
            problems.append(f"digest {pin.digest!r} is not of the form sha256:<64 lowercase hex>")
        if problems:
            raise ManifestError(f"invalid image pin for {pin.name!r}: " + "; ".join(problems))
        previous = by_name.get(pin.name)
        if previous is not None and previous != pin:
            raise ManifestError(
                f"conflicting pins for image {pin.name}: {previous.tag}@{previous.digest} and {pin.tag}@{pin.digest}"
            )
        by_name[pin.name] = pin
    return by_name


# ------------------------------------------------------------------ ruamel plumbing


@dataclass(frozen=True)
class _Style:
    mapping: int = 2
    sequence: int = 2
    offset: int = 0
    explicit_start: bool = False


def _yaml(style: _Style | None = None) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 2**31 - 1  # never fold long lines
    if style is not None:
        yaml.indent(mapping=style.mapping, sequence=style.sequence, offset=style.offset)
        yaml.explicit_start = style.explicit_start
    return yaml


def _dump(data: Any, style: _Style) -> str:
    buf = io.StringIO()
    _yaml(style).dump(data, buf)
    return buf.getvalue()


_KEY_ONLY_RE = re.compile(r"^(?P<lead>(?:-[ \t]+)*)(?P<key>[^\s#][^#]*?):[ \t]*(?:#.*)?$")
_DASH_RE = re.compile(r"^-(?P<gap>[ \t]+)\S")


def _guess_style(body: str) -> _Style:
    """Guess mapping indent, sequence indent and dash offset from the text."""
    lines: list[tuple[int, str]] = []
    for raw in body.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip(" \t\r")))
    mapping_votes: Counter[int] = Counter()
    sequence_votes: Counter[tuple[int, int]] = Counter()
    for (indent, text), (next_indent, next_text) in itertools.pairwise(lines):
        match = _KEY_ONLY_RE.match(text)
        if match is None:
            continue
        key_col = indent + len(match["lead"])
        dash = _DASH_RE.match(next_text)
        if dash is not None and next_indent >= key_col:
            offset = next_indent - key_col
            sequence_votes[(offset + 1 + len(dash["gap"]), offset)] += 1
        elif dash is None and next_indent > key_col:
            mapping_votes[next_indent - key_col] += 1
    mapping = mapping_votes.most_common(1)[0][0] if mapping_votes else 2
    sequence, offset = sequence_votes.most_common(1)[0][0] if sequence_votes else (2, 0)
    return _Style(mapping, sequence, offset, body.startswith("---"))


def _candidate_styles(body: str) -> Iterator[_Style]:
    guess = _guess_style(body)
    yield guess
    seen = {guess}
    for mapping in (guess.mapping, 2, 4, 3):
        for sequence, offset in ((guess.sequence, guess.offset), (2, 0), (4, 2), (3, 1), (4, 0), (6, 4)):
            style = _Style(mapping, sequence, offset, guess.explicit_start)
            if style not in seen:
                seen.add(style)
                yield style


def _plain(value: Any) -> Any:
    """Order-sensitive, style-free view of loaded YAML data (for verification)."""
    if isinstance(value, dict):
        return ("map", [(_plain(k), _plain(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [_plain(v) for v in value])
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", repr(float(value)))
    return ("other", repr(value))


def _merge_changes(original: str, base: str, new: str) -> str | None:
    """Apply the line changes ``base -> new`` onto ``original``.

    ``base`` is ruamel's dump of the unmodified document, ``new`` the dump of the edited
    one.  Returns None when a changed region of ``base`` cannot be located unambiguously
    in ``original``.
    """
    orig_lines = original.splitlines(keepends=True)
    base_lines = base.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    to_orig: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, base_lines, orig_lines, autojunk=False)
    for tag, i1, i2, j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                to_orig[i1 + k] = j1 + k
    hunks: list[tuple[int, int, list[str]]] = []
    matcher = difflib.SequenceMatcher(None, base_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            mapped = [to_orig.get(i) for i in range(i1, i2)]
            start = mapped[0]
            if start is None or mapped != list(range(start, start + (i2 - i1))):
                return None
            end = start + (i2 - i1)
        else:  # pure insertion before base line i1
            before = to_orig.get(i1 - 1) if i1 > 0 else -1
            after = to_orig.get(i1) if i1 < len(base_lines) else len(orig_lines)
            if before is None or after is None or after != before + 1:
                return None
            start = end = after
        hunks.append((start, end, new_lines[j1:j2]))
    for start, end, replacement in reversed(hunks):
        orig_lines[start:end] = replacement
    return "".join(orig_lines)


# --------------------------------------------------------------------- file model

_MARKER_RE = re.compile(r"(?:---|\.\.\.)(?:[ \t]+(?:#.*)?)?\r?\n?")
_START_WITH_CONTENT_RE = re.compile(r"---[ \t]+[^\s#]")


@dataclass
class _Piece:
    text: str  # verbatim text of this piece
    start_line: int  # 0-based line number of the piece's first line in the file
    is_doc: bool
    data: Any = None
    changed: bool = False
    unread: bool = False  # a document that cannot hold an image reference: only checked to be YAML, data None
    before: str | None = None  # ruamel's dump of the document before its edit, in its guessed style


@dataclass
class _File:
    path: Path
    rel: str
    is_kustomization: bool
    is_template: bool  # a Helm chart's template: Go templating, YAML only where it happens to be
    raw: bytes
    text: str  # decoded, BOM removed, CRLF normalised to LF when the file is pure CRLF
    bom: bool
    crlf: bool
    pieces: list[_Piece]

    def where(self, piece: _Piece, line: int | None = None) -> str:
        """``path:line`` for a 0-based line inside ``piece`` (or just ``path``)."""
        if line is None:
            return str(self.path)
        return f"{self.path}:{piece.start_line + line + 1}"


def _split_documents(text: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    buf: list[str] = []
    buf_start = 0

    def flush(next_start: int) -> None:
        nonlocal buf, buf_start
        if buf:
            pieces.append(_Piece("".join(buf), buf_start, is_doc=True))
        buf = []
        buf_start = next_start

    for lineno, line in enumerate(text.splitlines(keepends=True)):
        if _MARKER_RE.fullmatch(line) or line.startswith("%"):
            flush(lineno + 1)
            pieces.append(_Piece(line, lineno, is_doc=False))
        elif _START_WITH_CONTENT_RE.match(line):  # "--- |", "--- !tag", ...: part of the doc
            flush(lineno)
            buf.append(line)
        else:
            buf.append(line)
    flush(0)
    return pieces


def _load_file(app_dir: Path, path: Path, is_kustomization: bool, is_template: bool = False) -> _File | None:
    """The file, parsed; None for a chart template that is not YAML by itself (nothing promoflow can edit)."""
    rel = path.relative_to(app_dir).as_posix()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: file is not valid UTF-8 (byte {exc.start})") from exc
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if crlf:
        text = text.replace("\r\n", "\n")
    f = _File(path, rel, is_kustomization, is_template, raw, text, bom, crlf, _split_documents(text))
    try:
        for piece in f.pieces:
            if not piece.is_doc:
                continue
            # ruamel.yaml reads a document as slowly as it writes one: only those that can name an image
            piece.unread = not is_kustomization and not _may_name_images(piece.text) and _well_formed(piece.text)
            if not piece.unread:
                piece.data = _parse(f, piece)
    except ManifestError:
        if is_template:
            return None
        raise
    return f


def _may_name_images(text: str) -> bool:
    """Whether a document can hold an `image:`: without a backslash escape, YAML spells that key only as itself."""
    return "image" in text or "\\" in text


def _well_formed(text: str) -> bool:
    """Whether libyaml reads the document as ruamel.yaml would (else ruamel.yaml reads it, and says what is wrong)."""
    try:
        yaml12.read(text)
    except yaml12.NotPlain:
        return False
    return True


def _read(f: _File, piece: _Piece) -> Any:
    """The document's data, read now if it was left unread (a values file names its own paths)."""
    if piece.unread:
        piece.data, piece.unread = _parse(f, piece), False
    return piece.data


def _parse(f: _File, piece: _Piece, text: str | None = None) -> Any:
    try:
        return _yaml().load(piece.text if text is None else text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or exc.__class__.__name__
        if exc.problem and exc.context:
            message += f" ({exc.context}"
            if exc.context_mark is not None:
                message += f" started at line {piece.start_line + exc.context_mark.line + 1}"
            message += ")"
        where = f.where(piece, mark.line) if mark is not None else str(f.path)
        raise ManifestError(f"{where}: YAML syntax error: {message}") from exc
    except YAMLError as exc:
        raise ManifestError(f"{f.path}: YAML error: {exc}") from exc


def _discover(app_dir: Path, root: Path | None) -> list[_File]:
    refuse_links_leaving(root or app_dir, app_dir)
    if not app_dir.is_dir():
        if app_dir.exists():
            raise ManifestError(f"app path {app_dir} is not a directory in the environment branch")
        raise ManifestError(f"app directory {app_dir} does not exist in the environment branch")
    found: list[tuple[str, Path, bool]] = []
    chart = (app_dir / "Chart.yaml").is_file()  # then its templates are Go templates first, YAML maybe
    for folder, dirs, names in os.walk(app_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(folder, name)
            if name in KUSTOMIZATION_FILENAMES:
                found.append((path.relative_to(app_dir).as_posix(), path, True))
            elif name.endswith(_MANIFEST_SUFFIXES):
                found.append((path.relative_to(app_dir).as_posix(), path, False))
    found.sort()
    loaded = [
        _load_file(app_dir, path, kust, chart and rel.startswith(_CHART_TEMPLATE_DIRS)) for rel, path, kust in found
    ]
    return [f for f in loaded if f is not None]


# ------------------------------------------------------------------ reference scan


@dataclass
class _Ref:
    file: _File
    piece: _Piece
    kind: str  # "kustomize" | "container"
    node: dict[Any, Any]  # the kustomize images entry / the container mapping
    use: ImageUse


def _line_of(node: Any, key: Any) -> int | None:
    try:
        return int(node.lc.value(key)[0])
    except (AttributeError, KeyError, TypeError, IndexError):
        try:
            return int(node.lc.line)
        except (AttributeError, TypeError):
            return None


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kustomize_refs(f: _File, piece: _Piece) -> Iterator[_Ref]:
    data = piece.data
    if data is None:
        return
    if not isinstance(data, dict):
        raise ManifestError(f"{f.where(piece, 0)}: a kustomization must be a mapping")
    images = data.get("images")
    if images is None:
        return
    if not isinstance(images, list):
        raise ManifestError(f"{f.where(piece, _line_of(data, 'images'))}: 'images' must be a list")
    for index, entry in enumerate(images):
        if not isinstance(entry, dict):
            line = _line_of(images, index)
            raise ManifestError(f"{f.where(piece, line)}: images entry must be a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            line = _line_of(images, index)
            raise ManifestError(f"{f.where(piece, line)}: images entry without a 'name'")
        new_name = entry.get("newName")
        if new_name is not None and not isinstance(new_name, str):
            raise ManifestError(f"{f.where(piece, _line_of(entry, 'newName'))}: newName must be a string")
        used = new_name or name
        use = ImageUse(f.rel, used, _scalar_text(entry.get("newTag")), _scalar_text(entry.get("digest")))
        yield _Ref(f, piece, "kustomize", entry, use)


def _dig(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _workload_docs(data: Any) -> Iterator[dict[Any, Any]]:
    if not isinstance(data, dict):
        return
    kind = data.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List")):
        items = data.get("items")
        if isinstance(items, list):
            for item in items:
                yield from _workload_docs(item)
        return
    if isinstance(kind, str) and kind in _POD_SPEC_PATHS:
        yield data


def _container_refs(f: _File, piece: _Piece) -> Iterator[_Ref]:
    for doc in _workload_docs(piece.data):
        pod_spec = _dig(doc, _POD_SPEC_PATHS[doc["kind"]])
        if not isinstance(pod_spec, dict):
            continue
        for key in list(pod_spec):
            if key not in _CONTAINER_LIST_KEYS:
                continue
            containers = pod_spec[key]
            if not isinstance(containers, list):
                continue
            for container in containers:
                if not isinstance(container, dict) or "image" not in container:
                    continue
                image = container["image"]
                if f.is_template and isinstance(image, str) and "{{" in image:
                    continue  # the chart fills it in from its values
                where = f.where(piece, _line_of(container, "image"))
                if not isinstance(image, str):
                    raise ManifestError(f"{where}: container image must be a string, got {image!r}")
                try:
                    name, tag, digest = parse_image_reference(image)
                except ValueError as exc:
                    raise ManifestError(f"{where}: {exc}") from exc
                yield _Ref(f, piece, "container", container, ImageUse(f.rel, name, tag, digest))


def _refs(files: list[_File]) -> list[_Ref]:
    refs: list[_Ref] = []
    for f in files:
        for piece in f.pieces:
            if not piece.is_doc:
                continue
            if f.is_kustomization:
                refs.extend(_kustomize_refs(f, piece))
            else:
                refs.extend(_container_refs(f, piece))
    return refs


# -------------------------------------------------------------------- Helm values

_HELM_FIELDS = ("repository", "tag", "digest")


@dataclass
class _HelmRef:
    """Where a values file pins one image: each configured field's (mapping, key) in the file's data."""

    image: str  # the image's name in promotions.yaml
    file: _File
    piece: _Piece
    places: dict[str, tuple[Any, str]]  # "repository" / "tag" / "digest" -> (mapping, key)
    shared: bool  # `tag` and `digest` name one value, which holds `TAG@DIGEST`
    use: ImageUse


def _helm_refs(app_dir: Path, files: list[_File], helm: Mapping[str, HelmValues]) -> list[_HelmRef]:
    """The values each image's `helm` names; a values file not among `files` is loaded and added to them."""
    by_rel = {f.rel: f for f in files}
    refs = []
    for image, values in helm.items():
        f = by_rel.get(values.file)
        if f is None:
            path = app_dir / values.file
            if not path.is_file():
                raise ManifestError(
                    f"{path}: no such values file (the `helm.file` of {image} in promotions.yaml): "
                    "add it to the environment, or fix the path"
                )
            f = _load_file(app_dir, path, is_kustomization=False)
            assert f is not None  # only a template may be left out
            files.append(f)
            by_rel[f.rel] = f
        documents = [piece for piece in f.pieces if piece.is_doc]
        if len(documents) != 1:
            raise ManifestError(f"{f.path}: a Helm values file is one YAML document, this one has {len(documents)}")
        piece = documents[0]
        places = {
            field: _helm_place(f, piece, path, image, field)
            for field in _HELM_FIELDS
            if (path := getattr(values, field)) is not None
        }
        shared = values.tag is not None and values.tag == values.digest
        refs.append(_HelmRef(image, f, piece, places, shared, _helm_use(f, image, places, shared)))
    return refs


def _helm_place(f: _File, piece: _Piece, path: str, image: str, field: str) -> tuple[Any, str]:
    """(mapping, key) of the value at the dotted `path`; refused when the file lacks it or it is no value."""
    node, line = _read(f, piece), 0
    keys = path.split(".")
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ManifestError(
                f"{f.where(piece, line)}: {f.rel} has no {path} for the `helm.{field}` of {image}: add it to the "
                "values file where the chart's templates read it, or fix the path in promotions.yaml"
            )
        line = int(node.lc.key(key)[0])  # type: ignore[attr-defined]  # the key's line (a mapping value: the next)
        if depth < len(keys) - 1:
            node = node[key]
    value = node[keys[-1]]
    if isinstance(value, dict | list):
        raise ManifestError(
            f"{f.where(piece, line)}: {path} in {f.rel} is a {'mapping' if isinstance(value, dict) else 'list'}, "
            f"not a value: point the `helm.{field}` of {image} at the value itself"
        )
    return node, keys[-1]


def _helm_use(f: _File, image: str, places: dict[str, tuple[Any, str]], shared: bool) -> ImageUse:
    def text(field: str) -> str | None:
        if field not in places:
            return None
        mapping, key = places[field]
        return _scalar_text(mapping[key]) or None

    tag, digest = text("tag"), text("digest")
    if shared and tag is not None:
        tag, _, digest = tag.partition("@")
    # A chart's placeholder (`tag: ""`, `digest: latest`) pins nothing promoflow could name.
    tag = tag if tag and references.TAG.fullmatch(tag) else None
    digest = digest if digest and _PIN_DIGEST_RE.fullmatch(digest) else None
    return ImageUse(f.rel, text("repository") or image, tag, digest)


def _apply_helm_pin(ref: _HelmRef, pin: ImagePin) -> bool:
    values = {"repository": pin.name, "tag": pin.tag, "digest": pin.digest}
    if ref.shared:
        values["tag"] = values["digest"] = f"{pin.tag}@{pin.digest}"
    changed = False
    for field, (mapping, key) in ref.places.items():
        changed |= _set_value(mapping, key, values[field], ())
    return changed


# ------------------------------------------------------------------------ editing


def _styled(value: str, like: Any) -> str:
    """``value`` as a scalar with the quoting style of ``like``."""
    if isinstance(like, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(value)
    if isinstance(like, SingleQuotedScalarString):
        return SingleQuotedScalarString(value)
    return value


def _append_key(mapping: Any, key: str, value: str) -> None:
    """Add ``key`` after the existing keys, keeping the comment/blank lines that follow
    the previous last key after the new one (they belong to what comes next)."""
    last = next(reversed(mapping), None) if len(mapping) else None
    mapping[key] = value
    ca = getattr(mapping, "ca", None)
    if last is None or ca is None:
        return
    slot = ca.items.get(last)
    if not slot or len(slot) < 3 or not isinstance(slot[2], CommentToken):
        return
    comment = slot[2].value
    newline = comment.find("\n")
    if newline == -1 or newline + 1 >= len(comment):
        return  # only an end-of-line comment: it stays on the previous key's line
    head, rest = comment[: newline + 1], comment[newline + 1 :]
    if head.strip():
        slot[2].value = head
    else:
        slot[2] = None
    ca.items[key] = [None, None, CommentToken("\n" + rest, CommentMark(0)), None]


def _shift_eol_comment(mapping: Any, key: str, delta: int) -> None:
    """Move the end-of-line comment after ``key``'s value by ``delta`` columns so the gap
    between value and comment stays as it was (ruamel keeps the absolute column)."""
    ca = getattr(mapping, "ca", None)
    slot = ca.items.get(key) if ca is not None else None
    if not delta or not slot or len(slot) < 3 or not isinstance(slot[2], CommentToken):
        return
    token = slot[2]
    if token.value.startswith("#") and token.start_mark is not None:
        token.column = max(0, token.column + delta)


def _set_value(mapping: Any, key: str, value: str, style_keys: tuple[str, ...]) -> bool:
    """Set ``mapping[key] = value`` keeping its quoting; True when something changed."""
    if key in mapping:
        old = mapping[key]
        if isinstance(old, str) and str(old) == value:
            return False
        mapping[key] = _styled(value, old)
        _shift_eol_comment(mapping, key, len(value) - len(_scalar_text(old) or ""))
        return True
    like = next((mapping[k] for k in style_keys if isinstance(mapping.get(k), str)), None)
    _append_key(mapping, key, _styled(value, like))
    return True


def _apply_pin(ref: _Ref, pin: ImagePin) -> bool:
    if ref.kind == "kustomize":
        style_keys = ("newTag", "digest", "newName", "name")
        changed = _set_value(ref.node, "newTag", pin.tag, style_keys)
        changed |= _set_value(ref.node, "digest", pin.digest, style_keys)
        return changed
    return _set_value(ref.node, "image", f"{pin.name}:{pin.tag}@{pin.digest}", ())


def _matches(ref: _Ref, name: str) -> bool:
    if ref.kind == "kustomize":
        return name in (ref.node.get("name"), ref.node.get("newName"))
    return ref.use.name == name


def _render_piece(f: _File, piece: _Piece) -> str:
    """Text of an edited document, minimal diff against the original text."""
    body = piece.text
    missing_newline = not body.endswith("\n")
    if missing_newline:
        body += "\n"
    expected = _plain(piece.data)
    # The guessed style nearly always lines ruamel's dump up with the text, if not exactly (`[{a: 1}]` comes out as
    # `[a: 1]`): then the changed lines merge onto the text, and no other style needs dumping (each costs as much as
    # the parse).
    text = _line_merge(f, piece, body, expected)
    if text is None:
        pristine = _parse(f, piece, body)  # fresh, unmodified copy to measure ruamel's normalisation
        text = _closest_style(f, piece, body, pristine, expected)
    if missing_newline and text.endswith("\n"):
        text = text[:-1]
    return text


def _before_edit(piece: _Piece) -> None:
    """Keep ruamel's dump of the document as it is, in its guessed style, before the first edit changes it."""
    if piece.before is None:
        piece.before = _dump(piece.data, _guess_style(piece.text))


def _line_merge(f: _File, piece: _Piece, body: str, expected: Any) -> str | None:
    """The edit as ruamel dumps it in the guessed style, its changed lines applied onto `body`; None unless that
    re-parses as intended."""
    assert piece.before is not None
    base, new = piece.before, _dump(piece.data, _guess_style(body))
    text = new if base == body else _merge_changes(body, base, new)
    return text if text is not None and _reads_as(f, piece, text, expected) else None


def _reads_as(f: _File, piece: _Piece, text: str, expected: Any) -> bool:
    """Whether `text` reads as the `_plain` data `expected` (libyaml first: it reads plain YAML as ruamel.yaml does,
    ten times faster; ruamel.yaml when libyaml cannot tell)."""
    try:
        if _plain(yaml12.read(text)) == expected:
            return True
    except yaml12.NotPlain:
        pass
    return bool(_plain(_parse(f, piece, text)) == expected)


def _closest_style(f: _File, piece: _Piece, body: str, pristine: Any, expected: Any) -> str:
    """The edit in the style whose dump is closest to `body`, merged onto it, or else re-serialised whole."""
    best: tuple[float, _Style, str] | None = None
    for style in _candidate_styles(body):
        base = _dump(pristine, style)
        if base == body:
            best = (1.0, style, base)
            break
        ratio = difflib.SequenceMatcher(None, base.splitlines(), body.splitlines(), autojunk=False).ratio()
        if best is None or ratio > best[0]:
            best = (ratio, style, base)
    assert best is not None
    _ratio, style, base = best
    new = _dump(piece.data, style)
    candidates: list[str] = []
    if base == body:
        candidates.append(new)
    else:
        merged = _merge_changes(body, base, new)
        if merged is not None:
            candidates.append(merged)
        candidates.append(new)
    for index, text in enumerate(candidates):
        if _reads_as(f, piece, text, expected):
            if index > 0:
                log.warning(
                    "%s: could not limit the edit to the changed lines; the edited document "
                    "was re-serialised by ruamel.yaml (formatting may be normalised)",
                    f.where(piece, 0),
                )
            return text
    raise ManifestError(f"{f.where(piece, 0)}: internal error: edited document does not re-parse as intended")


def _render_file(f: _File) -> bytes:
    text = "".join(_render_piece(f, piece) if piece.is_doc and piece.changed else piece.text for piece in f.pieces)
    if f.crlf:
        text = text.replace("\n", "\r\n")
    if f.bom:
        text = "\ufeff" + text
    return text.encode("utf-8")


def _write_all(changes: list[tuple[_File, bytes]]) -> None:
    """Write every file to a temp file next to it, then os.replace them all."""
    staged: list[tuple[str, str]] = []
    try:
        for f, content in changes:
            target = os.path.realpath(f.path)  # keep symlinks, write their target
            directory, name = os.path.split(target)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            staged.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
    except OSError as exc:
        for tmp, _target in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise ManifestError(f"cannot write manifests: {exc}") from exc
    for tmp, target in staged:
        os.replace(tmp, target)


# -------------------------------------------------------------------------- API


def find_images(
    app_dir: Path, root: Path | None = None, helm: Mapping[str, HelmValues] | None = None
) -> list[ImageUse]:
    """Every image reference in ``app_dir``, in file order (sorted relative paths) and
    document order within a file, then the values ``helm`` names (image name -> where in
    which values file). ``root``: the worktree ``app_dir`` is in (default: ``app_dir``);
    no link may lead out of it."""
    app_dir = Path(app_dir)
    files = _discover(app_dir, root)
    return [ref.use for ref in _refs(files)] + [ref.use for ref in _helm_refs(app_dir, files, helm or {})]


def pin_images(
    app_dir: Path, pins: list[ImagePin], root: Path | None = None, helm: Mapping[str, HelmValues] | None = None
) -> list[str]:
    """Point every reference of each pinned image to its tag and digest, and the values
    ``helm`` names for it (image name -> where in which values file) too.

    Returns the sorted relative paths of the files that changed; files whose content
    would not change are not written.  Nothing is written unless every edit succeeded.
    ``root``: the worktree ``app_dir`` is in (default: ``app_dir``); no link may lead out of it.
    """
    app_dir = Path(app_dir)
    by_name = _validate_pins(list(pins))
    files = _discover(app_dir, root)
    refs = _refs(files)
    helm_refs = _helm_refs(app_dir, files, helm or {})

    pinned_in_values = {ref.image for ref in helm_refs}
    missing = [n for n in by_name if n not in pinned_in_values and not any(_matches(ref, n) for ref in refs)]
    if missing:
        raise ManifestError(
            "; ".join(
                f"image {name} is not referenced in {app_dir}: add it to kustomization.yaml images: "
                "or a container image, or name its Helm values with `helm:` in promotions.yaml"
                for name in missing
            )
        )

    for ref in refs:
        for name, pin in by_name.items():
            if _matches(ref, name):
                _before_edit(ref.piece)
                ref.piece.changed |= _apply_pin(ref, pin)
    for helm_ref in helm_refs:
        if helm_ref.image in by_name:
            _before_edit(helm_ref.piece)
            helm_ref.piece.changed |= _apply_helm_pin(helm_ref, by_name[helm_ref.image])

    changes: list[tuple[_File, bytes]] = []
    for f in files:
        if not any(piece.changed for piece in f.pieces):
            continue
        content = _render_file(f)
        if content != f.raw:
            changes.append((f, content))
    _write_all(changes)
    return sorted(f.rel for f, _content in changes)
