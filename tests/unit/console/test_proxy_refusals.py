"""Each refusal of the proxy names its reason, maps a token's refusal one to one, and carries
the HTTP status the client gets."""

from __future__ import annotations

import pytest

from kubenova.console import auth
from kubenova.console.proxy import refusals


@pytest.mark.parametrize("reason", list(auth.RefusalReason))
def test_every_token_refusal_has_a_message_of_its_own(reason):
    refused = refusals.ConsoleRefusedError.from_token_refusal(
        auth.ConsoleTokenRefusedError(reason, "detail for the log")
    )
    assert refused.reason.value == reason.value
    assert str(refused).startswith(f"console refused ({reason.value}): ")
    assert "detail for the log" not in str(refused)
    assert refused.detail == "detail for the log"
    assert refused.status == 403


def test_a_missing_token_is_a_bad_request_and_a_database_outage_unavailable():
    assert refusals.ConsoleRefusedError(refusals.Reason.NO_TOKEN).status == 400
    assert refusals.ConsoleRefusedError(refusals.Reason.UNAVAILABLE).status == 503
