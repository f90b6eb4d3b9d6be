"""Secret references: where a credential lives, never the credential itself.

promotions.yaml names secrets as `env:NAME` (an environment variable) or `prefect:NAME` (a Prefect Secret
block); the value is read only when needed and registered with `promoflow.redact` so it never shows up
in a log line, a record or an error message.
"""

from __future__ import annotations

import os
import re
from typing import cast

from promoflow.errors import TerminalError, TransientError
from promoflow.redact import register

REFERENCE = re.compile(r"^(env|prefect):([A-Za-z_][A-Za-z0-9_-]*)$")
REFERENCE_HELP = "`env:VARIABLE` (an environment variable) or `prefect:BLOCK` (a Prefect Secret block)"


def check_reference(reference: str) -> str:
    """Raise ValueError (for the config model) unless `reference` names a secret the way promoflow reads it."""
    if not REFERENCE.match(reference):
        raise ValueError(f"a secret reference is {REFERENCE_HELP}, not {reference!r}")
    return reference


def resolve(reference: str, purpose: str) -> str:
    """The secret's value. `purpose` says what it is for, in the error when it is missing."""
    match = REFERENCE.match(reference)
    if match is None:
        raise TerminalError(f"The {purpose} reference must be {REFERENCE_HELP}.")
    kind, name = match.groups()
    value = os.environ.get(name) if kind == "env" else _prefect_secret(name, purpose)
    if not value:
        where = f"the environment variable {name}" if kind == "env" else f"the Prefect Secret block {name!r}"
        raise TerminalError(f"The {purpose} is missing: set {where}.")
    register(value)
    return value


def _prefect_secret(name: str, purpose: str) -> str | None:
    from prefect.blocks.system import Secret  # only here: importing prefect costs a second

    try:
        block = cast(Secret, Secret.load(name, _sync=True))  # type: ignore[call-arg]  # also inside an event loop
    except ValueError:  # Prefect's way of saying there is no such block
        return None
    except Exception as error:  # the server is down or unreachable
        raise TransientError(
            f"Cannot read the {purpose} from the Prefect Secret block {name!r} ({type(error).__name__}): "
            "check that the Prefect server is up (PREFECT_API_URL)."
        ) from None
    value = block.get()
    return value if isinstance(value, str) else None
