"""How the agent's process wires its parts: consumer lanes, so that one instance's long
operation does not hold up the others, and the lifecycle-event worker's start and stop."""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.config import MessagingSettings
from kubenova_agent import service as service_mod
from kubenova_agent.settings import AgentSettings
from tests.unit.agent.scripted_driver import ScriptedDriver


class _Publisher:
    def __init__(self, settings: MessagingSettings, sender: str) -> None:
        pass

    def cast(self, topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        return "message-id"

    def close(self) -> None:
        pass


class _Consumer:
    made: list[dict[str, Any]] = []

    def __init__(self, settings: MessagingSettings, queue: str, handler: Any, **kwargs: Any):
        self.made.append({"queue": queue, **kwargs})

    def stop(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    _Consumer.made = []
    monkeypatch.setattr(service_mod.amqp, "Publisher", _Publisher)
    monkeypatch.setattr(service_mod.amqp, "Consumer", _Consumer)


def _settings(**values: Any) -> AgentSettings:
    return AgentSettings(host="h1", messaging=MessagingSettings(), **values)


def test_the_consumer_handles_messages_on_lanes():
    service_mod.AgentService(_settings(workers=6), ScriptedDriver())
    (made,) = _Consumer.made
    assert made["queue"] == "compute.h1"
    assert made["workers"] == 6


def test_workers_default_to_several_and_come_from_the_environment(monkeypatch):
    assert AgentSettings.from_env(host="h1").workers > 1
    monkeypatch.setenv("KUBENOVA_AGENT_WORKERS", "3")
    assert AgentSettings.from_env(host="h1").workers == 3
    monkeypatch.setenv("KUBENOVA_AGENT_WORKERS", "0")
    with pytest.raises(ValueError, match="KUBENOVA_AGENT_WORKERS"):
        AgentSettings.from_env(host="h1")


def test_lifecycle_events_are_listened_to_while_the_service_runs():
    driver = ScriptedDriver()
    service = service_mod.AgentService(_settings(sync_interval_s=60.0), driver)
    service.start()
    assert driver.listener is not None
    service.stop()
    assert driver.listener is None
