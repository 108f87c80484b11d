"""Engines, sessions, transactions, and retrying a transaction that lost a lock race.

One engine per process and URL; sessions come from a :data:`SessionFactory`. Every change that
touches several rows happens in one transaction: open it with :func:`transaction` (a session
that commits on success and rolls back on error), and wrap the function that owns the
transaction in :func:`retry_on_deadlock` so a transaction InnoDB chose as a deadlock victim is
run again from the start.

Only errors that guarantee the whole transaction had no effect are retried: deadlock (1213),
lock wait timeout (1205) and MariaDB's snapshot-isolation conflict (1020). A connection lost
during COMMIT is *not* retried: the commit may have happened, and running the transaction again
could apply it twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, ParamSpec, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

LOG = logging.getLogger(__name__)

DB_URL_ENV: Final = "KUBENOVA_DB_URL"

# MySQL/MariaDB error codes after which the transaction can safely be run again.
ER_LOCK_DEADLOCK: Final = 1213
ER_LOCK_WAIT_TIMEOUT: Final = 1205
# MariaDB's "Record has changed since last read": a serialization failure raised when
# innodb_snapshot_isolation is on (the default from MariaDB 11.8).
ER_CHECKREAD: Final = 1020
RETRYABLE_ERROR_CODES: Final = frozenset({ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_CHECKREAD})

# Longer than a typical idle timeout of proxies in front of MySQL is risky; an hour is well
# under MariaDB's default wait_timeout (8 h) and short enough for most load balancers.
DEFAULT_POOL_RECYCLE: Final = 3600

DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_BASE_DELAY: Final = 0.05
DEFAULT_MAX_DELAY: Final = 1.0

SessionFactory = orm.sessionmaker[orm.Session]

P = ParamSpec("P")
R = TypeVar("R")


def url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The database URL from ``KUBENOVA_DB_URL``; raises ``RuntimeError`` when it is unset.

    There is no default: a URL carries the database password, so it comes from the process's
    environment (hack/lib/env.sh for the local stack, a Secret in the chart), never the source.
    """
    env = os.environ if environ is None else environ
    url = env.get(DB_URL_ENV, "").strip()
    if not url:
        raise RuntimeError(
            f"no database URL: set {DB_URL_ENV} to the nova database's SQLAlchemy URL, "
            "e.g. mysql+pymysql://USER:PASSWORD@HOST:3306/nova?charset=utf8mb4"
        )
    return url


