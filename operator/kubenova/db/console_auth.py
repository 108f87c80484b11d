"""Console token records (Nova's consoleauth): create, consume once, purge the expired.

Every function runs in the caller's transaction and knows tokens only by their hash (the hex
sha256 that :mod:`kubenova.console.auth` computes); the token itself never reaches this layer.

A token dies with its instance and when its instance moves, yet neither the delete path nor a
move touches this table: those are hot paths, and a token is rare. Instead :func:`token_consume`
accepts a token only while its instance's row is live and still names the token's host, in the
same statement that marks the token used.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import console_models, exceptions, models

# A console_auth_tokens row as the functions below return it.
TokenRow = sa.Row[Any]

_HEX_DIGITS: Final = frozenset("0123456789abcdef")
HASH_LENGTH: Final = 64


class RefusalReason(enum.StrEnum):
    """Why a console token was refused; the value is what logs and metrics show."""

    UNKNOWN_TOKEN = "unknown_token"
    EXPIRED = "expired"
    ALREADY_USED = "already_used"
    WRONG_INSTANCE = "wrong_instance"
    INSTANCE_DELETED = "instance_deleted"
    INSTANCE_MOVED = "instance_moved"
    CONSOLE_GONE = "console_gone"
    OTHER_SESSION = "other_session"


class ConsoleTokenRefusedError(exceptions.DBError):
    """A console token opens nothing; ``reason`` says why, e.g.
    ``console token refused (expired): it expired at 2026-12-06 18:00:00+00:00``.

    The message never holds the token or its hash: it is meant for logs.
    """

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"console token refused ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail


_TOKENS: Final = models.table(console_models.ConsoleAuthToken)
_INSTANCES: Final = models.table(models.Instance)
_NODES: Final = models.table(models.ComputeNode)
# The token's host's live node, whose reported console address is where a proxy connects
# (Nova keeps the compute host's vncserver_proxyclient_address in the token; here the host's
# current report is read, so a host whose address changed is reached at the new one).
_TOKENS_AND_NODE: Final = _TOKENS.outerjoin(
    _NODES, sa.and_(_NODES.c.host == _TOKENS.c.host, _NODES.c.deleted == 0)
)

_INSERT_TOKEN: Final = _TOKENS.insert()

_B_HASH: Final = sa.bindparam("b_token_hash", type_=sa.String(HASH_LENGTH))
_B_NOW: Final = sa.bindparam("b_now", type_=models.UTCDateTime())
_B_INSTANCE: Final = sa.bindparam("b_instance_uuid", type_=sa.String(36))

# The token's port is still one of its instance's consoles, as the host last reported them: a
# guest whose QEMU restarted may have been handed other ports, and its old port another
# guest's console (Nova asks the compute host the same, validate_console_port).
_PORT_IS_THE_INSTANCES: Final = sa.or_(
    _TOKENS.c.port == _INSTANCES.c.vnc_port,
    _TOKENS.c.port == _INSTANCES.c.spice_port,
    _TOKENS.c.tls_port == _INSTANCES.c.spice_tls_port,
)

# The whole decision in one UPDATE: InnoDB locks the token row while it evaluates the WHERE
# against the row's latest committed version, so of two consumers racing on one token the
# second waits for the first and then no longer matches (``used_at`` is set). The join reads
# the instance row with a shared lock, so a delete or a move committing at the same moment is
# either seen or waits. Nothing matched means refused; :func:`_refusal` then says why.
_CONSUME_ANY: Final = (
    _TOKENS.update()
    .where(
        _TOKENS.c.token_hash == _B_HASH,
        _TOKENS.c.used_at.is_(None),
        _TOKENS.c.expires > _B_NOW,
        _INSTANCES.c.uuid == _TOKENS.c.instance_uuid,
        _INSTANCES.c.deleted == 0,
        _INSTANCES.c.host == _TOKENS.c.host,
        _PORT_IS_THE_INSTANCES,
    )
    .values(
        used_at=_B_NOW,
        updated_at=_B_NOW,
        console_session=sa.bindparam("b_console_session", type_=sa.String(255)),
    )
)
# A token asked for on behalf of another instance is not spent: the caller erred, the owner
# may still use it.
_CONSUME_FOR_INSTANCE: Final = _CONSUME_ANY.where(_TOKENS.c.instance_uuid == _B_INSTANCE)

_SELECT_TOKEN: Final = (
    sa.select(_TOKENS, _NODES.c.console_address)
    .select_from(_TOKENS_AND_NODE)
    .where(_TOKENS.c.token_hash == _B_HASH)
)
# Locks the token and its instance, so the reason found stays true until the transaction ends.
_SELECT_TOKEN_AND_INSTANCE_FOR_UPDATE: Final = (
    sa.select(
        _TOKENS.c.instance_uuid,
        _TOKENS.c.host,
        _TOKENS.c.port,
        _TOKENS.c.expires,
        _TOKENS.c.used_at,
        _INSTANCES.c.id.label("instance_id"),
        _INSTANCES.c.deleted.label("instance_deleted"),
        _INSTANCES.c.host.label("instance_host"),
        _PORT_IS_THE_INSTANCES.label("port_is_the_instances"),
    )
    .select_from(_TOKENS.outerjoin(_INSTANCES, _INSTANCES.c.uuid == _TOKENS.c.instance_uuid))
    .where(_TOKENS.c.token_hash == _B_HASH)
    .with_for_update()
)

_SELECT_TOKEN_AND_INSTANCE: Final = (
    sa.select(
        _TOKENS,
        _NODES.c.console_address,
        _INSTANCES.c.id.label("instance_id"),
        _INSTANCES.c.deleted.label("instance_deleted"),
        _INSTANCES.c.host.label("instance_host"),
        _PORT_IS_THE_INSTANCES.label("port_is_the_instances"),
    )
    .select_from(
        _TOKENS_AND_NODE.outerjoin(_INSTANCES, _INSTANCES.c.uuid == _TOKENS.c.instance_uuid)
    )
    .where(_TOKENS.c.token_hash == _B_HASH)
)

# The purge, a batch at a time: the caller commits each batch before the next, so a backlog
# (an operator that was down for a day) is cleared in many short transactions, and a mint or
# a consume that meets a row being deleted waits for one batch, not for the whole purge. The
# SELECT is a plain consistent read (no locks); the DELETE names the rows it found by their
# primary keys, with no ``expires`` condition the optimizer could answer by scanning the
# expiry index (a range scan there next-key locks the gap where new tokens go).
_SELECT_EXPIRED_IDS: Final = (
    sa.select(_TOKENS.c.id).where(_TOKENS.c.expires <= _B_NOW).order_by(_TOKENS.c.expires)
)
_DELETE_BY_ID: Final = _TOKENS.delete().where(
    _TOKENS.c.id.in_(sa.bindparam("b_ids", expanding=True))
)


def is_token_hash(value: str) -> bool:
    """True for a hex sha256 as :mod:`kubenova.console.auth` writes it (64 lowercase digits)."""
    return len(value) == HASH_LENGTH and set(value) <= _HEX_DIGITS


def token_create(
    session: orm.Session,
    *,
    token_hash: str,
    instance_uuid: str,
    console_type: str,
    host: str,
    port: int,
    tls_port: int | None,
    internal_access_path: str | None,
    expires: dt.datetime,
    now: dt.datetime,
) -> None:
    """Record a new token by its hash.

    Anything but a hex sha256 raises ``ValueError``: storing a plaintext token by mistake must
    fail loudly. An instance that was never recorded fails on the foreign key
    (``sqlalchemy.exc.IntegrityError``).
    """
    if not is_token_hash(token_hash):
        raise ValueError("token_hash must be the hex sha256 of the token, not the token")
    if expires <= now:
        raise ValueError(f"a token must expire after it is made: expires {expires} <= now {now}")
    session.connection().execute(
        _INSERT_TOKEN,
        {
            "token_hash": token_hash,
            "instance_uuid": instance_uuid,
            "console_type": console_type,
            "host": host,
            "port": port,
            "tls_port": tls_port,
            "internal_access_path": internal_access_path,
            "expires": expires,
            "created_at": now,
        },
    )


def token_consume(
    session: orm.Session,
    token_hash: str,
    *,
    now: dt.datetime,
    instance_uuid: str | None = None,
    console_session: str | None = None,
) -> sa.Row[Any]:
    """Accept the token with this hash once, and return its row: where its console is, as it
    was recorded at mint time.

    Accepted only if the token is known, was not used, expires after ``now``, belongs to
    ``instance_uuid`` (when given), and its instance is live, still on the token's host and
    still has a console on the token's port.
    Accepting marks it used (``used_at = now``, ``console_session`` recorded) in the same
    UPDATE that checks all of that, so exactly one of any number of concurrent callers gets
    the token. Otherwise raises :class:`ConsoleTokenRefusedError` naming the first failed check
    in the order above, and the token is left as it was.
    """
    params: dict[str, Any] = {
        "b_token_hash": token_hash,
        "b_now": now,
        "b_instance_uuid": instance_uuid,
        "b_console_session": console_session,
    }
    statement = _CONSUME_ANY if instance_uuid is None else _CONSUME_FOR_INSTANCE
    connection = session.connection()
    if connection.execute(statement, params).rowcount != 1:
        refusal = _refusal(connection, params, now, instance_uuid)
        if refusal is not None:
            raise refusal
        # The state changed between the UPDATE and the locking read (a move that went back,
        # say); with the rows now locked the UPDATE sees what the read saw.
        if connection.execute(statement, params).rowcount != 1:
            raise RuntimeError("a console token passed every check but could not be consumed")
    row = connection.execute(_SELECT_TOKEN, params).one()
    # The database compared with its collation; the final say is an exact, constant-time one.
    if not hmac.compare_digest(row.token_hash, token_hash):
        raise ConsoleTokenRefusedError(RefusalReason.UNKNOWN_TOKEN, "no such token")
    return row


def token_for_session(
    session: orm.Session,
    token_hash: str,
    *,
    now: dt.datetime,
    console_session: str,
    instance_uuid: str | None = None,
) -> sa.Row[Any]:
    """The row of the token with this hash, already spent by ``console_session``: the same
    browser session opening another connection (spice-html5 opens one per channel, noVNC
    reconnects after a drop). Changes nothing.

    Refused with :class:`ConsoleTokenRefusedError` unless the token is known, belongs to
    ``instance_uuid`` (when given), was spent by exactly ``console_session``, has not expired,
    and its instance is live, still on the token's host and still has a console on the
    token's port. A token nobody spent yet is refused as ``other_session``: it must be spent
    with :func:`token_consume` first.
    """
    row = (
        session.connection()
        .execute(_SELECT_TOKEN_AND_INSTANCE, {"b_token_hash": token_hash})
        .one_or_none()
    )
    if row is None or not hmac.compare_digest(row.token_hash, token_hash):
        raise ConsoleTokenRefusedError(RefusalReason.UNKNOWN_TOKEN, "no such token")
    refusal = _wrong_instance(row, instance_uuid) or _place_refusal(row, now)
    if refusal is not None:
        raise refusal
    if row.used_at is None or not hmac.compare_digest(row.console_session or "", console_session):
        raise ConsoleTokenRefusedError(
            RefusalReason.OTHER_SESSION, "it belongs to another browser session"
        )
    return row


def _refusal(
    connection: sa.Connection,
    params: dict[str, Any],
    now: dt.datetime,
    instance_uuid: str | None,
) -> ConsoleTokenRefusedError | None:
    """Why the token with this hash cannot be consumed now; None if it can."""
    row = connection.execute(_SELECT_TOKEN_AND_INSTANCE_FOR_UPDATE, params).one_or_none()
    if row is None:
        return ConsoleTokenRefusedError(RefusalReason.UNKNOWN_TOKEN, "no such token")
    wrong = _wrong_instance(row, instance_uuid)
    if wrong is not None:
        return wrong
    if row.used_at is not None:
        return ConsoleTokenRefusedError(
            RefusalReason.ALREADY_USED, f"it was used at {row.used_at} and opens one console"
        )
    return _place_refusal(row, now)


def _wrong_instance(row: sa.Row[Any], instance_uuid: str | None) -> ConsoleTokenRefusedError | None:
    if instance_uuid is not None and row.instance_uuid != instance_uuid:
        return ConsoleTokenRefusedError(
            RefusalReason.WRONG_INSTANCE, f"the token is not for instance {instance_uuid}"
        )
    return None


def _place_refusal(row: sa.Row[Any], now: dt.datetime) -> ConsoleTokenRefusedError | None:
    """Why the token of ``row`` opens nothing now, whoever presents it: it expired, or its
    instance was deleted, moved, or no longer has a console on the token's port."""
    if row.expires <= now:
        return ConsoleTokenRefusedError(RefusalReason.EXPIRED, f"it expired at {row.expires}")
    if row.instance_id is None or row.instance_deleted != 0:
        return ConsoleTokenRefusedError(
            RefusalReason.INSTANCE_DELETED, f"instance {row.instance_uuid} was deleted"
        )
    if row.instance_host != row.host:
        return ConsoleTokenRefusedError(
            RefusalReason.INSTANCE_MOVED,
            f"instance {row.instance_uuid} moved off host {row.host} after the token was made",
        )
    if not row.port_is_the_instances:
        return _console_gone(row)
    return None


