"""Console tokens are single use under concurrency: of consumers racing on one token exactly
one gets the console, and one whose transaction is still open makes the others wait."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubenova.console import auth
from kubenova.db import console_auth as db_console_auth
from kubenova.db import engine as db_engine
from tests.integration.console.helpers import instance_on, mint
from tests.support.clock import EPOCH

pytestmark = pytest.mark.integration

RACERS = 8


def _try(
    session_factory: db_engine.SessionFactory, token: str, start: threading.Barrier
) -> auth.ConnectionInfo | auth.RefusalReason:
    start.wait(timeout=10)
    try:
        return auth.authorize(session_factory, token, clock=lambda: EPOCH)
    except auth.ConsoleTokenRefusedError as exc:
        return exc.reason


def test_of_consumers_racing_on_one_token_exactly_one_succeeds(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)
    start = threading.Barrier(RACERS)

    with ThreadPoolExecutor(RACERS) as pool:
        futures = [
            pool.submit(_try, db_session_factory, minted.token, start) for _ in range(RACERS)
        ]
        results = [future.result(timeout=30) for future in futures]

    winners = [r for r in results if isinstance(r, auth.ConnectionInfo)]
    assert [w.instance_uuid for w in winners] == [uuid]
    assert sorted(r for r in results if isinstance(r, auth.RefusalReason)) == [
        auth.RefusalReason.ALREADY_USED
    ] * (RACERS - 1)


@pytest.mark.parametrize(
    ("first_commits", "second_gets"),
    [(True, auth.RefusalReason.ALREADY_USED), (False, "the console")],
)
def test_a_consumer_waits_for_one_still_in_its_transaction(
    db_session_factory, first_commits, second_gets
):
    uuid = instance_on(db_session_factory, "h1")
    minted = mint(db_session_factory, uuid, "h1", EPOCH)
    second: list[auth.ConnectionInfo | auth.RefusalReason] = []
    waiter = threading.Thread(
        target=lambda: second.append(_try(db_session_factory, minted.token, threading.Barrier(1)))
    )

    with db_session_factory() as session, session.begin():
        db_console_auth.token_consume(session, auth.hash_token(minted.token), now=EPOCH)
        waiter.start()
        waiter.join(timeout=0.5)
        # Still blocked on the token row the first consumer holds.
        assert waiter.is_alive()
        assert second == []
        if not first_commits:
            session.rollback()
    waiter.join(timeout=30)

    assert not waiter.is_alive()
    if second_gets == "the console":
        assert isinstance(second[0], auth.ConnectionInfo)
        assert second[0].instance_uuid == uuid
    else:
        assert second == [second_gets]