def create_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for a MySQL/MariaDB URL, e.g. ``mysql+pymysql://u:p@host/nova?charset=utf8mb4``.

    A connection that sat in the pool longer than ``PING_AFTER_IDLE_S`` is pinged before it
    is handed out, and replaced if the server closed it (a restart, ``wait_timeout``);
    ``pool_recycle`` retires connections before a middlebox can silently drop them. Keyword
    arguments override these defaults (``pool_pre_ping=True`` pings on every checkout).
    """
    # The operator runs its kopf handler threads, the conductor's lanes and its timers at
    # once: a pool that small threads outgrow makes every burst open (and TLS-negotiate) new
    # connections, which profiling showed to be a fifth of the operator's time. The
    # operator sizes its pool from its settings (kubenova.api.runtime.db_pool_size).
    options: dict[str, Any] = {"pool_recycle": DEFAULT_POOL_RECYCLE, "pool_reset_on_return": None}
    if "poolclass" not in kwargs:
        options.update(pool_size=24, max_overflow=16)
    options.update(kwargs)
    engine = sa.create_engine(url, **options)
    if not options.get("pool_pre_ping"):
        _ping_after_idle(engine)
    if options.get("pool_reset_on_return") is None:
        _rollback_open_transaction_on_return(engine)
    return engine


def _rollback_open_transaction_on_return(engine: sa.Engine) -> None:
    """Roll back a returned connection unless its last act was a COMMIT or ROLLBACK.

    SQLAlchemy's default sends ROLLBACK on every return to the pool, even right after the
    session committed: one round trip per transaction, a sixth of the operator's statements.
    A connection that committed or rolled back goes back as it is; one that a reader left
    inside an implicit transaction, or used raw, is still rolled back (its REPEATABLE READ
    snapshot must not outlive the checkout). The server's own in-transaction flag cannot
    decide it, since PyMySQL only keeps it from OK replies, not from the end of a result set.
    """

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        record.info["transaction_may_be_open"] = True

    def _ended(conn: Any) -> None:
        if not conn.invalidated:  # an invalidated connection is discarded, never reset
            conn.info["transaction_may_be_open"] = False

    sa.event.listen(engine, "commit", _ended)
    sa.event.listen(engine, "rollback", _ended)

    @sa.event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        if reset_state.terminate_only:
            return
        if record.info.get("transaction_may_be_open", True):
            dbapi_connection.rollback()
            record.info["transaction_may_be_open"] = False


# SQLAlchemy's pool_pre_ping costs a round trip on every checkout, a sixth of all the
# operator's statements under load. A connection returned to the pool a moment ago is as
# good as the last statement it ran; only one that idled is worth the ping. A server that
# went away meanwhile fails the first statement instead, which SQLAlchemy answers by
# invalidating the whole pool and the caller (a kopf retry, a requeued message) by running
# again.
PING_AFTER_IDLE_S: Final = 10.0


def _ping_after_idle(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return
        try:
            dbapi_connection.ping(reconnect=False)
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one).
            raise sa_exc.DisconnectionError(f"pooled connection is gone: {exc}") from exc


def make_session_factory(engine: sa.Engine) -> SessionFactory:
    """A sessionmaker bound to ``engine``.

    ``expire_on_commit=False`` so objects returned by a committed transaction can still be read
    by the caller (their attributes are the committed values).
    """
    return orm.sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(session_factory: SessionFactory) -> Iterator[orm.Session]:
    """A session inside one transaction: committed when the block ends, rolled back if it raises.

    A context manager cannot run its block again, so retries belong to the enclosing function:
    decorate it with :func:`retry_on_deadlock`.
    """
    with session_factory() as session, session.begin():
        yield session


def db_error_code(exc: BaseException) -> int | None:
    """The MySQL error number behind a SQLAlchemy or PyMySQL exception, if there is one."""
    orig: object = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    args = getattr(orig, "args", ())
    if isinstance(args, tuple) and args and isinstance(args[0], int):
        return args[0]
    return None


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` means the transaction was rolled back by a lock conflict."""
    if not isinstance(exc, sa_exc.DBAPIError) or exc.connection_invalidated:
        return False
    return db_error_code(exc) in RETRYABLE_ERROR_CODES


def backoff_delay(
    attempt: int,
    *,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): "full jitter" backoff.

    The cap doubles with each attempt up to ``max_delay`` and the wait is uniform below it, so
    transactions that collided once do not collide again in lockstep.
    """
    cap = min(max_delay, base_delay * 2.0 ** (attempt - 1))
    return cap * rng()


@overload
def retry_on_deadlock(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def retry_on_deadlock(
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    sleep: Callable[[float], object] = time.sleep,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def retry_on_deadlock(
    func: Callable[P, R] | None = None,
    /,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    sleep: Callable[[float], object] = time.sleep,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function again when its transaction was a lock-conflict victim.

    Use it bare (``@retry_on_deadlock``) or with options (``@retry_on_deadlock(max_attempts=8)``).
    The decorated function must own its whole transaction (open and commit it itself): a
    retry inside someone else's transaction cannot help, since the server already rolled that
    transaction back. After ``max_attempts`` tries the last error is raised.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            attempt = 1
            while True:
                try:
                    return fn(*args, **kwargs)
                except sa_exc.DBAPIError as exc:
                    if attempt >= max_attempts or not is_retryable(exc):
                        raise
                    delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay)
                    LOG.warning(
                        "%s: transaction rolled back by MySQL error %s, retrying "
                        "(attempt %d of %d) in %.3f s",
                        getattr(fn, "__qualname__", fn),
                        db_error_code(exc),
                        attempt + 1,
                        max_attempts,
                        delay,
                    )
                    sleep(delay)
                    attempt += 1

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