def _console_gone(row: sa.Row[Any]) -> ConsoleTokenRefusedError:
    return ConsoleTokenRefusedError(
        RefusalReason.CONSOLE_GONE,
        f"port {row.port} on host {row.host} is no longer a console of instance"
        f" {row.instance_uuid} (its guest restarted since the token was made)",
    )


def tokens_purge_expired(session: orm.Session, *, now: dt.datetime, limit: int) -> int:
    """Delete at most ``limit`` of the tokens that expired at or before ``now``, the longest
    expired first; how many were deleted. Fewer than ``limit`` means none is left.

    One call is one batch: the caller commits it before the next, so no transaction of the
    purge lasts longer than deleting ``limit`` rows (see ``_SELECT_EXPIRED_IDS``). A token's
    expiry never changes, so the ids found are still expired when they are deleted. A
    ``limit`` below 1 raises ``ValueError``.

    Used tokens that have not expired stay, so presenting one again is refused as
    ``already_used`` rather than ``unknown_token``.
    """
    if limit < 1:
        raise ValueError(f"the purge's batch limit must be at least 1, not {limit}")
    connection = session.connection()
    ids = list(connection.execute(_SELECT_EXPIRED_IDS.limit(limit), {"b_now": now}).scalars())
    if not ids:
        return 0
    return connection.execute(_DELETE_BY_ID, {"b_ids": ids}).rowcount
