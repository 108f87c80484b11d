"""The purge of expired console tokens against MariaDB: in batches, each its own transaction,
the expired rows go and the live ones stay."""

from __future__ import annotations

import datetime as dt

import pytest

from kubenova.console import auth
from kubenova.db import console_auth as db_console_auth
from tests.integration.console.helpers import instance_on, mint, token_rows
from tests.support.clock import EPOCH

pytestmark = pytest.mark.integration


def test_a_pass_in_batches_deletes_the_expired_and_keeps_the_live(db_session_factory):
    uuid = instance_on(db_session_factory, "h1")
    ago = EPOCH - dt.timedelta(seconds=600)
    for ttl_s in range(590, 601):  # 11 tokens expired at or before EPOCH
        mint(db_session_factory, uuid, "h1", ago, ttl_s=ttl_s)
    live = [mint(db_session_factory, uuid, "h1", ago, ttl_s=ttl_s) for ttl_s in (601, 1200)]
    used = mint(db_session_factory, uuid, "h1", EPOCH)
    auth.authorize(db_session_factory, used.token, clock=lambda: EPOCH)

    assert auth.purge_expired(db_session_factory, clock=lambda: EPOCH, batch_size=4) == 11

    remaining = {row["token_hash"] for row in token_rows(db_session_factory)}
    assert remaining == {auth.hash_token(minted.token) for minted in [*live, used]}
    assert auth.purge_expired(db_session_factory, clock=lambda: EPOCH, batch_size=4) == 0


def test_each_batch_commits_on_its_own(db_session_factory, monkeypatch):
    """A pass is many short transactions, not one long one: a pass that fails in its second
    batch keeps what its first deleted."""
    uuid = instance_on(db_session_factory, "h1")
    ago = EPOCH - dt.timedelta(seconds=600)
    for ttl_s in (100, 200, 300, 400, 500):
        mint(db_session_factory, uuid, "h1", ago, ttl_s=ttl_s)
    batches = []
    real_batch = db_console_auth.tokens_purge_expired

    def second_batch_fails(session, *, now, limit):
        batches.append(limit)
        if len(batches) == 2:
            raise RuntimeError("the second batch fails")
        return real_batch(session, now=now, limit=limit)

    monkeypatch.setattr(db_console_auth, "tokens_purge_expired", second_batch_fails)

    with pytest.raises(RuntimeError, match="the second batch fails"):
        auth.purge_expired(db_session_factory, clock=lambda: EPOCH, batch_size=2)

    # The two longest expired went with the first batch; the rest wait for the next pass.
    remaining = sorted(row["expires"] for row in token_rows(db_session_factory))
    assert remaining == [ago + dt.timedelta(seconds=ttl_s) for ttl_s in (300, 400, 500)]
