"""Secrets kept out of what promoflow writes: redact() on each shape of secret, and the log filter that applies it
to every log line (catches: log lines no longer masked, masking turned off; issue 16, behaviour 3)."""

from __future__ import annotations

import io
import logging
import secrets

import pytest

from promoflow.errors import TerminalError
from promoflow.logs import _DropUserErrorTraceback, quiet_user_error_tracebacks
from promoflow.redact import MASK, redact, register


def test_credentials_in_urls_are_masked_whatever_the_scheme() -> None:
    assert redact("git clone https://bot:s3cr3t@git.example.com/r.git") == "git clone https://***@git.example.com/r.git"
    assert redact("ssh+git://token@host/x and http://u:p@h/") == "ssh+git://***@host/x and http://***@h/"
    assert redact("see https://git.example.com/r.git, mail a@b.c") == "see https://git.example.com/r.git, mail a@b.c"


def test_authorization_headers_and_token_parameters_are_masked() -> None:
    assert redact("Authorization: Bearer abc.def-ghi done") == "Authorization: Bearer *** done"
    assert redact("authorization: basic dXNlcjpwYXNz") == "authorization: basic ***"
    assert redact("AUTHORIZATION: Token t0k") == "AUTHORIZATION: Token ***"
    assert redact("GET /hook?token=abc&x=1 password=hunter2") == "GET /hook?token=***&x=1 password=***"
    assert redact("Authorization: Digest abc") == "Authorization: Digest abc"  # not a credential scheme we mask
    assert redact("""dsn password="hunter 2" token='t0k'""") == """dsn password="***" token='***'"""


def test_values_of_secret_environment_variables_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "ghp_" + secrets.token_hex(8)
    for name in ("GITHUB_TOKEN", "DB_PASSWORD", "APP_SECRET", "SERVICE_API_KEY", "KAFKA_AUTH_STRING"):
        monkeypatch.setenv(name, value)
        assert redact(f"it said {value}!") == f"it said {MASK}!", name
        monkeypatch.delenv(name)
    monkeypatch.setenv("GITHUB_TOKEN_FILE", value)  # the name must end with one of the words
    monkeypatch.setenv("SHORT_TOKEN", "1234567")  # too short to mask without masking ordinary words
    assert redact(f"{value} 1234567") == f"{value} 1234567"
    monkeypatch.setenv("EIGHT_TOKEN", "12345678")
    assert redact("x12345678x") == f"x{MASK}x"


def test_registered_secrets_are_masked_everywhere_from_then_on() -> None:
    value = secrets.token_hex(6)
    assert redact(f"a{value}b") == f"a{value}b"
    register(value)
    assert redact(f"a{value}b {value}") == f"a{MASK}b {MASK}"
    register("abc")  # shorter than 4: masking it would garble ordinary text
    assert redact("abc") == "abc"
    register("abcd")
    assert redact("xabcdx") == f"x{MASK}x"


def _logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(_DropUserErrorTraceback())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_the_log_filter_masks_messages_and_their_arguments() -> None:
    value = secrets.token_hex(8)
    register(value)
    logger, out = _logger("promoflow.test.redact")
    logger.info("pushing to %s with %s", "https://bot:pw@git.example.com/r.git", value)
    logger.info("plain %s", "text")
    assert out.getvalue().splitlines() == [
        "pushing to https://***@git.example.com/r.git with ***",
        "plain text",
    ]


def test_the_log_filter_drops_tracebacks_of_user_errors_only() -> None:
    logger, out = _logger("promoflow.test.tracebacks")
    try:
        raise TerminalError("Release 9.9.9 was rejected for prod.")
    except TerminalError:
        logger.exception("Promotion failed")
    try:
        raise KeyError("bug")
    except KeyError:
        logger.exception("Promotion crashed")
    text = out.getvalue()
    assert "Promotion failed\nPromotion crashed\nTraceback" in text and "TerminalError" not in text
    assert "KeyError: 'bug'" in text


def test_prefects_handlers_mask_secrets_once_quieted() -> None:
    quiet_user_error_tracebacks()
    quiet_user_error_tracebacks()  # idempotent: one filter per handler
    handlers = [h for name in ("prefect", "prefect.flow_runs") for h in logging.getLogger(name).handlers]
    assert handlers
    for handler in handlers:
        assert sum(isinstance(f, _DropUserErrorTraceback) for f in handler.filters) == 1, handler
    record = logging.LogRecord("prefect.flow_runs", logging.INFO, __file__, 1, "token=%s", ("abcdef",), None)
    assert all(f.filter(record) for f in handlers[0].filters if isinstance(f, _DropUserErrorTraceback))
    assert record.getMessage() == "token=***"
