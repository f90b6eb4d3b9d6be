"""Secret references: environment variables and Prefect Secret blocks, masked once read."""

from __future__ import annotations

import pytest

from promoflow import secrets
from promoflow.errors import TerminalError
from promoflow.redact import redact


def test_an_environment_variable_is_read_and_masked_from_then_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_FORGE_CREDENTIAL", "s3cr3t-value-1")
    assert secrets.resolve("env:PF_TEST_FORGE_CREDENTIAL", "GitHub token") == "s3cr3t-value-1"
    # the variable's name says nothing of a secret: only having read it through `resolve` masks it
    assert redact("failed with s3cr3t-value-1 in it") == "failed with *** in it"


def test_a_missing_secret_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PF_TEST_ABSENT", raising=False)
    with pytest.raises(TerminalError, match="The GitHub token is missing: set the environment variable PF_TEST_ABSENT"):
        secrets.resolve("env:PF_TEST_ABSENT", "GitHub token")


@pytest.mark.parametrize("reference", ["GITHUB_TOKEN", "env:", "vault:x", "env:1BAD", "prefect:a b"])
def test_malformed_references_are_refused(reference: str) -> None:
    with pytest.raises(ValueError, match="env:VARIABLE"):
        secrets.check_reference(reference)
    with pytest.raises(TerminalError):
        secrets.resolve(reference, "token")


def test_a_prefect_secret_block_is_read_from_the_server(prefect_api: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value="block-held-value-42").save("pf-test-token", overwrite=True)
    assert secrets.resolve("prefect:pf-test-token", "registry password") == "block-held-value-42"
    assert "block-held-value-42" not in redact("token block-held-value-42")
    with pytest.raises(TerminalError, match="Prefect Secret block 'pf-test-absent'"):
        secrets.resolve("prefect:pf-test-absent", "registry password")
