"""The conductor refuses a report unless RabbitMQ says it came from that host's own agent."""

import pytest

from kubenova.conductor.manager import ConductorManager
from kubenova.config import OperatorSettings
from kubenova.rpc import envelope, payloads
from kubenova.rpc.amqp import PermanentFailure


class Untouchable:
    """Stands in for the database, the Kubernetes client and the bus: any use fails."""

    def __getattr__(self, name):
        raise AssertionError(f"the conductor touched {name} before checking the sender")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the conductor opened a session before checking the sender")


def _update(host: str) -> envelope.Envelope:
    update = payloads.InstanceUpdate(
        instance_uuid="6f1c1d9e-0000-4000-8000-000000000001",
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
def test_report_about_a_host_from_another_user_is_refused_before_any_write(user_id):
    conductor = ConductorManager(OperatorSettings(), Untouchable(), Untouchable(), Untouchable())
    with pytest.raises(PermanentFailure, match="not 'agent-h1'"):
        conductor.handle(_update("h1"), user_id)


def test_unknown_method_is_refused():
    conductor = ConductorManager(OperatorSettings(), Untouchable(), Untouchable(), Untouchable())
    message = envelope.Envelope(request_id="r", method="drop_tables", sender="x")
    with pytest.raises(PermanentFailure, match="drop_tables"):
        conductor.handle(message, "agent-h1")
