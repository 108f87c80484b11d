"""Instances and tokens the console token tests start from."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from kubenova.console import auth
from kubenova.db import console_models, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import make_instance

#: The VNC port :func:`mint` makes tokens for, and :func:`instance_on` reports by default.
VNC_PORT = 5900


def instance_on(
    session_factory: db_engine.SessionFactory,
    host: str,
    *,
    vnc_port: int | None = VNC_PORT,
    spice_tls_port: int | None = None,
) -> str:
    """Record an instance placed on ``host``, its host having reported these console ports;
    returns its uuid."""
    uuid = make_instance(session_factory)
    move(session_factory, uuid, host)
    report_console_ports(session_factory, uuid, vnc_port=vnc_port, spice_tls_port=spice_tls_port)
    return uuid


def report_console_ports(
    session_factory: db_engine.SessionFactory,
    uuid: str,
    *,
    vnc_port: int | None,
    spice_tls_port: int | None = None,
) -> None:
    """Set the instance's console ports, as its host's report does (a guest that started)."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uuid)
            .values(vnc_port=vnc_port, spice_port=None, spice_tls_port=spice_tls_port)
        )


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
        VNC_PORT,
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
