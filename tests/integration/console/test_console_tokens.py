"""Console tokens against MariaDB: minted, spent once, and refused for every reason a token
stops working, each reason told apart."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from kubenova.console import auth
from kubenova.db import api
from kubenova.db import engine as db_engine
from tests.integration.console.helpers import (
    instance_on,
    mint,
    move,
    report_console_ports,
    token_rows,
)
from tests.integration.db.helpers import recorded_statements, verbs
from tests.support.clock import EPOCH

pytestmark = pytest.mark.integration

Reason = auth.RefusalReason


def _refusal(session_factory: db_engine.SessionFactory, token: str, **kwargs: object) -> Reason:
    with pytest.raises(auth.ConsoleTokenRefusedError) as refused:
        auth.authorize(session_factory, token, clock=lambda: EPOCH, **kwargs)  # type: ignore[arg-type]
    assert str(refused.value).startswith(f"console token refused ({refused.value.reason.value}):")
    assert token not in str(refused.value)
    return refused.value.reason


def test_a_minted_token_opens_its_console_once(db_session_factory):
    uuid = instance_on(db_session_factory, "h1", vnc_port=5900, spice_tls_port=5902)
    minted = auth.mint(
        db_session_factory,
        uuid,
        "spice-html5",
        "h1",
        5901,
        5902,
        "/websockify",
        ttl_s=600,
        clock=lambda: EPOCH,
    )

    info = auth.authorize(
        db_session_factory, minted.token, uuid, console_session="s-1", clock=lambda: EPOCH
    )

    assert minted.expires == EPOCH + dt.timedelta(seconds=600)
    assert info == auth.ConnectionInfo(
        instance_uuid=uuid,
        console_type=auth.ConsoleType.SPICE_HTML5,
        host="h1",
        address="h1",
        port=5901,
        tls_port=5902,
        internal_access_path="/websockify",
        expires=minted.expires,
    )
    (row,) = token_rows(db_session_factory)
    assert (row["used_at"], row["console_session"]) == (EPOCH, "s-1")
    assert _refusal(db_session_factory, minted.token) is Reason.ALREADY_USED


def test_only_the_hash_of_the_token_is_stored(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)

    (row,) = token_rows(db_session_factory)

    assert row["token_hash"] == hashlib.sha256(minted.token.encode()).hexdigest()
    assert [name for name, value in row.items() if minted.token in str(value)] == []


def test_accepting_a_token_is_one_update_and_one_read(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)

    with recorded_statements(db_session_factory) as sent:
        auth.authorize(db_session_factory, minted.token, uuid, clock=lambda: EPOCH)

    assert verbs(sent) == ["UPDATE", "SELECT"]


def test_an_unknown_token_is_refused(db_session_factory):
    instance_on(db_session_factory, "h1")

    assert _refusal(db_session_factory, auth.new_token()) is Reason.UNKNOWN_TOKEN


def test_a_token_is_refused_from_the_moment_it_expires(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    before = mint(db_session_factory, uuid, "h1", EPOCH - dt.timedelta(seconds=60), ttl_s=59)
    at = mint(db_session_factory, uuid, "h1", EPOCH - dt.timedelta(seconds=60), ttl_s=60)
    after = mint(db_session_factory, uuid, "h1", EPOCH - dt.timedelta(seconds=60), ttl_s=61)

    assert _refusal(db_session_factory, before.token) is Reason.EXPIRED
    assert _refusal(db_session_factory, at.token) is Reason.EXPIRED
    assert (
        auth.authorize(db_session_factory, after.token, clock=lambda: EPOCH).instance_uuid == uuid
    )


def test_a_token_for_another_instance_is_refused_and_not_spent(db_session_factory):
    mine = instance_on(db_session_factory, "h1")
    other = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, mine, "h1", EPOCH)

    assert _refusal(db_session_factory, minted.token, instance_uuid=other) is Reason.WRONG_INSTANCE
    info = auth.authorize(db_session_factory, minted.token, mine, clock=lambda: EPOCH)
    assert info.instance_uuid == mine


def test_a_token_dies_with_its_instance(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)

    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, uuid)

    assert _refusal(db_session_factory, minted.token, instance_uuid=uuid) is Reason.INSTANCE_DELETED
    assert token_rows(db_session_factory)[0]["used_at"] is None


def test_a_token_dies_when_its_instance_moves_to_another_host(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)

    move(db_session_factory, uuid, "h2")

    with pytest.raises(auth.ConsoleTokenRefusedError) as refused:
        auth.authorize(db_session_factory, minted.token, uuid, clock=lambda: EPOCH)
    assert refused.value.reason is Reason.INSTANCE_MOVED
    assert str(refused.value) == (
        f"console token refused (instance_moved): instance {uuid} moved off host h1 after "
        "the token was made"
    )


def test_a_token_dies_when_its_guest_restarts_on_other_ports(db_session_factory):
    # The old port may be handed to another guest on the same host: it must not open that one.
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)

    report_console_ports(db_session_factory, uuid, vnc_port=5901)

    with pytest.raises(auth.ConsoleTokenRefusedError) as refused:
        auth.authorize(db_session_factory, minted.token, uuid, clock=lambda: EPOCH)
    assert refused.value.reason is Reason.CONSOLE_GONE
    assert str(refused.value) == (
        f"console token refused (console_gone): port 5900 on host h1 is no longer a console of"
        f" instance {uuid} (its guest restarted since the token was made)"
    )
    assert token_rows(db_session_factory)[0]["used_at"] is None
    # Its guest stopped: no console at all.
    report_console_ports(db_session_factory, uuid, vnc_port=None)
    assert _refusal(db_session_factory, minted.token) is Reason.CONSOLE_GONE


def test_a_token_for_an_instance_not_yet_placed_is_refused_as_moved(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h2", EPOCH)

    assert _refusal(db_session_factory, minted.token) is Reason.INSTANCE_MOVED


def test_a_token_for_an_instance_never_recorded_cannot_be_minted(db_session_factory):
    with pytest.raises(sa.exc.IntegrityError):
        mint(db_session_factory, "00000000-0000-0000-0000-000000000000", "h1", EPOCH)

    assert token_rows(db_session_factory) == []


def test_purge_removes_expired_tokens_only(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    ago = EPOCH - dt.timedelta(seconds=600)
    mint(db_session_factory, uuid, "h1", ago, ttl_s=599)
    mint(db_session_factory, uuid, "h1", ago, ttl_s=600)
    live = mint(db_session_factory, uuid, "h1", ago, ttl_s=601)
    used = mint(db_session_factory, uuid, "h1", EPOCH)
    auth.authorize(db_session_factory, used.token, clock=lambda: EPOCH)

    assert auth.purge_expired(db_session_factory, clock=lambda: EPOCH) == 2

    remaining = {row["token_hash"] for row in token_rows(db_session_factory)}
    assert remaining == {auth.hash_token(live.token), auth.hash_token(used.token)}
    # A used token outlives its use, so presenting it again still says why it fails.
    assert _refusal(db_session_factory, used.token) is Reason.ALREADY_USED
