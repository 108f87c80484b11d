"""The agent's side of a live migration: each step is the driver call it names and ends in one
report; the move's report carries libvirt's figures; progress is sent, but not too often; an
abort stops the move under way, and one that came before the move started stops it at once."""

from __future__ import annotations

import threading
import time

from kubenova.rpc import conductor_rpcapi, envelope
from kubenova_agent import exceptions, manager
from kubenova_agent.virt import migration
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver
from tests.unit.agent.test_compute_manager import UUID, _instance

MIGRATION = "7a1c1d9e-0000-4000-8000-000000000002"
REF = {"uuid": MIGRATION, "source_host": "h1", "dest_host": "h2", "dest_uri": "qemu+tcp://h2/"}


class MovingDriver(ScriptedDriver):
    """A driver whose live migration reports progress until it is aborted or let go."""

    def __init__(self) -> None:
        super().__init__()
        self.let_go = threading.Event()
        self.started = threading.Event()
        self.calls: list[str] = []

    def pre_live_migration(self, instance):
        self.calls.append(f"pre {instance.uuid}")

    def post_live_migration_at_destination(self, instance):
        self.calls.append(f"keep {instance.uuid}")

    def live_migration(self, instance_uuid, target, *, on_progress, progress_timeout_s, abort):
        self.calls.append(f"move {instance_uuid} to {target.host} at {target.uri}")
        self.started.set()
        for step in range(5):
            on_progress(migration.MigrationProgress(0.1 * step, 100, 20 * step, 100 - 20 * step))
        while not self.let_go.is_set():
            if abort.wait(0.01):
                raise exceptions.MigrationAborted(instance_uuid, "aborted", timed_out=False)
        return migration.MigrationResult(total_s=1.25, downtime_ms=37)


def _parts():
    caster, driver = RecordingCaster(), MovingDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    return compute, driver, caster


def _message(method: str, args: dict) -> envelope.Envelope:
    return envelope.Envelope(request_id="req-1", method=method, args=args, sender="operator")


def _move_args() -> dict:
    return {"instance_uuid": UUID, "migration": REF, "progress_timeout_s": 30}


def _reports(caster: RecordingCaster, method: str) -> list[dict]:
    return [c.args for c in caster.casts if c.method == method]


def test_a_move_reports_its_figures_and_sends_its_progress_not_too_often():
    compute, driver, caster = _parts()
    driver.let_go.set()

    compute.handle(_message("live_migration", _move_args()), None)

    assert driver.calls == [f"move {UUID} to h2 at qemu+tcp://h2/"]
    (report,) = _reports(caster, "migration_step_finished")
    assert (report["step"], report["result"], report["total_s"], report["downtime_ms"]) == (
        "live_migration",
        "Success",
        1.25,
        37,
    )
    # Five figures within a moment: one report (one every PROGRESS_INTERVAL_S).
    (progress,) = _reports(caster, "migration_progress")
    assert (progress["host"], progress["migration_uuid"], progress["data_remaining"]) == (
        "h1",
        MIGRATION,
        100,
    )


def test_an_abort_stops_the_move_under_way():
    compute, driver, caster = _parts()
    moving = threading.Thread(
        target=compute.handle, args=(_message("live_migration", _move_args()), None)
    )
    moving.start()
    assert driver.started.wait(5)

    compute.handle(
        _message("live_migration_abort", {"instance_uuid": UUID, "migration_uuid": MIGRATION}),
        None,
    )
    moving.join(5)

    assert not moving.is_alive()
    (report,) = _reports(caster, "migration_step_finished")
    assert report["result"] == "Error"
    assert report["message"].endswith("failed: aborted")


def test_an_abort_that_came_first_stops_the_move_as_it_starts():
    compute, driver, caster = _parts()
    assert not driver.let_go.is_set()  # left alone, the move would never end
    compute.handle(
        _message("live_migration_abort", {"instance_uuid": UUID, "migration_uuid": MIGRATION}),
        None,
    )
    started = time.monotonic()

    compute.handle(_message("live_migration", _move_args()), None)

    assert time.monotonic() - started < 5
    (report,) = _reports(caster, "migration_step_finished")
    assert report["result"] == "Error"


def test_the_abort_is_handled_out_of_turn_and_the_steps_are_the_driver_calls_they_name():
    compute, driver, caster = _parts()
    assert "live_migration_abort" in manager.OUT_OF_TURN

    compute.handle(
        _message("pre_live_migration", {"instance": _instance().model_dump(), "migration": REF}),
        None,
    )

    assert driver.calls == [f"pre {UUID}"]
    (report,) = _reports(caster, "migration_step_finished")
    assert (report["step"], report["host"], report["result"]) == (
        "pre_live_migration",
        "h1",
        "Success",
    )


def test_a_destination_without_a_migration_uri_fails_the_move_before_the_driver_is_called():
    compute, driver, caster = _parts()
    args = _move_args()
    args["migration"] = {**REF, "dest_uri": None}

    compute.handle(_message("live_migration", args), None)

    assert driver.calls == []
    (report,) = _reports(caster, "migration_step_finished")
    assert report["result"] == "Error"
    assert "no migration URI" in report["message"]


def test_the_destination_keeps_quiet_about_an_arriving_guest_until_the_move_ends_here():
    compute, driver, caster = _parts()
    prepare = {"instance": _instance().model_dump(), "migration": REF}
    compute.handle(_message("pre_live_migration", prepare), None)
    # libvirt starts the incoming guest here: its lifecycle event is not reported half-way.
    driver.domains[UUID] = PowerState.RUNNING
    compute._on_lifecycle_event(UUID)
    assert _reports(caster, "instance_update") == []

    compute.handle(_message("post_live_migration_at_destination", prepare), None)
    driver.domains[UUID] = PowerState.PAUSED
    compute._on_lifecycle_event(UUID)

    (update,) = _reports(caster, "instance_update")
    assert update["power_state"] == "paused"
