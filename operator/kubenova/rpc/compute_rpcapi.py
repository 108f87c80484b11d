"""Client side of the compute (node-agent) API: the operator casts to ``compute.<host>``,
and calls it where it needs an answer (``get_console_output``).

Like Nova's ``compute/rpcapi.py`` this stub only builds and publishes messages; the
work happens in ``kubenova_agent.manager``. See :mod:`kubenova.rpc.envelope` for the
contract's version history.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from kubenova.config import MessagingSettings
from kubenova.rpc import payloads


class Caster(Protocol):
    """What the stubs need from a publisher (see :class:`kubenova.rpc.amqp.Publisher`)."""

    def cast(self, topic: str, method: str, args: dict[str, object], request_id: str) -> str: ...


class Caller(Protocol):
    """What a call needs (see :class:`kubenova.rpc.call.Caller`)."""

    def call(
        self,
        topic: str,
        method: str,
        args: dict[str, object],
        request_id: str,
        *,
        timeout_s: float,
    ) -> Any: ...


#: How long a caller waits for a host's answer by default.
DEFAULT_CALL_TIMEOUT_S = 10.0


class ComputeAPI:
    """Casts work to one host's agent, and calls it (with ``caller``) for answers."""

    def __init__(self, caster: Caster | None = None, *, caller: Caller | None = None) -> None:
        self._caster = caster
        self._caller = caller

    def get_console_output(
        self,
        host: str,
        instance_uuid: str,
        tail_lines: int | None,
        *,
        request_id: str,
        timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    ) -> str:
        """The tail of the instance's serial console log on ``host``: at most ``tail_lines``
        lines (None: all the host keeps). Raises what :meth:`kubenova.rpc.call.Caller.call`
        raises (no answer in time, the host's failure)."""
        if self._caller is None:
            raise RuntimeError("this ComputeAPI was made without a caller")
        args = payloads.GetConsoleOutput(instance_uuid=instance_uuid, tail_lines=tail_lines)
        answer = self._caller.call(
            MessagingSettings.compute_topic(host),
            "get_console_output",
            args.model_dump(mode="json"),
            request_id,
            timeout_s=timeout_s,
        )
        output = answer.get("output") if isinstance(answer, dict) else None
        if not isinstance(output, str):
            raise ValueError(f"host {host} answered get_console_output without an output")
        return output

    def build_and_run_instance(
        self, host: str, instance: payloads.InstancePayload, request_id: str
    ) -> str:
        args = payloads.BuildAndRunInstance(instance=instance)
        return self._cast(host, "build_and_run_instance", args, request_id)

    def terminate_instance(self, host: str, instance_uuid: str, request_id: str) -> str:
        args = payloads.TerminateInstance(instance_uuid=instance_uuid)
        return self._cast(host, "terminate_instance", args, request_id)

    def stop_instance(
        self,
        host: str,
        instance_uuid: str,
        request_id: str,
        *,
        clean_shutdown: bool,
        shutdown_timeout_s: int,
    ) -> str:
        args = payloads.StopInstance(
            instance_uuid=instance_uuid,
            clean_shutdown=clean_shutdown,
            shutdown_timeout_s=shutdown_timeout_s,
        )
        return self._cast(host, "stop_instance", args, request_id)

    def reboot_instance(
        self,
        host: str,
        instance_uuid: str,
        request_id: str,
        *,
        reboot_type: Literal["SOFT", "HARD"],
        shutdown_timeout_s: int,
    ) -> str:
        args = payloads.RebootInstance(
            instance_uuid=instance_uuid,
            reboot_type=reboot_type,
            shutdown_timeout_s=shutdown_timeout_s,
        )
        return self._cast(host, "reboot_instance", args, request_id)

    def rebuild_instance(
        self,
        host: str,
        instance: payloads.InstancePayload,
        request_id: str,
        *,
        power_on: bool,
    ) -> str:
        args = payloads.RebuildInstance(instance=instance, power_on=power_on)
        return self._cast(host, "rebuild_instance", args, request_id)

    def snapshot_instance(
        self, host: str, snapshot: payloads.SnapshotInstance, request_id: str
    ) -> str:
        return self._cast(host, "snapshot_instance", snapshot, request_id)

    def instance_operation(
        self, host: str, method: str, instance_uuid: str, request_id: str
    ) -> str:
        """start_instance, pause_instance, unpause_instance, suspend_instance or
        resume_instance: operations that need only the instance's uuid."""
        if method not in INSTANCE_OPERATIONS:
            raise ValueError(f"{method!r} is not one of {sorted(INSTANCE_OPERATIONS)}")
        return self._cast(
            host, method, payloads.InstanceOperation(instance_uuid=instance_uuid), request_id
        )

    def migration_step(
        self, host: str, method: str, args: payloads.Payload, request_id: str
    ) -> str:
        """One step of a resize or a live migration on ``host`` (:data:`MIGRATION_STEPS`),
        with its migration_payloads arguments."""
        if method not in MIGRATION_STEPS or not isinstance(args, payloads.METHODS[method].payload):
            raise ValueError(f"{method!r} with {type(args).__name__} is not a migration step")
        return self._cast(host, method, args, request_id)

    def _cast(self, host: str, method: str, args: payloads.Payload, request_id: str) -> str:
        if self._caster is None:
            raise RuntimeError("this ComputeAPI was made without a caster")
        return self._caster.cast(
            MessagingSettings.compute_topic(host),
            method,
            args.model_dump(mode="json"),
            request_id,
        )


#: The compute methods whose payload is :class:`~kubenova.rpc.payloads.InstanceOperation`.
INSTANCE_OPERATIONS = frozenset(
    name
    for name, method in payloads.METHODS.items()
    if method.payload is payloads.InstanceOperation
)

#: The compute methods that are steps of a resize or of a live migration.
MIGRATION_STEPS = frozenset(
    {
        "resize_instance",
        "finish_resize",
        "confirm_resize",
        "revert_resize",
        "finish_revert_resize",
        "pre_live_migration",
        "live_migration",
        "post_live_migration_at_destination",
        "post_live_migration_at_source",
        "rollback_live_migration_at_destination",
        "live_migration_abort",
    }
)
