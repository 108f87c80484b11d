"""Console tokens: mint one for an instance's console, authorize it once, purge the expired.

A console URL carries a random token; the database keeps only its sha256, so a copy of the
database (a backup, a replica, a leaked dump) opens no console. A token is stronger than
Nova's in three ways, all decided in :func:`kubenova.db.console_auth.token_consume`:

* single use: the first :func:`authorize` spends it, and a concurrent second one is refused;
* bound to its instance: a caller that names another instance is refused;
* bound to the instance's place: once the instance is deleted, its host is no longer the
  host the token points at, or the token's port is no longer one of the console ports its
  host last reported (a guest restarted, and its old port may now be another guest's), the
  token is refused, without the delete, the move or the restart doing anything about tokens.

Every refusal raises :class:`ConsoleTokenRefusedError` with a :class:`RefusalReason`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import secrets
from collections.abc import Callable
from typing import Final

from kubenova import config
from kubenova.db import console_auth as db_console_auth
from kubenova.db import engine as db_engine
from kubenova.db import models

# Re-exported: callers of this module handle refusals without importing the database layer.
ConsoleTokenRefusedError = db_console_auth.ConsoleTokenRefusedError
RefusalReason = db_console_auth.RefusalReason

# 32 random bytes: 256 bits, well beyond guessing, as Nova's uuid4 tokens are not.
TOKEN_BYTES: Final = 32
# A token_urlsafe(32) is 43 ASCII characters; anything much longer, or not ASCII, is not ours
# and is refused before it is hashed or sent to the database.
MAX_TOKEN_LENGTH: Final = 128
MAX_PORT: Final = 65535
# How often the operator purges expired tokens. A token lives the token ttl (600 s by default)
# and then at most one more interval, so the table holds about two ttls' worth of tokens; a
# shorter interval would buy nothing, since an expired token is refused whether or not its row
# is still there. (Nova also purges its expired tokens from a periodic task.)
PURGE_INTERVAL_S: Final = 600.0
# Rows deleted per purge transaction: each batch commits in milliseconds, so a backlog (an
# operator that was down for a day) is cleared in many short transactions, and a mint or a
# consume that meets the purge's locks waits for one batch instead of for all of it.
PURGE_BATCH_SIZE: Final = 500

Clock = Callable[[], dt.datetime]


class ConsoleType(enum.StrEnum):
    """The consoles a token can open; the value is what the database and URLs hold."""

    NOVNC = "novnc"
    SPICE_HTML5 = "spice-html5"
    SERIAL = "serial"


@dataclasses.dataclass(frozen=True)
class MintedToken:
    """A new token and when it stops working. The token is shown once, to whoever asked for
    the console, and kept out of ``repr`` so it does not land in a log by accident."""

    token: str = dataclasses.field(repr=False)
    expires: dt.datetime


@dataclasses.dataclass(frozen=True)
class ConnectionInfo:
    """Where the console an authorized token opens is: the proxy connects there."""

    instance_uuid: str
    console_type: ConsoleType
    # The host's name (the TLS peer's name) and the address to connect to (its node's
    # reported console address, or the name).
    host: str
    address: str
    port: int
    tls_port: int | None
    internal_access_path: str | None
    expires: dt.datetime


def hash_token(token: str) -> str:
    """The hex sha256 of ``token``: the only form of it the database ever holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token, safe to put in a URL."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def expiry(now: dt.datetime, ttl_s: int) -> dt.datetime:
    """When a token made at ``now`` with a lifetime of ``ttl_s`` seconds stops working."""
    if ttl_s <= 0:
        raise ValueError(f"a console token's ttl must be a positive number of seconds, not {ttl_s}")
    return now + dt.timedelta(seconds=ttl_s)


def _check_port(name: str, port: int | None) -> None:
    if port is not None and not 0 < port <= MAX_PORT:
        raise ValueError(f"{name} must be a TCP port (1-{MAX_PORT}), not {port}")


