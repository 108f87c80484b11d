"""retry_on_deadlock runs a transaction again only for lock conflicts, a bounded number of times."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy import exc as sa_exc

from kubenova.db import engine


def _db_error(
    code: int, message: str = "x", cls: type[sa_exc.DBAPIError] = sa_exc.OperationalError
):
    return cls("UPDATE compute_nodes SET ...", {}, pymysql.err.OperationalError(code, message))


DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
LOST_CONNECTION = 2013
DUPLICATE_ENTRY = 1062


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_deadlock_is_retried_until_the_transaction_succeeds():
    sleeps: list[float] = []
    flaky = Flaky(_db_error(DEADLOCK), _db_error(DEADLOCK))
    wrapped = engine.retry_on_deadlock(max_attempts=5, sleep=sleeps.append)(flaky)

    assert wrapped() == "done"
    assert flaky.calls == 3
    assert len(sleeps) == 2


def test_lock_wait_timeout_is_retried():
    flaky = Flaky(_db_error(LOCK_WAIT_TIMEOUT))
    assert engine.retry_on_deadlock(sleep=lambda _: None)(flaky)() == "done"
    assert flaky.calls == 2


def test_gives_up_after_max_attempts_with_the_last_error():
    errors = [_db_error(DEADLOCK, f"attempt {i}") for i in range(1, 4)]
    flaky = Flaky(*errors)
    wrapped = engine.retry_on_deadlock(max_attempts=3, sleep=lambda _: None)(flaky)

    with pytest.raises(sa_exc.OperationalError) as raised:
        wrapped()
    assert raised.value is errors[2]
    assert flaky.calls == 3


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        # The commit may have happened: running the transaction again could apply it twice.
        (LOST_CONNECTION, sa_exc.OperationalError),
        (DUPLICATE_ENTRY, sa_exc.IntegrityError),
    ],
)
def test_other_database_errors_are_not_retried(code, cls):
    flaky = Flaky(_db_error(code, cls=cls))
    wrapped = engine.retry_on_deadlock(sleep=lambda _: pytest.fail("must not sleep"))(flaky)

    with pytest.raises(cls):
        wrapped()
    assert flaky.calls == 1


def test_an_invalidated_connection_is_not_retried_even_with_a_deadlock_code():
    error = _db_error(DEADLOCK)
    error.connection_invalidated = True
    flaky = Flaky(error)

    with pytest.raises(sa_exc.OperationalError):
        engine.retry_on_deadlock(sleep=lambda _: None)(flaky)()
    assert flaky.calls == 1


def test_bare_decorator_keeps_the_function_name_and_arguments():
    calls: list[tuple[int, str]] = []

    @engine.retry_on_deadlock
    def claim(a: int, *, b: str) -> str:
        calls.append((a, b))
        return f"{a}{b}"

    assert claim(1, b="x") == "1x"
    assert claim.__name__ == "claim"
    assert calls == [(1, "x")]


def test_max_attempts_below_one_is_refused():
    with pytest.raises(ValueError, match="max_attempts"):
        engine.retry_on_deadlock(max_attempts=0)


def test_backoff_cap_doubles_up_to_the_maximum_and_jitters_below_it():
    caps = [
        engine.backoff_delay(n, base_delay=0.1, max_delay=0.5, rng=lambda: 1.0)
        for n in (1, 2, 3, 4)
    ]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert engine.backoff_delay(
        3, base_delay=0.1, max_delay=0.5, rng=lambda: 0.25
    ) == pytest.approx(0.1)
    assert engine.backoff_delay(1, rng=lambda: 0.0) == 0.0


def test_error_code_is_read_from_the_driver_exception():
    assert engine.db_error_code(_db_error(DEADLOCK)) == DEADLOCK
    assert engine.db_error_code(pymysql.err.OperationalError(LOCK_WAIT_TIMEOUT, "x")) == 1205
    assert engine.db_error_code(ValueError("no code")) is None
