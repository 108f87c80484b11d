"""Live migration through an InstanceMigration of type Live, on a real database with simulated
hosts: the steps on both hosts in order, the claims at every step, progress and libvirt's
figures in the object's status, a failed move rolled back, an abort on deletion (before and
during the move), a rollback that finds the guest moved after all, and the stale sweep."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor.service import Conductor
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.rpc import migration_payloads as mp
from tests.integration.conductor import builds
from tests.integration.conductor import test_instance_migrations as cold
from tests.integration.conductor.fakes import (
    FakeMigrationObjects,
    built_report,
    migration_of,
    vcpus_used,
)
from tests.integration.conductor.test_instance_migrations import T0, _record, _report, _request
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

# The cold migrations' fixtures: a conductor over recorded objects, an instance on h1 of three.
objects = cold.objects
conductor = cold.conductor
uuid = cold.uuid


def _live(uuid: str, name: str = "move", **over: Any) -> Any:
    return _request(uuid, name, type="Live", **over)


def _step(conductor: Conductor, caster: RecordingCaster, uuid: str, host: str, **over: Any) -> None:
    conductor.manager.live.step_finished(*_report(caster, uuid, host, **over))  # type: ignore[union-attr]


def _post(
    conductor: Conductor, caster: RecordingCaster, uuid: str, method: str, **over: Any
) -> None:
    """The report of the last ``method`` cast: the two post steps are cast together."""
    (index,) = [i for i, cast in enumerate(caster.casts) if cast.method == method][-1:]
    cast = caster.casts[index]
    values: dict[str, Any] = {
        "instance_uuid": uuid, "host": cast.topic.removeprefix("compute."),
        "migration_uuid": cast.args["migration"]["uuid"], "step": method, "result": "Success",
        "started_at": T0, "finished_at": T0, "vm_state": "active", "power_state": "running",
    }  # fmt: skip
    values.update(over)
    conductor.manager.live.step_finished(mp.MigrationStepFinished(**values), cast.request_id)  # type: ignore[union-attr]


def _moved_to_h3(conductor: Conductor, caster: RecordingCaster, uuid: str) -> None:
    """A live move of the instance from h1 to h3, up to the guest's switch-over."""
    conductor.migrations.create(_live(uuid, target_host="h3"))
    _step(conductor, caster, uuid, "h3", power_state="nostate")
    _step(conductor, caster, uuid, "h1", power_state="nostate", total_s=1.0, downtime_ms=30)


