"""Keep secrets out of everything promoflow writes: logs, records, artifacts, messages."""

from __future__ import annotations

import os
import re

# user:password@ in URLs (git remotes, registry URLs)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@")
# Authorization headers and token=... query strings or settings, quoted or not (password="x")
_TOKENS = re.compile(
    r"(?i)(?P<key>authorization:\s*(bearer|basic|token)\s+|(token|password|secret)=)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&\"']+)"
)
_SECRET_ENV = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|AUTH_STRING)$")
MASK = "***"
_KNOWN: set[str] = set()  # values read from secret stores (promoflow.secrets): masked wherever they appear


def register(secret: str) -> None:
    """Mask `secret` from now on, whatever its name or shape (a token read from a Prefect Secret block)."""
    if len(secret) >= 4:
        _KNOWN.add(secret)


def _masked(value: str) -> str:
    """The mask, inside the value's quotes if it had any (a quoted value is masked whole, spaces and all)."""
    return f"{value[0]}{MASK}{value[0]}" if value[0] in "\"'" else MASK


def redact(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _TOKENS.sub(lambda m: m.group("key") + _masked(m.group("value")), text)
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, MASK)
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
