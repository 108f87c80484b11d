import dataclasses
import datetime

import pytest

from kubenova.conductor import instance_status as status


@dataclasses.dataclass
class Record:
    host: str | None = "h1"
    vm_state: str = "active"
    task_state: str | None = None
    power_state: str = "running"
    addresses: list | None = dataclasses.field(default_factory=lambda: ["192.168.122.10"])
    launched_at: datetime.datetime | None = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    generation: int = 3
    request_id: str | None = "req-1"
    availability_zone: str | None = None
    sync_reason: str | None = None
    sync_message: str | None = None


def test_running_record_projects_running_ready_and_scheduled():
    projected = status.project(Record())
    assert projected["phase"] == "Running"
    assert projected["addresses"] == ["192.168.122.10"]
    assert projected["observedGeneration"] == 3
    assert projected["launchedAt"] == "2026-01-01T00:00:00Z"
    conditions = {c["type"]: c for c in projected["conditions"]}
    assert conditions["Scheduled"]["status"] == "True"
    assert conditions["Ready"]["status"] == "True"


def test_unchanged_condition_keeps_its_transition_time():
    previous = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
    ]
    projected = status.project(Record(), previous_conditions=previous)
    ready = next(c for c in projected["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_changed_condition_gets_a_new_transition_time():
    previous = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
    ]
    projected = status.project(Record(), previous_conditions=previous)
    ready = next(c for c in projected["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_pending_status_says_why_in_the_scheduled_condition():
    pending = status.pending(
        "NoValidHost", "0/2 hosts: 2 insufficient memory", previous_conditions=None, generation=1
    )
    assert pending["phase"] == "Pending"
    scheduled = next(c for c in pending["conditions"] if c["type"] == "Scheduled")
    assert scheduled == scheduled | {
        "status": "False",
        "reason": "NoValidHost",
        "message": "0/2 hosts: 2 insufficient memory",
    }


def test_error_record_carries_its_fault():
    fault = {"reason": "BuildAborted", "message": "h1: checksum mismatch"}
    projected = status.project(Record(vm_state="error", power_state="nostate"), fault=fault)
    assert projected["phase"] == "Error"
    assert projected["fault"] == fault


def _synced(projected: dict) -> dict:
    return next(c for c in projected["conditions"] if c["type"] == "Synced")


@pytest.mark.parametrize(
    ("task_state", "migration_type", "message"),
    [
        # A cold migration runs under the resize's task states, its confirmation included.
        ("resize_prep", "migration", "migrate in progress (resize_prep)"),
        ("resize_migrating", "migration", "migrate in progress (resize_migrating)"),
        ("resize_finish", "migration", "migrate in progress (resize_finish)"),
        ("resize_confirming", "migration", "migrate in progress (resize_confirming)"),
        ("resize_reverting", "migration", "migrate in progress (resize_reverting)"),
        ("resize_migrating", "resize", "resize in progress (resize_migrating)"),
        ("resize_migrating", None, "resize in progress (resize_migrating)"),
        ("resize_confirming", "resize", "confirmResize in progress (resize_confirming)"),
        ("resize_reverting", "resize", "revertResize in progress (resize_reverting)"),
        # A live migration and an evacuation have task states of their own.
        ("migrating", "live-migration", "live-migration in progress (migrating)"),
        ("migrating", None, "live-migration in progress (migrating)"),
        ("rebuild_spawning", "evacuation", "evacuate in progress (rebuild_spawning)"),
        ("rebuild_spawning", None, "evacuate in progress (rebuild_spawning)"),
    ],
)
def test_the_synced_condition_names_the_move_under_way(task_state, migration_type, message):
    projected = status.project(Record(task_state=task_state), migration_type=migration_type)
    synced = _synced(projected)
    assert (synced["status"], synced["reason"], synced["message"]) == (
        "False",
        "InProgress",
        message,
    )