def test_a_live_migration_runs_its_steps_on_both_hosts_and_keeps_the_claims_right(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h3"))

    assert (caster.casts[-1].topic, caster.casts[-1].method) == (
        "compute.h3",
        "pre_live_migration",
    )
    record = _record(db_session_factory, uuid)
    assert (record.host, record.task_state) == ("h1", "migrating")
    assert objects.statuses["move"]["phase"] == "Scheduled"
    # Both hosts are held while the guest moves.
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 1}

    _step(conductor, caster, uuid, "h3", power_state="nostate")
    cast = caster.casts[-1]
    assert (cast.topic, cast.method) == ("compute.h1", "live_migration")
    assert cast.args["migration"]["dest_uri"] == "qemu+tcp://h3/system"
    assert cast.args["progress_timeout_s"] == 150
    assert objects.statuses["move"]["phase"] == "Running"

    conductor.manager.live.progress(  # type: ignore[union-attr]
        mp.MigrationProgress(
            instance_uuid=uuid, host="h1", migration_uuid=cast.args["migration"]["uuid"],
            elapsed_s=1.26, data_total=400, data_processed=100, data_remaining=300,
        )
    )  # fmt: skip
    assert objects.statuses["move"]["progress"] == {
        "elapsedSeconds": 1.3,
        "dataTotalBytes": 400,
        "dataProcessedBytes": 100,
        "dataRemainingBytes": 300,
        "percent": 25,
    }

    _step(conductor, caster, uuid, "h1", power_state="nostate", total_s=1.5, downtime_ms=42)
    # Both post steps at once: neither host waits for the other.
    assert caster.sent()[-2:] == [
        ("compute.h3", "post_live_migration_at_destination"),
        ("compute.h1", "post_live_migration_at_source"),
    ]
    # The guest runs on the destination from the switch-over: the record is its.
    assert _record(db_session_factory, uuid).host == "h3"
    figures = objects.statuses["move"]
    assert (figures["totalSeconds"], figures["downtimeMilliseconds"]) == (1.5, 42)

    _post(conductor, caster, uuid, "post_live_migration_at_destination", addresses=("10.0.0.9",))
    assert migration_of(db_session_factory, uuid).status == moves.CONFIRMING
    # The source's claim is held until its own step is in.
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 1}
    _post(conductor, caster, uuid, "post_live_migration_at_source", power_state="nostate")

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state, record.power_state) == (
        "h3",
        "active",
        None,
        "running",
    )
    assert record.addresses == ["10.0.0.9"]
    assert vcpus_used(db_session_factory) == {"h1": 0, "h2": 0, "h3": 1}
    assert migration_of(db_session_factory, uuid).status == moves.CONFIRMED
    assert objects.statuses["move"]["phase"] == "Succeeded"
    # A step that changes nothing a user sees writes no status: the phase stays Running
    # through the switch-over and the two post steps (progress and figures are their own).
    phases = [fields["phase"] for name, fields in objects.writes if "phase" in fields]
    assert phases == ["Scheduling", "Scheduled", "Running", "Succeeded"]

    conductor.history.flush()
    (action,) = [a for a in kube.instance_actions.values() if a["action"] == "live-migration"]
    assert action["result"] == "Success"
    events = {e["event"]: e for e in action["events"]}
    assert list(events) == [
        "compute_pre_live_migration",
        "compute_live_migration",
        "compute_post_live_migration_at_destination",
        "compute_post_live_migration_at_source",
    ]
    assert "downtime 42 ms" in (events["compute_live_migration"].get("details") or "")


