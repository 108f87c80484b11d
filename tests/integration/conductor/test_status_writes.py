"""How many apiserver round trips the conductor spends on status, on a real database.

An Instance's status is projected from the status this process last wrote (no GET), an
unchanged projection is not written, and an agent report that changes nothing writes
nothing. A heartbeat reads its Hypervisor object only on the host's first report and then
every ``HYPERVISOR_RESYNC_S``, and rewrites a status whose only changes are
``lastHeartbeat``, usage or the running count only every ``HEARTBEAT_STATUS_INTERVAL_S``, or
longer on a fleet of more than 300 hosts (the periodic check writes usage changes and the
placed count, ``instances``).

The Kubernetes side is a recording fake holding the objects in memory and applying status
patches as JSON merge patches.
"""

from __future__ import annotations

import copy
import datetime as dt
import types
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor import hypervisor_status, hypervisors
from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import (
    LAUNCHED,
    instance_name,
    make_conductor,
    node_report,
    running_instance,
)
from tests.integration.db.helpers import claim, make_host, make_instance, node
from tests.support import NAMESPACE, FakeClock, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

LONG_AGO = "2020-01-01T00:00:00Z"
T0 = dt.datetime(2026, 6, 1, 8, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Stands in for the hypervisors module's ``time`` (monotonic) and for the wall clock
    that module and ``hypervisor_status`` read (``datetime.datetime.now``)."""
    clock = FakeClock(start=1000.0, wall_start=T0)

    class WallClock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return clock.now()

    wall = types.SimpleNamespace(datetime=WallClock, UTC=dt.UTC)
    monkeypatch.setattr(hypervisors, "time", clock)
    monkeypatch.setattr(hypervisors, "datetime", wall)
    monkeypatch.setattr(hypervisor_status, "datetime", wall)
    return clock


def _heartbeat_now(session_factory: db_engine.SessionFactory, host: str = "h1") -> None:
    with db_engine.transaction(session_factory) as session:
        db_api.service_record_heartbeat(
            session, host, models.AGENT_BINARY, f"compute.{host}", "1.0"
        )


def _set(session_factory: db_engine.SessionFactory, uuid: str, **values: Any) -> None:
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(session, uuid, **values)


def _project(conductor: Conductor, uuid: str, **kwargs: Any) -> None:
    conductor.projector.project(uuid, **kwargs)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == type_)
    return found


def _report(uuid: str, **overrides: Any) -> payloads.InstanceUpdate:
    values: dict[str, Any] = {
        "instance_uuid": uuid,
        "host": "h1",
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "addresses": ("192.168.122.10",),
    }
    values.update(overrides)
    return payloads.InstanceUpdate(**values)


@pytest.fixture
def h1(db_session_factory: db_engine.SessionFactory) -> str:
    """Host h1, registered and heartbeating."""
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _heartbeat_now(db_session_factory)
    return "h1"


# -- projections ----------------------------------------------------------------------------


def test_first_projection_reads_the_object_and_later_ones_start_from_memory(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    scheduled = {
        "type": "Scheduled",
        "status": "True",
        "reason": "Scheduled",
        "message": "claimed on host h1",
        "lastTransitionTime": LONG_AGO,
    }
    uuid = running_instance(db_session_factory, kube, status={"conditions": [scheduled]})

    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 1}
    status = kube.status_of(instance_name(uuid))
    assert status["phase"] == "Running"
    assert _condition(status, "Scheduled")["lastTransitionTime"] == LONG_AGO

    _set(db_session_factory, uuid, vm_state="stopped", power_state="shutdown")
    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 2}
    status = kube.status_of(instance_name(uuid))
    assert status["phase"] == "Stopped"
    # The unchanged condition kept its time although the object was not read again.
    assert _condition(status, "Scheduled")["lastTransitionTime"] == LONG_AGO
    assert _condition(status, "Ready")["status"] == "False"


def test_a_projection_that_changes_nothing_is_not_patched(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    _project(conductor, uuid)
    written = copy.deepcopy(kube.status_of(instance_name(uuid)))
    _project(conductor, uuid)
    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 1}
    assert kube.status_of(instance_name(uuid)) == written


def test_an_object_already_saying_what_the_record_projects_is_not_patched(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    caster: RecordingCaster,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    _project(conductor, uuid)
    current = copy.deepcopy(kube.status_of(instance_name(uuid)))

    # Another process (a restarted operator) with no memory reads the object once, finds it
    # current, and from then on needs neither a GET nor a PATCH.
    other = make_conductor(db_session_factory, kube, caster)
    kube.calls.clear()
    _project(other, uuid)
    _project(other, uuid)
    assert kube.calls == {"get_instance": 1}
    assert kube.status_of(instance_name(uuid)) == current


def test_the_status_a_caller_holds_stands_in_for_the_get(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube, status={"phase": "Pending"})
    _project(conductor, uuid, current_status={"phase": "Pending"})
    assert kube.calls == {"patch_instance_status": 1}
    assert kube.status_of(instance_name(uuid))["phase"] == "Running"

    # Once something was written, the memory wins over a stale status a caller passes.
    _project(conductor, uuid, current_status={"phase": "Pending"})
    assert kube.calls == {"patch_instance_status": 1}


def test_a_projection_for_an_object_that_is_gone_writes_nothing_and_remembers_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    del kube.instances[(NAMESPACE, instance_name(uuid))]
    _project(conductor, uuid)
    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 2}


def test_a_patch_that_finds_the_object_gone_makes_the_next_projection_read_it(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 1}

    del kube.instances[(NAMESPACE, instance_name(uuid))]
    _set(db_session_factory, uuid, vm_state="stopped", power_state="shutdown")
    _project(conductor, uuid)  # the patch answers 404
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 2}

    kube.add_instance(instance_name(uuid), {"phase": "Running"})
    _project(conductor, uuid)
    assert kube.calls == {"get_instance": 2, "patch_instance_status": 3}
    assert kube.status_of(instance_name(uuid))["phase"] == "Stopped"


# -- agent reports --------------------------------------------------------------------------


def test_a_report_identical_to_the_record_writes_nothing_and_patches_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    statements: list[str],
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube, status={"phase": "Running"})
    statements.clear()

    conductor.instances.instance_update(_report(uuid))

    assert kube.calls == {}  # not even a GET, though this conductor remembers nothing
    assert not {"UPDATE", "INSERT", "DELETE"} & set(statements), statements
    assert kube.status_of(instance_name(uuid)) == {"phase": "Running"}


def test_a_report_the_record_already_holds_still_reaches_a_status_remembered_as_older(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    statements: list[str],
    h1: str,
) -> None:
    # The status written while the instance was building is remembered; the host's report
    # that it runs was committed, but its handling failed before the status was written (the
    # database went away under the commit), so the report comes again.
    uuid = running_instance(db_session_factory, kube)
    _set(db_session_factory, uuid, vm_state="building", task_state="spawning")
    _project(conductor, uuid)
    assert kube.status_of(instance_name(uuid))["phase"] == "Building"
    _set(db_session_factory, uuid, vm_state="active", task_state=None)
    kube.calls.clear()
    statements.clear()

    conductor.instances.instance_update(_report(uuid))
    conductor.projector.stop()  # waits for the queued write

    assert kube.status_of(instance_name(uuid))["phase"] == "Running"
    assert kube.calls == {"patch_instance_status": 1}
    assert not {"UPDATE", "INSERT", "DELETE"} & set(statements), statements

    # Once written, the same report again writes nothing.
    conductor.instances.instance_update(_report(uuid))
    assert kube.calls == {"patch_instance_status": 1}


def test_a_changed_report_is_recorded_and_patched_once(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    # Stopped as its spec asks (a guest that stops against the spec is restarted: see
    # test_power_operations.py).
    kube.instances[(NAMESPACE, instance_name(uuid))]["spec"]["powerState"] = "Stopped"
    _project(conductor, uuid)
    kube.calls.clear()

    conductor.instances.instance_update(
        _report(uuid, vm_state="stopped", power_state="shutdown", addresses=())
    )

    # The spec is read to learn whether the guest stopped against it.
    assert kube.calls == {"patch_instance_status": 1, "get_instance": 1}
    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        assert (record.vm_state, record.power_state, record.addresses) == (
            "stopped",
            "shutdown",
            [],
        )
    status = kube.status_of(instance_name(uuid))
    assert (status["phase"], status["addresses"]) == ("Stopped", [])

    # The same report again is now what the record says.
    conductor.instances.instance_update(
        _report(uuid, vm_state="stopped", power_state="shutdown", addresses=())
    )
    assert kube.calls == {"patch_instance_status": 1, "get_instance": 1}


def test_a_report_projects_its_host_as_up_without_asking_the_database(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
) -> None:
    # h1 has a compute node but no heartbeat on record: the database calls it down.
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    uuid = running_instance(db_session_factory, kube)
    kube.instances[(NAMESPACE, instance_name(uuid))]["spec"]["powerState"] = "Stopped"
    _project(conductor, uuid)
    assert kube.status_of(instance_name(uuid))["phase"] == "Unknown"

    conductor.instances.instance_update(_report(uuid, vm_state="stopped", power_state="shutdown"))
    assert kube.status_of(instance_name(uuid))["phase"] == "Stopped"


def test_a_launch_report_clears_the_build_failures_of_its_host(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = make_instance(db_session_factory)
    assert claim(db_session_factory, uuid, "h1")
    _set(db_session_factory, uuid, task_state="spawning")
    kube.add_instance(instance_name(uuid))
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h1")
            .values(failed_builds=2)
        )

    conductor.instances.instance_update(_report(uuid, launched_at=LAUNCHED))

    assert node(db_session_factory, "h1").failed_builds == 0
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 1}
    status = kube.status_of(instance_name(uuid))
    assert (status["phase"], status["launchedAt"]) == ("Running", "2026-01-01T12:00:00Z")


def test_a_terminated_instance_is_forgotten(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: str,
) -> None:
    uuid = running_instance(db_session_factory, kube)
    _project(conductor, uuid)
    assert conductor.projector._last_written.get(uuid) is not None
    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=uuid, host="h1"),
        "req-terminate",
    )
    assert conductor.projector._last_written.get(uuid) is None


# -- heartbeats -----------------------------------------------------------------------------


def test_heartbeats_read_the_hypervisor_on_the_first_report_then_every_resync_interval(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["ensure_hypervisor"] == 1

    clock.advance(hypervisors.HYPERVISOR_RESYNC_S - 1.5)
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["ensure_hypervisor"] == 1

    clock.advance(0.5)  # HYPERVISOR_RESYNC_S after the first read
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["ensure_hypervisor"] == 2

    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["ensure_hypervisor"] == 2
    assert kube.calls["get_hypervisor"] == 0


def test_each_host_is_read_on_its_own_first_report(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    conductor.hypervisors.compute_node_report(node_report(host="h2"))
    conductor.hypervisors.compute_node_report(node_report())
    conductor.hypervisors.compute_node_report(node_report(host="h2"))
    assert kube.calls["ensure_hypervisor"] == 2
    assert set(kube.hypervisors) == {"h1", "h2"}


def test_a_missed_change_to_the_hypervisor_is_picked_up_at_the_resync(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    first = node(db_session_factory, "h1")
    assert (first.labels, first.disabled) == ({"topology.kubernetes.io/zone": "az1"}, False)

    # An administrator's change whose watch event never reached the handlers.
    hypervisor = kube.hypervisors["h1"]
    hypervisor["metadata"]["labels"] = {"topology.kubernetes.io/zone": "az2"}
    hypervisor["spec"] = {"disabled": True, "disabledReason": "maintenance"}

    clock.advance(5)
    conductor.hypervisors.compute_node_report(node_report(labels={"ignored": "seed-only"}))
    between = node(db_session_factory, "h1")
    # Not read yet; and a heartbeat that did not read keeps the recorded labels.
    assert (between.labels, between.disabled) == ({"topology.kubernetes.io/zone": "az1"}, False)

    clock.advance(hypervisors.HYPERVISOR_RESYNC_S)
    conductor.hypervisors.compute_node_report(node_report())
    after = node(db_session_factory, "h1")
    assert after.labels == {"topology.kubernetes.io/zone": "az2"}
    assert (after.disabled, after.disabled_reason) == (True, "maintenance")
    # The status written by that heartbeat says so too.
    status = kube.hypervisors["h1"]["status"]
    assert (status["disabled"], status["disabledReason"]) == (True, "maintenance")


def test_a_heartbeat_between_resyncs_is_three_statements(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock, statements: list[str]
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    clock.advance(10)
    statements.clear()

    conductor.hypervisors.compute_node_report(node_report(vcpus=16))

    # The service's heartbeat, the node's report, and the node read back for its status.
    assert statements == ["INSERT", "INSERT", "SELECT"]
    assert kube.hypervisors["h1"]["status"]["vcpus"]["capacity"] == 16


def test_a_heartbeat_that_changes_nothing_is_one_statement_until_the_refresh(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
    statements: list[str],
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    clock.advance(10)
    an_hour_ago = models.utcnow() - dt.timedelta(hours=1)
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.Service)
            .where(models.Service.host == "h1")
            .values(last_seen_up=an_hour_ago)
        )
    statements.clear()

    conductor.hypervisors.compute_node_report(node_report())

    # Only the service's heartbeat: the node says what it said, and its status is fresh.
    assert statements == ["INSERT"]
    assert kube.calls["patch_hypervisor_status"] == 1
    with db_engine.transaction(db_session_factory) as session:
        service = db_api.service_get(session, "h1", models.AGENT_BINARY)
        assert service is not None
        assert service.last_seen_up is not None
        assert service.last_seen_up > an_hour_ago + dt.timedelta(minutes=59)

    # A change to what the node reports is recorded at once.
    uuid = make_instance(db_session_factory)
    statements.clear()
    conductor.hypervisors.compute_node_report(node_report(instance_uuids=(uuid,)))
    assert statements == ["INSERT", "INSERT", "SELECT"]
    assert node(db_session_factory, "h1").running_vms == 1

    # And when the status refresh is due, the whole report is recorded and written.
    clock.advance(hypervisors.HEARTBEAT_STATUS_INTERVAL_S)
    statements.clear()
    conductor.hypervisors.compute_node_report(node_report(instance_uuids=(uuid,)))
    assert statements == ["INSERT", "INSERT", "SELECT"]
    assert kube.calls["patch_hypervisor_status"] == 2


def test_a_heartbeat_of_a_host_marked_down_is_recorded_in_full(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
    statements: list[str],
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    conductor.hypervisors.service_stopping(payloads.ServiceStopping(host="h1"))
    assert kube.hypervisors["h1"]["status"]["state"] == "down"
    clock.advance(1)
    statements.clear()

    conductor.hypervisors.compute_node_report(node_report())

    # The report in full (then its instances are projected again, as the host is back).
    assert statements[:3] == ["INSERT", "INSERT", "SELECT"]
    assert kube.hypervisors["h1"]["status"]["state"] == "up"


def test_heartbeats_that_only_move_last_heartbeat_patch_once_per_interval(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["patch_hypervisor_status"] == 1
    first = copy.deepcopy(kube.hypervisors["h1"]["status"])
    assert first["lastHeartbeat"] == "2026-06-01T08:00:00Z"

    for _ in range(3):
        clock.advance(9)  # 9, 18, 27 s after the written lastHeartbeat
        conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["patch_hypervisor_status"] == 1
    assert kube.hypervisors["h1"]["status"] == first

    clock.advance(3)  # HEARTBEAT_STATUS_INTERVAL_S after the written one
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["patch_hypervisor_status"] == 2
    assert kube.hypervisors["h1"]["status"]["lastHeartbeat"] == "2026-06-01T08:00:30Z"

    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["patch_hypervisor_status"] == 2


def test_a_large_fleet_refreshes_unchanged_status_less_often(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    # 400 hosts: refreshed every 40 s, so the fleet's refreshes stay at 10 writes a second.
    for number in range(400):
        conductor.hypervisors.compute_node_report(node_report(f"h{number}"))
    written = kube.calls["patch_hypervisor_status"]
    assert written == 400

    clock.advance(30)
    conductor.hypervisors.compute_node_report(node_report("h7"))
    assert kube.calls["patch_hypervisor_status"] == written

    clock.advance(10)
    conductor.hypervisors.compute_node_report(node_report("h7"))
    assert kube.calls["patch_hypervisor_status"] == written + 1
    assert kube.hypervisors["h7"]["status"]["lastHeartbeat"] == "2026-06-01T08:00:40Z"

    # A change is still written at once.
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report("h8", qemu_version="9.9.9"))
    assert kube.calls["patch_hypervisor_status"] == written + 2


def test_a_usage_change_is_patched_by_the_check_and_refreshed_by_the_heartbeat_interval(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.hypervisors["h1"]["status"]["vcpus"]["used"] == 0

    uuid = make_instance(db_session_factory)
    assert claim(db_session_factory, uuid, "h1")
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report(instance_uuids=(uuid,)))
    # Usage and the running count alone wait: the periodic check writes usage.
    assert kube.calls["patch_hypervisor_status"] == 1

    assert conductor.hypervisors.check_hypervisors() == {"h1": "up"}
    assert kube.calls["patch_hypervisor_status"] == 2
    status = kube.hypervisors["h1"]["status"]
    assert (status["vcpus"]["used"], status["memoryMiB"]["used"]) == (1, 512)
    # The check writes the placed count; the running count is the agent's, at its refresh.
    assert (status["instances"], status["runningInstances"]) == (1, 0)

    clock.advance(29)  # HEARTBEAT_STATUS_INTERVAL_S after the written lastHeartbeat
    conductor.hypervisors.compute_node_report(node_report(instance_uuids=(uuid,)))
    assert kube.calls["patch_hypervisor_status"] == 3
    status = kube.hypervisors["h1"]["status"]
    assert (status["instances"], status["runningInstances"]) == (1, 1)
    assert status["lastHeartbeat"] == "2026-06-01T08:00:30Z"


def test_a_state_change_is_patched_at_the_next_heartbeat_at_once(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report(qemu_version="9.9.9"))
    assert kube.calls["patch_hypervisor_status"] == 2
    assert kube.hypervisors["h1"]["status"]["qemuVersion"] == "9.9.9"


def test_a_capacity_change_is_patched_at_the_next_heartbeat(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report(vcpus=16))
    assert kube.calls["patch_hypervisor_status"] == 2
    assert kube.hypervisors["h1"]["status"]["vcpus"]["capacity"] == 16


def test_a_heartbeat_after_the_host_was_marked_down_patches_it_up_at_once(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.Service)
            .where(models.Service.host == "h1")
            .values(last_seen_up=models.utcnow() - dt.timedelta(hours=1))
        )
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down"}
    assert kube.hypervisors["h1"]["status"]["state"] == "down"
    assert "runningInstances" not in kube.hypervisors["h1"]["status"]
    patches = kube.calls["patch_hypervisor_status"]

    clock.advance(1)  # well within the heartbeat interval
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.calls["patch_hypervisor_status"] == patches + 1
    status = kube.hypervisors["h1"]["status"]
    # Up again, with its agent's word on what runs there.
    assert (status["state"], status["runningInstances"]) == ("up", 0)


def test_a_hypervisor_deleted_while_its_host_is_up_comes_back_at_the_next_heartbeat(
    kube: RecordingKube, conductor: Conductor, clock: FakeClock
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    assert conductor.hypervisors.hypervisor_deleted("h1") is False  # up: "it will register again"
    del kube.hypervisors["h1"]  # kopf lets the deletion through (the handler is optional)

    clock.advance(10)  # the agent's next heartbeat
    conductor.hypervisors.compute_node_report(node_report())
    assert "h1" in kube.hypervisors
    assert kube.hypervisors["h1"]["status"].get("state") == "up"


def test_disabling_a_host_is_recorded_patched_into_its_status_and_drops_cached_host_views(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    clock: FakeClock,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.hypervisors["h1"]["status"]["disabled"] is False
    hosts_changed: list[bool] = []
    conductor.hypervisors.on_hosts_changed = lambda: hosts_changed.append(True)

    labels = {"topology.kubernetes.io/zone": "az1"}
    conductor.hypervisors.hypervisor_changed(
        "h1", labels, {"disabled": True, "disabledReason": "maint"}
    )
    assert (node(db_session_factory, "h1").disabled, hosts_changed) == (True, [True])
    status = kube.hypervisors["h1"]["status"]
    assert (status["disabled"], status["disabledReason"]) == (True, "maint")

    # The next heartbeat carries the same, and enabling again is said at once as well.
    clock.advance(1)
    conductor.hypervisors.compute_node_report(node_report())
    assert kube.hypervisors["h1"]["status"]["disabled"] is True
    conductor.hypervisors.hypervisor_changed("h1", labels, {"disabled": False})
    status = kube.hypervisors["h1"]["status"]
    assert (status["disabled"], status.get("disabledReason")) == (False, None)
    assert hosts_changed == [True, True]


def test_a_change_to_a_host_never_recorded_patches_nothing(
    kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.hypervisor_changed("unknown", {}, {"disabled": True})
    assert kube.calls.get("patch_hypervisor_status", 0) == 0
