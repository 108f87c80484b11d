"""The purge of expired console tokens: bounded batches, each its own transaction, and the
operator's periodic task that runs it.

The SQL runs for real on SQLite (only the tokens table; SQLite does not enforce its foreign
key to ``instances``), so the batching is seen in the statements and commits a pass makes;
the locking it is for is MariaDB's, tested in tests/integration/console/.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import sqlalchemy as sa

from kubenova.api import handlers
from kubenova.console import auth
from kubenova.db import console_auth as db_console_auth
from kubenova.db import console_models, models
from kubenova.db import engine as db_engine
from tests.support.clock import EPOCH

_TOKENS = models.table(console_models.ConsoleAuthToken)


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine("sqlite://")
    _TOKENS.create(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _add_tokens(engine: sa.Engine, expires: list[dt.datetime]) -> None:
    with engine.begin() as connection:
        connection.execute(
            _TOKENS.insert(),
            [
                {
                    "token_hash": f"{index:064x}",
                    "console_type": "novnc",
                    "host": "h1",
                    "port": 5900,
                    "instance_uuid": "00000000-0000-0000-0000-000000000001",
                    "expires": when,
                    "created_at": EPOCH - dt.timedelta(hours=1),
                }
                for index, when in enumerate(expires)
            ],
        )


def _remaining(engine: sa.Engine) -> list[dt.datetime]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(_TOKENS.c.expires)).scalars())


def _commits(engine: sa.Engine) -> list[int]:
    """Counts the commits made on ``engine`` from now on, one list item per commit."""
    commits: list[int] = []
    sa.event.listen(engine, "commit", lambda _connection: commits.append(1))
    return commits


def test_a_pass_deletes_every_expired_token_in_batches_and_keeps_the_live(
    engine: sa.Engine,
) -> None:
    expired = [EPOCH - dt.timedelta(seconds=seconds) for seconds in (0, 1, 2, 3, 4)]
    live = [EPOCH + dt.timedelta(seconds=1), EPOCH + dt.timedelta(seconds=600)]
    _add_tokens(engine, expired + live)
    commits = _commits(engine)

    purged = auth.purge_expired(
        db_engine.make_session_factory(engine), clock=lambda: EPOCH, batch_size=2
    )

    assert purged == 5
    assert _remaining(engine) == live
    # 2 + 2 + 1: the short batch says nothing is left, so no fourth transaction.
    assert len(commits) == 3


def test_a_full_last_batch_costs_one_empty_transaction(engine: sa.Engine) -> None:
    _add_tokens(engine, [EPOCH - dt.timedelta(seconds=1)] * 4)
    commits = _commits(engine)

    purged = auth.purge_expired(
        db_engine.make_session_factory(engine), clock=lambda: EPOCH, batch_size=2
    )

    assert (purged, _remaining(engine), len(commits)) == (4, [], 3)


def test_one_batch_deletes_at_most_its_limit_the_longest_expired_first(
    engine: sa.Engine,
) -> None:
    expired = [EPOCH - dt.timedelta(seconds=seconds) for seconds in (5, 50, 500)]
    _add_tokens(engine, expired)

    with db_engine.transaction(db_engine.make_session_factory(engine)) as session:
        deleted = db_console_auth.tokens_purge_expired(session, now=EPOCH, limit=2)

    assert deleted == 2
    assert _remaining(engine) == [EPOCH - dt.timedelta(seconds=5)]


def test_a_batch_limit_below_one_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="batch limit must be at least 1, not 0"):
        auth.purge_expired(db_engine.make_session_factory(engine), batch_size=0)


class _Runtime:
    """What the purge's startup handler takes from the operator's runtime."""

    def __init__(self, session_factory: db_engine.SessionFactory) -> None:
        self.session_factory = session_factory


def test_the_operator_purges_at_start_and_stops_at_cleanup(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    purged: list[db_engine.SessionFactory] = []
    first_pass = threading.Event()

    def purge(session_factory: db_engine.SessionFactory) -> int:
        purged.append(session_factory)
        first_pass.set()
        return 0

    monkeypatch.setattr(handlers.console_auth, "purge_expired", purge)
    session_factory = db_engine.make_session_factory(engine)
    memo: Any = kopf.Memo(runtime=_Runtime(session_factory))

    handlers.start_console_token_purge(memo=memo)
    tasks = memo[handlers.CONSOLE_TOKEN_PURGE_MEMO_KEY]
    assert first_pass.wait(timeout=10)
    handlers.cleanup(memo=kopf.Memo({handlers.CONSOLE_TOKEN_PURGE_MEMO_KEY: tasks}))

    # The first pass runs at once (a restarted operator clears what expired while it was
    # down); the thread is gone after cleanup.
    assert purged == [session_factory]
    assert tasks._thread is not None
    assert not tasks._thread.is_alive()


def test_the_purge_waits_for_a_runtime_that_is_not_there_yet() -> None:
    with pytest.raises(kopf.TemporaryError, match="waiting for the runtime"):
        handlers.start_console_token_purge(memo=kopf.Memo())
