"""InstanceProjector.project with what the projection needs given (the record, whether its
host is up, the object's current status): the status is remembered when submitted and
forgotten when its patch fails or finds no object, so the next projection reads the object
instead of trusting the memory; a Building projection may be deferred and replaced.

No database: every projection here is given its record and ``host_up``, and the session
factory fails if it is ever called. The deferral is a minute, so a deferred projection is
only written when a test replaces it or stops the projector (which writes what is held).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubenova.compute import states
from kubenova.conductor import instance_status
from kubenova.conductor.projector import InstanceProjector

UUID = "u1"
NAMESPACE = "ns"
NAME = "vm-1"


@dataclasses.dataclass
class Record:
    """The fields of an instance record a projection reads."""

    vm_state: str
    task_state: str | None
    power_state: str
    host: str | None = "h1"
    uuid: str = UUID
    namespace: str = NAMESPACE
    name: str = NAME
    addresses: list[Any] | None = None
    launched_at: dt.datetime | None = None
    generation: int = 1
    request_id: str | None = "req-1"
    availability_zone: str | None = "az1"
    sync_reason: str | None = None
    sync_message: str | None = None


BUILDING = Record(states.BUILDING, states.SPAWNING, states.NOSTATE)
RUNNING = Record(
    states.ACTIVE,
    None,
    states.RUNNING,
    addresses=["192.168.122.10"],
    launched_at=dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC),
)


def _no_session() -> Any:
    raise AssertionError("the projection opened a database session")


class FakeKube:
    """``patch_instance_status`` records each call, with what the projector remembered for
    the instance at that moment, and answers ``result`` (or raises ``error``);
    ``get_instance`` answers ``instance`` and counts the reads."""

    def __init__(self) -> None:
        self.projector: InstanceProjector | None = None
        self.patches: list[tuple[str, str, dict[str, Any], threading.Thread]] = []
        self.remembered_during_patch: list[dict[str, Any] | None] = []
        self.result = True
        self.error: Exception | None = None
        self.instance: dict[str, Any] | None = None
        self.reads = 0

    def patch_instance_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        assert self.projector is not None
        self.remembered_during_patch.append(self.projector._last_written.get(UUID))
        self.patches.append((namespace, name, copy.deepcopy(status), threading.current_thread()))
        if self.error is not None:
            raise self.error
        return self.result

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return copy.deepcopy(self.instance)

    def phases(self) -> list[str]:
        return [patch[2]["phase"] for patch in self.patches]


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def projector(kube: FakeKube) -> Iterator[InstanceProjector]:
    projector = InstanceProjector(
        _no_session,  # type: ignore[arg-type]
        kube,  # type: ignore[arg-type]
        service_down_time_s=60,
        building_status_delay_s=60.0,
    )
    kube.projector = projector
    yield projector
    projector.stop()


def _project(
    projector: InstanceProjector,
    record: Record,
    *,
    current_status: dict[str, Any] | None = None,
    host_up: bool = True,
    defer: bool = False,
) -> None:
    """Project ``record``, the object's status being ``current_status`` (empty by default:
    nothing written yet) unless the projector remembers one."""
    projector.project(
        record.uuid,
        record=record,  # type: ignore[arg-type]
        host_up=host_up,
        current_status={} if current_status is None else current_status,
        defer=defer,
    )


def _remembered(projector: InstanceProjector) -> dict[str, Any] | None:
    return projector._last_written.get(UUID)


def test_a_written_projection_is_remembered(projector: InstanceProjector, kube: FakeKube) -> None:
    _project(projector, RUNNING)

    assert [(ns, name, thread) for ns, name, _, thread in kube.patches] == [
        (NAMESPACE, NAME, threading.current_thread())
    ]
    written = kube.patches[0][2]
    assert (written["phase"], written["host"], written["addresses"]) == (
        "Running",
        "h1",
        ["192.168.122.10"],
    )
    # Remembered before the patch was sent, and still after.
    assert kube.remembered_during_patch == [written]
    assert _remembered(projector) == written


def test_a_projection_the_object_already_shows_writes_nothing_and_is_remembered(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    shown = instance_status.project(RUNNING, host_up=True)

    _project(projector, RUNNING, current_status=shown)
    _project(projector, RUNNING, current_status=shown, defer=True)

    assert kube.patches == []
    assert projector.held() == 0
    assert _remembered(projector) == shown


def test_projecting_the_same_record_again_writes_nothing(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    _project(projector, RUNNING)
    # The status last written stands in for the object's, whatever the caller passes.
    _project(projector, RUNNING, current_status={})

    assert kube.phases() == ["Running"]
    assert kube.reads == 0


def test_a_host_the_caller_says_is_down_projects_unknown(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    _project(projector, RUNNING, host_up=False)

    assert kube.phases() == ["Unknown"]
    assert _remembered(projector) == kube.patches[0][2]


def test_a_deferred_projection_is_remembered_while_it_waits(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    _project(projector, BUILDING, defer=True)
    assert kube.patches == []
    assert projector.held() == 1
    remembered = _remembered(projector)
    assert remembered is not None
    assert remembered["phase"] == "Building"

    projector.stop()
    assert kube.phases() == ["Building"]
    assert kube.patches[0][2] == remembered
    assert _remembered(projector) == remembered


def test_running_replaces_a_held_building_in_one_patch(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    _project(projector, BUILDING, defer=True)
    _project(projector, RUNNING)
    projector.stop()

    assert kube.phases() == ["Running"]
    assert projector.held() == 0
    assert _remembered(projector) == kube.patches[0][2]


def test_a_patch_of_an_object_that_is_gone_is_forgotten(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    kube.result = False
    _project(projector, RUNNING)
    assert len(kube.patches) == 1
    assert _remembered(projector) is None


def test_a_patch_that_raises_is_marked_stale_and_written_again_by_the_queue(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    kube.error = RuntimeError("apiserver unavailable")
    _project(projector, RUNNING)  # the caller is not failed for it
    assert _remembered(projector) == {}  # nothing known: the next projection writes in full

    # The apiserver is back: the queue's thread writes it on its next try (after a second).
    kube.error = None
    deadline = time.monotonic() + 5
    while len(kube.patches) < 2:
        assert time.monotonic() < deadline, "the failed write was not tried again"
        time.sleep(0.05)
    assert kube.phases() == ["Running", "Running"]
    assert kube.patches[-1][3] is not threading.current_thread()


def test_a_deferred_patch_that_raises_is_marked_stale_and_logged(
    projector: InstanceProjector, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kubenova.conductor.patch_queue")
    kube.error = RuntimeError("apiserver unavailable")
    _project(projector, BUILDING, defer=True)  # does not raise
    assert _remembered(projector) is not None

    projector.stop()
    assert len(kube.patches) == 1
    assert kube.patches[0][3] is not threading.current_thread()
    assert _remembered(projector) == {}
    assert any(f"instance {UUID} failed" in r.getMessage() for r in caplog.records)


def test_after_a_failed_patch_the_next_projection_writes_without_a_read(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    kube.error = RuntimeError("apiserver unavailable")
    _project(projector, RUNNING)
    projector.stop()  # the held retry is given up
    kube.error = None
    reads = kube.reads

    _project(projector, RUNNING)  # the same status, which the object may lack

    assert kube.phases()[-1] == "Running"
    assert kube.reads == reads


def test_a_deferred_patch_of_an_object_that_is_gone_is_forgotten(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    kube.result = False
    _project(projector, BUILDING, defer=True)
    projector.stop()
    assert len(kube.patches) == 1
    assert _remembered(projector) is None


def test_a_forgotten_instance_is_read_again_before_it_is_projected(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    _project(projector, RUNNING)
    projector.forget(UUID)
    kube.instance = {"status": copy.deepcopy(kube.patches[0][2])}

    projector.project(UUID, record=RUNNING, host_up=True)  # type: ignore[arg-type]

    # Read, found to say so already, and not written again.
    assert kube.reads == 1
    assert kube.phases() == ["Running"]
    assert _remembered(projector) == kube.patches[0][2]


def test_an_object_that_is_gone_is_neither_written_nor_remembered(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    projector.project(UUID, record=RUNNING, host_up=True)  # type: ignore[arg-type]

    assert kube.reads == 1
    assert kube.patches == []
    assert _remembered(projector) is None


def test_a_move_whose_type_the_caller_gives_is_named_without_the_database(
    projector: InstanceProjector, kube: FakeKube
) -> None:
    migrating = dataclasses.replace(RUNNING, task_state=states.RESIZE_MIGRATING)

    projector.project(
        UUID,
        record=migrating,  # type: ignore[arg-type]
        host_up=True,
        current_status={},
        migration_type="migration",
    )

    [synced] = [c for c in kube.patches[0][2]["conditions"] if c["type"] == "Synced"]
    assert synced["message"] == "migrate in progress (resize_migrating)"


def test_forgetting_an_instance_says_it_is_gone(projector: InstanceProjector) -> None:
    told: list[str] = []
    projector.on_gone = told.append
    projector.forget(UUID)
    assert told == [UUID]