@db_engine.retry_on_deadlock
def mint(
    session_factory: db_engine.SessionFactory,
    instance_uuid: str,
    console_type: ConsoleType | str,
    host: str,
    port: int,
    tls_port: int | None,
    internal_access_path: str | None,
    ttl_s: int = config.DEFAULT_CONSOLE_TOKEN_TTL_S,
    *,
    clock: Clock = models.utcnow,
) -> MintedToken:
    """Make a token that opens ``console_type`` of the instance, served at ``host``:``port``.

    ``host`` must be the instance's host at the time, or the token is refused from the start
    (as a token of a moved instance). An unknown ``console_type`` or a bad port raises
    ``ValueError``; an instance that was never recorded fails on the database's foreign key.
    Pass ``OperatorSettings.console_token_ttl_s`` as ``ttl_s``.
    """
    kind = ConsoleType(console_type)
    _check_port("port", port)
    _check_port("tls_port", tls_port)
    now = clock()
    expires = expiry(now, ttl_s)
    token = new_token()
    with db_engine.transaction(session_factory) as session:
        db_console_auth.token_create(
            session,
            token_hash=hash_token(token),
            instance_uuid=instance_uuid,
            console_type=kind.value,
            host=host,
            port=port,
            tls_port=tls_port,
            internal_access_path=internal_access_path,
            expires=expires,
            now=now,
        )
    return MintedToken(token=token, expires=expires)


@db_engine.retry_on_deadlock
def authorize(
    session_factory: db_engine.SessionFactory,
    token: str,
    instance_uuid: str | None = None,
    *,
    console_session: str | None = None,
    clock: Clock = models.utcnow,
) -> ConnectionInfo:
    """Spend ``token`` and return where its console is, or raise
    :class:`ConsoleTokenRefusedError`.

    ``instance_uuid``: the instance the caller means (a proxy that learned it from the URL);
    a token of another instance is refused and not spent. ``console_session``: the proxy's
    name for the connection the token opens, recorded with the token.
    """
    _check_token_shape(token)
    with db_engine.transaction(session_factory) as session:
        consumed = db_console_auth.token_consume(
            session,
            hash_token(token),
            now=clock(),
            instance_uuid=instance_uuid,
            console_session=console_session,
        )
    return _connection_info(consumed)


def resume(
    session_factory: db_engine.SessionFactory,
    token: str,
    console_session: str,
    instance_uuid: str | None = None,
    *,
    clock: Clock = models.utcnow,
) -> ConnectionInfo:
    """Where the console of ``token`` is, for the session that spent it with :func:`authorize`
    (the same ``console_session``), or raise :class:`ConsoleTokenRefusedError`: ``other_session``
    for any other session, else the reasons :func:`authorize` gives. Changes nothing, so it may
    be called for every connection of that session until the token expires.
    """
    _check_token_shape(token)
    with db_engine.transaction(session_factory) as session:
        row = db_console_auth.token_for_session(
            session,
            hash_token(token),
            now=clock(),
            console_session=console_session,
            instance_uuid=instance_uuid,
        )
    return _connection_info(row)


def _check_token_shape(token: str) -> None:
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise ConsoleTokenRefusedError(RefusalReason.UNKNOWN_TOKEN, "no such token")


def _connection_info(row: db_console_auth.TokenRow) -> ConnectionInfo:
    return ConnectionInfo(
        instance_uuid=row.instance_uuid,
        console_type=ConsoleType(row.console_type),
        host=row.host,
        address=row.console_address or row.host,
        port=row.port,
        tls_port=row.tls_port,
        internal_access_path=row.internal_access_path,
        expires=row.expires,
    )


@db_engine.retry_on_deadlock
def _purge_batch(session_factory: db_engine.SessionFactory, now: dt.datetime, limit: int) -> int:
    # Its own transaction, retried alone: a batch that lost a lock race costs one batch.
    with db_engine.transaction(session_factory) as session:
        return db_console_auth.tokens_purge_expired(session, now=now, limit=limit)


def purge_expired(
    session_factory: db_engine.SessionFactory,
    *,
    clock: Clock = models.utcnow,
    batch_size: int = PURGE_BATCH_SIZE,
) -> int:
    """Delete the tokens that have expired, ``batch_size`` rows per transaction, until none is
    left; how many were deleted. Run by the operator every :data:`PURGE_INTERVAL_S`.

    The time is read once: tokens that expire while the pass runs wait for the next one, so a
    pass always ends, however fast tokens are minted.
    """
    now = clock()
    purged = 0
    while True:
        batch = _purge_batch(session_factory, now, batch_size)
        purged += batch
        if batch < batch_size:
            return purged