def test_each_step_commits_once_before_the_next_step_is_cast(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
    statements: list[str],
) -> None:
    # What a user waits for between two steps: the report's event, the check that it is the
    # step awaited and the step's own changes are one transaction, and the cast follows it.
    engine = db_session_factory.kw["bind"]
    commits: list[int] = []

    def count_commit(_conn: Any) -> None:
        commits.append(1)

    sa.event.listen(engine, "commit", count_commit)
    at_cast: list[tuple[int, int]] = []
    cast = caster.cast

    def counting_cast(topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        at_cast.append((len(statements), len(commits)))
        return cast(topic, method, args, request_id)

    caster.cast = counting_cast  # type: ignore[method-assign]
    try:
        conductor.migrations.create(_live(uuid, target_host="h3"))
        for host, over in (
            ("h3", {"power_state": "nostate"}),
            ("h1", {"power_state": "nostate", "total_s": 1.0, "downtime_ms": 30}),
        ):
            before = (len(statements), len(commits))
            _step(conductor, caster, uuid, host, **over)
            sent, committed = at_cast[-1]
            # Lock the instance and the migration, find the action, record the event, read
            # the destination's URI; the step's own UPDATEs; nothing else.
            assert committed - before[1] == 1, caster.methods()[-1]
            assert sent - before[0] <= 7, (caster.methods()[-1], statements[before[0] : sent])
    finally:
        sa.event.remove(engine, "commit", count_commit)
    assert caster.methods()[-1] == "post_live_migration_at_source"


def test_the_post_steps_end_the_move_in_either_order_and_a_duplicate_changes_nothing(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    _moved_to_h3(conductor, caster, uuid)

    _post(conductor, caster, uuid, "post_live_migration_at_source", power_state="nostate")
    assert migration_of(db_session_factory, uuid).status == moves.SOURCE_CLEANED
    # The source's step again (a redelivery): still waiting for the destination's.
    _post(conductor, caster, uuid, "post_live_migration_at_source", power_state="nostate")
    assert migration_of(db_session_factory, uuid).status == moves.SOURCE_CLEANED
    assert _record(db_session_factory, uuid).task_state == "migrating"
    # The stale sweep casts only the step still awaited.
    casts = len(caster.casts)
    conductor.manager.live.recast(_record(db_session_factory, uuid), caster.casts[-1].request_id)  # type: ignore[union-attr]
    assert caster.sent()[casts:] == [("compute.h3", "post_live_migration_at_destination")]

    _post(
        conductor, caster, uuid, "post_live_migration_at_destination",
        result="Error", message="domain not found",
    )  # fmt: skip
    record = _record(db_session_factory, uuid)
    assert (record.host, record.task_state) == ("h3", None)
    migration = migration_of(db_session_factory, uuid)
    assert migration.status == moves.CONFIRMED
    # The move succeeded; what failed after it is told.
    assert objects.statuses["move"]["phase"] == "Succeeded"
    assert "domain not found" in (migration.message or "")
    assert vcpus_used(db_session_factory) == {"h1": 0, "h2": 0, "h3": 1}


def test_a_stalled_move_whose_post_steps_are_both_awaited_casts_both_again(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _moved_to_h3(conductor, caster, uuid)
    casts = len(caster.casts)
    conductor.manager.live.recast(_record(db_session_factory, uuid), caster.casts[-1].request_id)  # type: ignore[union-attr]
    assert sorted(caster.sent()[casts:]) == [
        ("compute.h1", "post_live_migration_at_source"),
        ("compute.h3", "post_live_migration_at_destination"),
    ]


def test_a_status_write_that_failed_is_made_again_at_the_next_step(
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h3"))
    objects.failing_writes = 1  # the Running of pre_live_migration's end is lost
    _step(conductor, caster, uuid, "h3", power_state="nostate")
    assert objects.statuses["move"]["phase"] == "Scheduled"

    # The switch-over changes nothing a user sees, yet the lost Running is written now.
    _step(conductor, caster, uuid, "h1", power_state="nostate", total_s=1.5, downtime_ms=42)
    assert objects.statuses["move"]["phase"] == "Running"


def test_a_failed_move_is_rolled_back_and_the_guest_stays_on_its_source(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h2"))
    _step(conductor, caster, uuid, "h2", power_state="nostate")
    _step(conductor, caster, uuid, "h1", result="Error", message="no progress for 150 s")

    assert (caster.casts[-1].topic, caster.casts[-1].method) == (
        "compute.h2",
        "rollback_live_migration_at_destination",
    )
    _step(conductor, caster, uuid, "h2", power_state="nostate")

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h1", "active", None)
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 0}
    assert migration_of(db_session_factory, uuid).status == "failed"
    status = objects.statuses["move"]
    assert status["phase"] == "Failed"
    assert "no progress for 150 s" in status["message"]


def test_deleting_the_object_aborts_the_move_under_way_out_of_turn(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    request = _live(uuid, target_host="h2")
    conductor.migrations.create(request)
    _step(conductor, caster, uuid, "h2", power_state="nostate")
    migration_uuid = caster.casts[-1].args["migration"]["uuid"]
    aborted = _report(caster, uuid, "h1", result="Error", message="aborted")

    assert conductor.migrations.cancel(request.uid) is True
    abort = caster.casts[-1]
    assert (abort.topic, abort.method, abort.args) == (
        "compute.h1",
        "live_migration_abort",
        {"instance_uuid": uuid, "migration_uuid": migration_uuid},
    )
    conductor.manager.live.step_finished(*aborted)  # type: ignore[union-attr]
    _step(conductor, caster, uuid, "h2", power_state="nostate")

    assert _record(db_session_factory, uuid).host == "h1"
    assert migration_of(db_session_factory, uuid).status == "cancelled"
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 0}
    assert objects.statuses["move"]["phase"] == "Failed"


def test_an_object_deleted_before_the_move_started_rolls_back_the_destination(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    request = _live(uuid, target_host="h2")
    conductor.migrations.create(request)
    assert conductor.migrations.cancel(request.uid) is True
    # Nothing runs on the source yet: no abort is sent; the preparation's report ends it.
    assert caster.casts[-1].method == "pre_live_migration"

    _step(conductor, caster, uuid, "h2", power_state="nostate")
    assert caster.casts[-1].method == "rollback_live_migration_at_destination"
    _step(conductor, caster, uuid, "h2", power_state="nostate")

    assert _record(db_session_factory, uuid).task_state is None
    assert migration_of(db_session_factory, uuid).status == "cancelled"
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 0}


def test_a_rollback_that_finds_the_guest_on_the_destination_completes_the_move(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h2"))
    _step(conductor, caster, uuid, "h2", power_state="nostate")
    # The source's agent restarted during the move: cast again, it finds no guest there.
    _step(conductor, caster, uuid, "h1", result="Error", message="not found", power_state="nostate")
    _step(conductor, caster, uuid, "h2", result="Error", message="it runs here")

    assert caster.sent()[-2:] == [
        ("compute.h2", "post_live_migration_at_destination"),
        ("compute.h1", "post_live_migration_at_source"),
    ]
    _post(conductor, caster, uuid, "post_live_migration_at_source", power_state="nostate")
    _post(conductor, caster, uuid, "post_live_migration_at_destination")
    record = _record(db_session_factory, uuid)
    assert (record.host, record.task_state) == ("h2", None)
    assert vcpus_used(db_session_factory) == {"h1": 0, "h2": 1, "h3": 0}


def test_a_stray_report_changes_nothing_and_a_stalled_step_is_cast_again(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h2"))
    casts = len(caster.casts)
    # A live_migration report from the source before that step was even cast.
    report, request_id = _report(caster, uuid, "h2")
    conductor.manager.live.step_finished(  # type: ignore[union-attr]
        report.model_copy(update={"step": "live_migration", "host": "h1"}), request_id
    )
    assert len(caster.casts) == casts
    assert migration_of(db_session_factory, uuid).status == moves.PRE_MIGRATING

    conductor.stale.recast_all()
    assert (caster.casts[-1].topic, caster.casts[-1].method) == (
        "compute.h2",
        "pre_live_migration",
    )
    # Once per step: later sweeps, long past the timeout, cast nothing more for it.
    casts = len(caster.casts)
    later = models.utcnow() + dt.timedelta(hours=1)
    conductor.stale.finish_stale(later)
    conductor.stale.finish_stale(later)
    assert len(caster.casts) == casts


def test_a_paused_or_moving_instance_is_refused_with_its_state(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    conductor.migrations.create(_live(uuid, target_host="h2"))
    conductor.migrations.create(_live(uuid, name="second", target_host="h3"))

    status = objects.statuses["second"]
    assert status["phase"] == "Failed"
    assert "migrating" in status["message"]
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 1, "h3": 0}


def test_a_live_migration_keeps_the_server_groups_anti_affinity(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    objects: FakeMigrationObjects,
    conductor: Conductor,
    uuid: str,
) -> None:
    del uuid  # h1, h2 and h3 registered, with an instance outside the group on h1
    builds.add_server_group(kube, "web", "anti-affinity")
    members = {}
    for host in ("h1", "h2"):
        uid = builds.build(conductor, kube, serverGroup="web", forcedHost=host)
        conductor.instances.instance_update(built_report(uid, host))
        kube.instances[(NAMESPACE, builds.object_name(uid))]["metadata"]["uid"] = uid
        members[host] = uid

    conductor.migrations.create(_live(members["h1"]))
    # h2 holds the other member: h3 is the only host the group allows.
    assert caster.casts[-1].topic == "compute.h3"

    conductor.migrations.create(_live(members["h2"], name="second", target_host="h1"))
    assert objects.statuses["second"]["phase"] == "Failed"
    assert "cannot live-migrate" in objects.statuses["second"]["message"]
    assert builds.allocated_hosts(db_session_factory, members["h2"]) == ["h2"]
