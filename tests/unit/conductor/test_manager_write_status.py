"""ConductorManager.write_status: a projection is remembered when submitted and forgotten
when its patch fails, so the next projection reads the object instead of trusting it.

No database: the constructor only stores the session factory and the bus client, and
write_status touches neither. The deferral is a minute, so a deferred projection is only
written when a test replaces it or stops the writer (which writes what is held).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubenova.conductor.manager import ConductorManager, Projection
from kubenova.config import OperatorSettings

BUILDING = {"phase": "Building", "host": "h1"}
RUNNING = {"phase": "Running", "host": "h1"}


class Untouchable:
    """Stands in for the database and the bus: any use fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"write_status touched {name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("write_status opened a session")


class FakeKube:
    """``patch_instance_status`` only: records each call, with what the conductor remembered
    for the instance at that moment, and answers ``result`` (or raises ``error``)."""

    def __init__(self) -> None:
        self.conductor: ConductorManager | None = None
        self.patches: list[tuple[str, str, dict[str, Any], threading.Thread]] = []
        self.remembered_during_patch: list[dict[str, Any] | None] = []
        self.result = True
        self.error: Exception | None = None

    def patch_instance_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        assert self.conductor is not None
        self.remembered_during_patch.append(self.conductor.written.get("u1"))
        self.patches.append((namespace, name, copy.deepcopy(status), threading.current_thread()))
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def conductor(kube: FakeKube) -> Iterator[ConductorManager]:
    settings = OperatorSettings(building_status_delay_s=60.0)
    conductor = ConductorManager(settings, Untouchable(), kube, Untouchable())  # type: ignore[arg-type]
    kube.conductor = conductor
    yield conductor
    conductor.status_writer.stop(timeout_s=2.0)


def _projection(status: dict[str, Any]) -> Projection:
    return Projection("u1", "ns", "vm-1", dict(status))


def test_nothing_to_write_writes_nothing(conductor: ConductorManager, kube: FakeKube) -> None:
    conductor.write_status(None)
    conductor.write_status(None, defer=True)
    assert kube.patches == []
    assert "u1" not in conductor.written


def test_a_written_projection_is_remembered(conductor: ConductorManager, kube: FakeKube) -> None:
    conductor.write_status(_projection(RUNNING))
    assert kube.patches == [("ns", "vm-1", RUNNING, threading.current_thread())]
    # Remembered before the patch was sent, and still after.
    assert kube.remembered_during_patch == [RUNNING]
    assert conductor.written.get("u1") == RUNNING


def test_a_deferred_projection_is_remembered_while_it_waits(
    conductor: ConductorManager, kube: FakeKube
) -> None:
    conductor.write_status(_projection(BUILDING), defer=True)
    assert kube.patches == []
    assert conductor.status_writer.held() == 1
    assert conductor.written.get("u1") == BUILDING

    conductor.status_writer.stop(timeout_s=2.0)
    assert [patch[2] for patch in kube.patches] == [BUILDING]
    assert conductor.written.get("u1") == BUILDING


def test_running_replaces_a_held_building_in_one_patch(
    conductor: ConductorManager, kube: FakeKube
) -> None:
    conductor.write_status(_projection(BUILDING), defer=True)
    conductor.write_status(_projection(RUNNING))
    conductor.status_writer.stop(timeout_s=2.0)
    assert [patch[2] for patch in kube.patches] == [RUNNING]
    assert conductor.written.get("u1") == RUNNING


def test_a_patch_of_an_object_that_is_gone_is_forgotten(
    conductor: ConductorManager, kube: FakeKube
) -> None:
    kube.result = False
    conductor.write_status(_projection(RUNNING))
    assert len(kube.patches) == 1
    assert conductor.written.get("u1") is None


def test_a_patch_that_raises_is_forgotten_and_the_error_reaches_the_caller(
    conductor: ConductorManager, kube: FakeKube
) -> None:
    kube.error = RuntimeError("apiserver unavailable")
    with pytest.raises(RuntimeError, match="apiserver unavailable"):
        conductor.write_status(_projection(RUNNING))
    assert conductor.written.get("u1") is None

    # The instance is not left in flight: the retry is written at once.
    kube.error = None
    conductor.write_status(_projection(RUNNING))
    assert len(kube.patches) == 2
    assert kube.patches[-1][3] is threading.current_thread()
    assert conductor.written.get("u1") == RUNNING


def test_a_deferred_patch_that_raises_is_forgotten_and_logged(
    conductor: ConductorManager, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kubenova.conductor.status_writer")
    kube.error = RuntimeError("apiserver unavailable")
    conductor.write_status(_projection(BUILDING), defer=True)  # does not raise
    assert conductor.written.get("u1") == BUILDING

    conductor.status_writer.stop(timeout_s=2.0)
    assert len(kube.patches) == 1
    assert kube.patches[0][3] is not threading.current_thread()
    assert conductor.written.get("u1") is None
    assert any("instance u1 failed" in r.getMessage() for r in caplog.records)


def test_a_deferred_patch_of_an_object_that_is_gone_is_forgotten(
    conductor: ConductorManager, kube: FakeKube
) -> None:
    kube.result = False
    conductor.write_status(_projection(BUILDING), defer=True)
    conductor.status_writer.stop(timeout_s=2.0)
    assert len(kube.patches) == 1
    assert conductor.written.get("u1") is None
