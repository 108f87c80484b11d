"""A spent console token reopens its console for the session that spent it, and for no other:
against MariaDB, each refusal told apart, and a session's later use changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

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
from tests.support.clock import EPOCH

pytestmark = pytest.mark.integration

Reason = auth.RefusalReason


def _resume_refusal(session_factory, token, session, at=EPOCH, **kwargs) -> Reason:
    with pytest.raises(auth.ConsoleTokenRefusedError) as refused:
        auth.resume(session_factory, token, session, clock=lambda: at, **kwargs)
    assert token not in str(refused.value)
    return refused.value.reason


def test_the_session_that_spent_a_token_may_use_it_again_until_it_expires(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)
    first = auth.authorize(
        db_session_factory, minted.token, console_session="sha256:s1", clock=lambda: EPOCH
    )
    before = token_rows(db_session_factory)

    later = EPOCH + dt.timedelta(seconds=599)
    again = auth.resume(db_session_factory, minted.token, "sha256:s1", uuid, clock=lambda: later)

    assert again == first
    assert token_rows(db_session_factory) == before
    expired = EPOCH + dt.timedelta(seconds=600)
    assert _resume_refusal(db_session_factory, minted.token, "sha256:s1", at=expired) is (
        Reason.EXPIRED
    )


def test_another_session_or_none_yet_is_refused_as_other_session(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    spent = mint(db_session_factory, uuid, "h1", EPOCH)
    auth.authorize(
        db_session_factory, spent.token, console_session="sha256:s1", clock=lambda: EPOCH
    )
    unspent = mint(db_session_factory, uuid, "h1", EPOCH)

    assert _resume_refusal(db_session_factory, spent.token, "sha256:s2") is Reason.OTHER_SESSION
    assert _resume_refusal(db_session_factory, unspent.token, "sha256:s1") is Reason.OTHER_SESSION


def test_a_session_loses_its_console_when_the_instance_is_deleted_moves_or_restarts(
    db_session_factory,
):
    deleted = instance_on(db_session_factory, "h1")
    moved = instance_on(db_session_factory, "h1")
    restarted = instance_on(db_session_factory, "h1")
    tokens = {}
    for uuid in (deleted, moved, restarted):
        tokens[uuid] = mint(db_session_factory, uuid, "h1", EPOCH).token
        auth.authorize(db_session_factory, tokens[uuid], console_session="s", clock=lambda: EPOCH)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, deleted)
    move(db_session_factory, moved, "h2")
    report_console_ports(db_session_factory, restarted, vnc_port=5907)

    assert _resume_refusal(db_session_factory, tokens[deleted], "s") is Reason.INSTANCE_DELETED
    assert _resume_refusal(db_session_factory, tokens[moved], "s") is Reason.INSTANCE_MOVED
    assert _resume_refusal(db_session_factory, tokens[restarted], "s") is Reason.CONSOLE_GONE


def test_a_session_asking_for_another_instance_or_an_unknown_token_is_refused(
    db_session_factory,
):
    uuid = instance_on(db_session_factory, "h1")
    token = mint(db_session_factory, uuid, "h1", EPOCH).token
    auth.authorize(db_session_factory, token, console_session="s", clock=lambda: EPOCH)

    other = "00000000-0000-0000-0000-000000000000"
    assert _resume_refusal(db_session_factory, token, "s", instance_uuid=other) is (
        Reason.WRONG_INSTANCE
    )
    assert _resume_refusal(db_session_factory, "no-such-token", "s") is Reason.UNKNOWN_TOKEN
