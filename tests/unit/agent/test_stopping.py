"""A gracefully stopping agent tells the conductor, after its last heartbeat and before it
closes its connection; failing to tell it is logged, never raised.

The bus is a fake: ``amqp.Publisher`` and ``amqp.Consumer`` are replaced while the service is
built, so every cast and the close land in one ordered log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, conductor_rpcapi, payloads
from kubenova_agent import manager as compute_manager
from kubenova_agent import service as service_mod
from kubenova_agent.settings import AgentSettings
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver

PATIENCE_S = 5.0


class Bus:
    """What the fake publisher and consumer did, in order, and knobs to script them."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.heartbeat_started = threading.Event()
        self.release_heartbeat = threading.Event()
        self.release_heartbeat.set()
        self.fail: set[str] = set()
        self.threads_alive_at_stopping: list[bool] = []
        self.heartbeat_threads: set[threading.Thread] = set()

    def record(self, entry: str) -> None:
        with self.lock:
            self.log.append(entry)


class FakePublisher:
    bus: Bus

    def __init__(self, settings: MessagingSettings, sender: str) -> None:
        self.sender = sender

    def cast(self, topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        bus = self.bus
        if method == "compute_node_report":
            with bus.lock:
                bus.heartbeat_threads.add(threading.current_thread())
            bus.heartbeat_started.set()
            assert bus.release_heartbeat.wait(PATIENCE_S)
        if method == "service_stopping":
            with bus.lock:
                bus.threads_alive_at_stopping = [t.is_alive() for t in bus.heartbeat_threads]
        if method in bus.fail:
            raise amqp.PublishError(f"{method}: the broker is gone")
        bus.record(f"{topic}:{method}:{args.get('host')}")
        return "message-id"

    def close(self) -> None:
        self.bus.record("close")


class FakeConsumer:
    bus: Bus

    def __init__(self, settings: MessagingSettings, queue: str, handler: Any, **_: Any) -> None:
        self.queue = queue

    def run(self) -> None:
        raise AssertionError("the tests do not consume")

    def stop(self) -> None:
        self.bus.record("consumer-stop")


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Bus:
    bus = Bus()
    FakePublisher.bus = bus
    FakeConsumer.bus = bus
    monkeypatch.setattr(service_mod.amqp, "Publisher", FakePublisher)
    monkeypatch.setattr(service_mod.amqp, "Consumer", FakeConsumer)
    return bus


def _service(**settings: Any) -> service_mod.AgentService:
    values: dict[str, Any] = {
        "host": "h1",
        "messaging": MessagingSettings(),
        "heartbeat_interval_s": 0.01,
        "sync_interval_s": 0.01,
    }
    values.update(settings)
    return service_mod.AgentService(AgentSettings(**values), ScriptedDriver())


def _stop_in_thread(service: service_mod.AgentService) -> threading.Thread:
    stopper = threading.Thread(target=service.stop, name="test-stopper", daemon=True)
    stopper.start()
    return stopper


def test_report_stopping_casts_service_stopping_for_its_host() -> None:
    caster = RecordingCaster()
    compute = compute_manager.ComputeManager(
        "h1", ScriptedDriver(), conductor_rpcapi.ConductorAPI(caster)
    )
    compute.report_stopping()

    ((topic, method, args, request_id),) = caster.casts
    assert (topic, method) == (conductor_rpcapi.CONDUCTOR_TOPIC, "service_stopping")
    assert payloads.ServiceStopping.model_validate(args) == payloads.ServiceStopping(host="h1")
    assert request_id


def test_stop_tells_the_conductor_after_the_last_heartbeat_and_before_closing(bus: Bus) -> None:
    service = _service()
    service.start()
    try:
        # A heartbeat is being sent when the agent is told to stop.
        bus.release_heartbeat.clear()
        bus.heartbeat_started.clear()
        assert bus.heartbeat_started.wait(PATIENCE_S)
        stopper = _stop_in_thread(service)
        # stop() must wait for that heartbeat before it reports stopping.
        stopper.join(0.2)
        assert stopper.is_alive()
        assert "conductor:service_stopping:h1" not in bus.log
    finally:
        bus.release_heartbeat.set()
    stopper.join(PATIENCE_S)
    assert not stopper.is_alive()

    methods = [entry for entry in bus.log if entry != "consumer-stop"]
    assert methods[-2:] == ["conductor:service_stopping:h1", "close"]
    assert methods.count("conductor:service_stopping:h1") == 1
    assert methods[-3] == "conductor:compute_node_report:h1"
    # The periodic thread had ended when the stopping report went out.
    assert bus.threads_alive_at_stopping == [False]
    assert "consumer-stop" in bus.log


def test_a_failed_stopping_report_is_logged_and_the_publisher_still_closed(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    bus.fail.add("service_stopping")
    service = _service()
    service.start()
    bus.heartbeat_started.clear()
    assert bus.heartbeat_started.wait(PATIENCE_S)

    with caplog.at_level(logging.WARNING, logger="kubenova_agent.service"):
        service.stop()  # does not raise

    assert bus.log[-1] == "close"
    assert "conductor:service_stopping:h1" not in bus.log
    (warning,) = [r for r in caplog.records if r.name == "kubenova_agent.service"]
    assert warning.levelno == logging.WARNING
    assert "stopping" in warning.getMessage()
    assert warning.exc_info is not None
    assert warning.exc_info[0] is amqp.PublishError
