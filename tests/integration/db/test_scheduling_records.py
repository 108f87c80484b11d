"""What the scheduler reads besides room: build failures per host, disabled hosts, and each
instance's reschedule bookkeeping."""

from __future__ import annotations

import threading

import pytest

from kubenova.db import api
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import make_host, make_instance, node

pytestmark = pytest.mark.integration


def _failure(session_factory, host: str) -> int | None:
    with db_engine.transaction(session_factory) as session:
        return api.compute_node_record_build_failure(session, host)


def _success(session_factory, host: str) -> int | None:
    with db_engine.transaction(session_factory) as session:
        return api.compute_node_record_build_success(session, host)


def test_build_failures_count_up_and_a_success_resets_them(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)
    generation = node(db_session_factory, "h1").generation
    assert node(db_session_factory, "h1").failed_builds == 0

    counts = [_failure(db_session_factory, "h1") for _ in range(3)]
    # The agent's next report leaves the count alone.
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)

    assert counts == [1, 2, 3]
    with db_engine.transaction(db_session_factory) as session:
        listed = {r.node.host: r.node.failed_builds for r in api.compute_nodes_list(session)}
    assert listed == {"h1": 3, "h2": 0}
    assert node(db_session_factory, "h1").generation == generation

    assert _success(db_session_factory, "h1") == 0
    assert _success(db_session_factory, "h1") == 0
    assert node(db_session_factory, "h1").failed_builds == 0


def test_build_results_for_an_unknown_host_are_none(db_session_factory):
    assert _failure(db_session_factory, "no-such-host") is None
    assert _success(db_session_factory, "no-such-host") is None


def test_concurrent_build_failures_each_count(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(2):
                _failure(db_session_factory, "h1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert node(db_session_factory, "h1").failed_builds == 20


def test_disable_keeps_the_reason_and_enable_clears_it(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)

    with db_engine.transaction(db_session_factory) as session:
        disabled = api.compute_node_set_disabled(session, "h1", True, "maintenance: " + "x" * 300)
        unknown = api.compute_node_set_disabled(session, "nowhere", True, "gone")
    with db_engine.transaction(db_session_factory) as session:
        records = {r.node.host: r for r in api.compute_nodes_list(session)}

    assert unknown is None
    assert disabled is not None
    assert records["h1"].disabled
    assert not records["h2"].disabled
    reason = records["h1"].node.disabled_reason
    assert reason is not None
    assert reason.startswith("maintenance: ")
    assert len(reason) == 255
    # The agent's next report does not enable the host again.
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    assert node(db_session_factory, "h1").disabled

    with db_engine.transaction(db_session_factory) as session:
        enabled = api.compute_node_set_disabled(session, "h1", False, "back")
    assert enabled is not None
    after = node(db_session_factory, "h1")
    assert (after.disabled, after.disabled_reason) == (False, None)


def test_reschedule_bookkeeping_is_recorded_and_updated(db_session_factory):
    uuid = make_instance(db_session_factory, availability_zone="zone-a")
    plain = make_instance(db_session_factory)

    with db_engine.transaction(db_session_factory) as session:
        fresh = api.instance_get(session, uuid)
        untouched = api.instance_get(session, plain)
        assert fresh is not None
        assert untouched is not None
        assert (fresh.availability_zone, fresh.attempts, fresh.alternates, fresh.tried_hosts) == (
            "zone-a",
            0,
            None,
            None,
        )
        assert (untouched.availability_zone, untouched.attempts) == (None, 0)
        tried = [{"host": "h1", "reason": "spawn failed: no space left"}]
        api.instance_update(session, uuid, attempts=1, alternates=["h2", "h3"], tried_hosts=tried)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
        assert record is not None
        assert record.tried_hosts is not None
        api.instance_update(
            session,
            uuid,
            attempts=2,
            alternates=["h3"],
            tried_hosts=[*record.tried_hosts, {"host": "h2", "reason": "timed out"}],
            availability_zone=None,
        )
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
    assert record is not None
    assert (record.attempts, record.alternates, record.availability_zone) == (2, ["h3"], None)
    assert record.tried_hosts == [
        {"host": "h1", "reason": "spawn failed: no space left"},
        {"host": "h2", "reason": "timed out"},
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", -1),
        ("attempts", None),
        ("attempts", True),
        ("alternates", "h1"),
        ("alternates", ["h1", 2]),
        ("tried_hosts", [{"host": "h1"}]),
        ("tried_hosts", [{"host": "h1", "reason": "x", "extra": "y"}]),
        ("tried_hosts", ["h1"]),
        ("availability_zone", 3),
    ],
)
def test_malformed_reschedule_bookkeeping_is_refused(db_session_factory, field, value):
    uuid = make_instance(db_session_factory)

    with (
        pytest.raises(ValueError, match=field),
        db_engine.transaction(db_session_factory) as session,
    ):
        api.instance_update(session, uuid, **{field: value})

    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
    assert record is not None
    assert (record.attempts, record.alternates, record.tried_hosts) == (0, None, None)
