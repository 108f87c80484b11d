"""The conductor refuses a report unless RabbitMQ says it came from that host's own agent."""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.conductor.manager import ConductorManager
from kubenova.exception import PermanentFailure
from kubenova.rpc import envelope, payloads

UUID = "6f1c1d9e-0000-4000-8000-000000000001"


class Untouchable:
    """Stands in for the hypervisors and the instance reports: calling any of their methods
    fails (looking one up does not: ``self.instances.instance_update(_checked(...))`` looks
    the handler up before the sender is checked, and calls it only after)."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"the conductor called {name} before checking the sender")

        return refuse


class RecordingReports:
    """Stands in for the instance reports: records each update it is handed."""

    def __init__(self) -> None:
        self.updates: list[payloads.InstanceUpdate] = []

    def instance_update(self, update: payloads.InstanceUpdate) -> None:
        self.updates.append(update)


def _update(host: str) -> envelope.Envelope:
    update = payloads.InstanceUpdate(
        instance_uuid=UUID,
        host=host,
        vm_state="active",
        task_state=None,
        power_state="running",
    )
    return envelope.Envelope(
        request_id="req-1",
        method="instance_update",
        args=update.model_dump(mode="json"),
        sender=f"kubenova-agent.{host}",
    )


@pytest.mark.parametrize("user_id", ["agent-h2", "kubenova-operator", None])
def test_report_about_a_host_from_another_user_is_refused_before_any_write(
    user_id: str | None,
) -> None:
    manager = ConductorManager(Untouchable(), Untouchable(), Untouchable())  # type: ignore[arg-type]
    with pytest.raises(PermanentFailure, match="not 'agent-h1'"):
        manager.handle(_update("h1"), user_id)


def test_report_from_the_hosts_own_agent_reaches_its_handler() -> None:
    reports = RecordingReports()
    manager = ConductorManager(Untouchable(), reports, Untouchable())  # type: ignore[arg-type]
    manager.handle(_update("h1"), "agent-h1")
    assert [(update.host, update.instance_uuid) for update in reports.updates] == [("h1", UUID)]


def test_unknown_method_is_refused() -> None:
    manager = ConductorManager(Untouchable(), Untouchable(), Untouchable())  # type: ignore[arg-type]
    message = envelope.Envelope(request_id="r", method="drop_tables", sender="x")
    with pytest.raises(PermanentFailure, match="drop_tables"):
        manager.handle(message, "agent-h1")
