"""Image references by the OCI distribution grammar (github.com/distribution/reference, regexp.go).

One rule for every place that names an image: promotions.yaml (image names, registry repositories), the
manifests promoflow edits, the registry client and OCI image layouts. Stdlib only.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_REPOSITORY = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN}/)?{_REPOSITORY}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

MAX_NAME_LENGTH = 255
REPOSITORY = re.compile(_REPOSITORY, re.ASCII)  # a path in a registry: `acme/web`, `acme/my__app`
NAME = re.compile(_NAME, re.ASCII)  # an image name: `ghcr.io/acme/web`, `localhost:5000/web`, `nginx`
TAG = re.compile(_TAG, re.ASCII)
REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
# The digests registries and layouts use: the image spec's registered algorithms.
REGISTERED_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", re.ASCII)

REPOSITORY_RULE = (
    "lowercase path components (letters and digits, joined by '.', '_', '__' or dashes), separated by '/', "
    f"at most {MAX_NAME_LENGTH} characters, e.g. acme/web"
)
NAME_RULE = f"an optional registry host (and port) and '/', then {REPOSITORY_RULE}"


def is_repository(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and REPOSITORY.fullmatch(value) is not None


def is_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and NAME.fullmatch(value) is not None


def repository(value: str) -> str:
    """A registry repository; ValueError says what one looks like."""
    if not is_repository(value):
        raise ValueError(f"not a repository name: expected {REPOSITORY_RULE}")
    return value


def image_name(value: str) -> str:
    """An image name without tag or digest; ValueError says what one looks like."""
    if not is_name(value):
        raise ValueError(f"not an image name (without tag or digest): expected {NAME_RULE}")
    return value
