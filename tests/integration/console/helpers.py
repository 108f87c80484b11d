"""Instances and tokens the console token tests start from."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from kubenova.console import auth
from kubenova.db import console_models, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import make_instance


def instance_on(session_factory: db_engine.SessionFactory, host: str) -> str:
    """Record an instance placed on ``host``; returns its uuid."""
    uuid = make_instance(session_factory)
    move(session_factory, uuid, host)
    return uuid


def move(session_factory: db_engine.SessionFactory, uuid: str, host: str) -> None:
    """Set the instance's host, as the end of a migration does."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uuid)
            .values(host=host, node=host)
        )


def mint(
    session_factory: db_engine.SessionFactory,
    instance_uuid: str,
    host: str,
    now: dt.datetime,
    ttl_s: int = 600,
) -> auth.MintedToken:
    """A noVNC token for the instance's console on ``host``, made at ``now``."""
    return auth.mint(
        session_factory,
        instance_uuid,
        auth.ConsoleType.NOVNC,
        host,
        5900,
        None,
        None,
        ttl_s,
        clock=lambda: now,
    )


def token_rows(session_factory: db_engine.SessionFactory) -> list[dict[str, Any]]:
    """Every column of every console token row, as the database holds it."""
    with db_engine.transaction(session_factory) as session:
        rows = session.execute(sa.select(models.table(console_models.ConsoleAuthToken)))
        return [dict(row._mapping) for row in rows]
