"""Console tokens without a database: how a token is made and hashed, and the requests that
are refused before any statement is sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from kubenova import config
from kubenova.console import auth
from kubenova.db import console_auth as db_console_auth
from tests.support.clock import EPOCH


class NoDatabase:
    """A session factory that fails the test if anything asks it for a session."""

    def __call__(self) -> object:
        raise AssertionError("the database was used")


def test_the_hash_is_the_hex_sha256_of_the_token() -> None:
    assert auth.hash_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert auth.hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_the_hash_is_what_the_database_layer_accepts_and_the_token_is_not() -> None:
    token = auth.new_token()

    assert db_console_auth.is_token_hash(auth.hash_token(token))
    assert not db_console_auth.is_token_hash(token)
    assert not db_console_auth.is_token_hash(auth.hash_token(token).upper())


def test_a_new_token_is_43_url_safe_characters_and_never_repeats() -> None:
    tokens = {auth.new_token() for _ in range(1000)}

    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens)


def test_a_token_expires_ttl_seconds_after_it_is_made() -> None:
    assert auth.expiry(EPOCH, 600) == EPOCH + dt.timedelta(minutes=10)


@pytest.mark.parametrize("ttl_s", [0, -1])
def test_a_ttl_that_is_not_positive_is_refused(ttl_s: int) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        auth.expiry(EPOCH, ttl_s)


def test_the_minted_token_stays_out_of_repr() -> None:
    minted = auth.MintedToken(token="s3cr3t-token", expires=EPOCH)

    assert "s3cr3t-token" not in repr(minted)
    assert "expires" in repr(minted)


def test_the_console_types_are_novnc_spice_html5_and_serial() -> None:
    assert [t.value for t in auth.ConsoleType] == ["novnc", "spice-html5", "serial"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"console_type": "rdp"}, "'rdp' is not a valid ConsoleType"),
        ({"port": 0}, "port must be a TCP port"),
        ({"port": 65536}, "port must be a TCP port"),
        ({"tls_port": 70000}, "tls_port must be a TCP port"),
        ({"ttl_s": 0}, "positive number of seconds"),
    ],
)
def test_a_bad_mint_request_is_refused_before_the_database(
    arguments: dict[str, object], message: str
) -> None:
    request: dict[str, object] = {
        "instance_uuid": "i-1",
        "console_type": "novnc",
        "host": "h1",
        "port": 5900,
        "tls_port": None,
        "internal_access_path": None,
    }
    request.update(arguments)

    with pytest.raises(ValueError, match=re.escape(message)):
        auth.mint(NoDatabase(), **request)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "x" * 129, "tökén"])
def test_a_token_that_cannot_be_ours_is_refused_as_unknown_before_the_database(
    token: str,
) -> None:
    with pytest.raises(auth.ConsoleTokenRefusedError) as refused:
        auth.authorize(NoDatabase(), token)  # type: ignore[arg-type]

    assert refused.value.reason is auth.RefusalReason.UNKNOWN_TOKEN
    assert str(refused.value) == "console token refused (unknown_token): no such token"


def test_a_refusal_names_its_reason_and_is_one_of_eight() -> None:
    refused = auth.ConsoleTokenRefusedError(auth.RefusalReason.INSTANCE_MOVED, "moved off h1")

    assert str(refused) == "console token refused (instance_moved): moved off h1"
    assert [r.value for r in auth.RefusalReason] == [
        "unknown_token",
        "expired",
        "already_used",
        "wrong_instance",
        "instance_deleted",
        "instance_moved",
        "console_gone",
        "other_session",
    ]


def test_the_ttl_setting_defaults_to_ten_minutes_and_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBENOVA_CONSOLE_TOKEN_TTL", raising=False)
    assert config.OperatorSettings.from_env().console_token_ttl_s == 600

    monkeypatch.setenv("KUBENOVA_CONSOLE_TOKEN_TTL", "90")
    assert config.OperatorSettings.from_env().console_token_ttl_s == 90

    monkeypatch.setenv("KUBENOVA_CONSOLE_TOKEN_TTL", "0")
    with pytest.raises(ValueError, match="KUBENOVA_CONSOLE_TOKEN_TTL must be a positive"):
        config.OperatorSettings.from_env()
