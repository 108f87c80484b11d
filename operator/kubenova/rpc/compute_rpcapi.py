"""Client side of the compute (node-agent) API: the operator casts to ``compute.<host>``.

Like Nova's ``compute/rpcapi.py`` this stub only builds and publishes messages; the
work happens in ``kubenova_agent.manager``. See :mod:`kubenova.rpc.envelope` for the
contract's version history.
"""

from __future__ import annotations

from typing import Protocol

from kubenova.config import MessagingSettings
from kubenova.rpc import payloads


class Caster(Protocol):
    """What the stubs need from a publisher (see :class:`kubenova.rpc.amqp.Publisher`)."""

    def cast(self, topic: str, method: str, args: dict[str, object], request_id: str) -> str: ...


class ComputeAPI:
    """Casts work to one host's agent."""

    def __init__(self, caster: Caster) -> None:
        self._caster = caster

    def build_and_run_instance(
        self, host: str, instance: payloads.InstancePayload, request_id: str
    ) -> str:
        args = payloads.BuildAndRunInstance(instance=instance).model_dump(mode="json")
        return self._caster.cast(
            MessagingSettings.compute_topic(host), "build_and_run_instance", args, request_id
        )

    def terminate_instance(self, host: str, instance_uuid: str, request_id: str) -> str:
        args = payloads.TerminateInstance(instance_uuid=instance_uuid).model_dump(mode="json")
        return self._caster.cast(
            MessagingSettings.compute_topic(host), "terminate_instance", args, request_id
        )
