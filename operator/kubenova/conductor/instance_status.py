"""The Instance status as a projection of its database record.

Only this module turns a record into status, and both the api layer and the
conductor write status through it, so the object can never say something the
database does not.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol

from kubenova.compute import operations, states
from kubenova.db import moves


class InstanceRecord(Protocol):
    """The fields of an ``instances`` row the projection reads."""

    host: str | None
    vm_state: str
    task_state: str | None
    power_state: str
    addresses: list[Any] | None
    launched_at: datetime.datetime | None
    generation: int
    request_id: str | None
    availability_zone: str | None
    sync_reason: str | None
    sync_message: str | None


# Kubernetes' timestamp format (RFC 3339, UTC, whole seconds), for every time in a status.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _now() -> str:
    return timestamp(datetime.datetime.now(datetime.UTC))


def timestamp(value: datetime.datetime) -> str:
    """``value`` as a status writes times."""
    return value.astimezone(datetime.UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: object) -> datetime.datetime | None:
    """A time a status holds (see :func:`timestamp`), or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def condition(
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    previous: list[dict[str, Any]] | None,
    generation: int | None = None,
) -> dict[str, Any]:
    """A Kubernetes condition; keeps lastTransitionTime when the status did not change."""
    status_text = "Unknown" if status is None else ("True" if status else "False")
    transition = _now()
    for old in previous or []:
        if old.get("type") == type_ and old.get("status") == status_text:
            transition = old.get("lastTransitionTime", transition)
    result: dict[str, Any] = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        result["observedGeneration"] = generation
    return result


def merge_conditions(
    previous: list[dict[str, Any]] | None, updates: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``previous`` with each condition in ``updates`` replacing the one of its type."""
    by_type = {c["type"]: c for c in previous or [] if "type" in c}
    for update in updates:
        by_type[update["type"]] = update
    return [by_type[key] for key in sorted(by_type)]


def project(
    record: InstanceRecord,
    *,
    previous_conditions: list[dict[str, Any]] | None = None,
    host_up: bool = True,
    fault: dict[str, str] | None = None,
    resize: dict[str, Any] | None = None,
    migration_type: str | None = None,
) -> dict[str, Any]:
    """The status block for an Instance whose record is ``record``; ``resize``, the resize
    that awaits confirmation (shown while the instance is resized); ``migration_type``, the
    type of the move under way (see :func:`_in_progress`)."""
    phase = states.phase(
        record.vm_state,
        record.task_state,
        record.power_state,
        host=record.host,
        host_up=host_up,
    )
    generation = record.generation
    updates = []
    if record.host is not None:
        updates.append(
            condition(
                "Scheduled",
                True,
                "Scheduled",
                f"claimed on host {record.host}",
                previous_conditions,
                generation,
            )
        )
    ready = phase == "Running"
    updates.append(
        condition(
            "Ready",
            ready,
            "Running" if ready else phase,
            "the guest is running" if ready else f"the instance is {phase.lower()}",
            previous_conditions,
            generation,
        )
    )
    synced = _synced(record, previous_conditions, migration_type)
    if synced is not None:
        updates.append(synced)
    status: dict[str, Any] = {
        "phase": phase,
        "vmState": record.vm_state,
        "taskState": record.task_state,
        "powerState": record.power_state,
        "host": record.host,
        "availabilityZone": record.availability_zone,
        "addresses": list(record.addresses or []),
        "launchedAt": timestamp(record.launched_at) if record.launched_at else None,
        "observedGeneration": generation,
        "requestId": record.request_id,
        "conditions": merge_conditions(previous_conditions, updates),
    }
    if fault is not None:
        status["fault"] = fault
    if resize is not None:
        status["resize"] = resize
    return status


def _in_progress(
    task_state: str | None, migration_type: str | None = None
) -> operations.Operation | None:
    """The operation under way in ``task_state``, as the Synced condition names it. A cold
    migration runs under the resize's task states: with ``migration_type`` ``migration`` (the
    move under way is one) those say ``migrate``, otherwise ``resize`` (and its confirm and
    revert). A live migration and an evacuation have task states of their own."""
    if migration_type == moves.COLD and task_state in operations.RESIZE_TASK_STATES:
        return operations.MIGRATE
    return operations.IN_PROGRESS.get(task_state or "")


def _synced(
    record: InstanceRecord, previous: list[dict[str, Any]] | None, migration_type: str | None
) -> dict[str, Any] | None:
    """The Synced condition: whether the spec at ``generation`` is applied, under way, or why
    not. None while the instance is being built or deleted (its create or delete says it)."""
    if record.vm_state in (states.BUILDING, states.DELETED) or record.task_state in (
        states.SCHEDULING,
        states.SPAWNING,
        states.DELETING,
    ):
        return None
    generation = record.generation
    operation = _in_progress(record.task_state, migration_type)
    if operation is not None:
        return condition(
            "Synced",
            False,
            "InProgress",
            f"{operation.name} in progress ({record.task_state})",
            previous,
            generation,
        )
    if record.sync_reason:
        return condition(
            "Synced", False, record.sync_reason, record.sync_message or "", previous, generation
        )
    return condition(
        "Synced",
        True,
        "Synced",
        f"the spec of generation {generation} is applied",
        previous,
        generation,
    )


def pending(
    reason: str,
    message: str,
    *,
    previous_conditions: list[dict[str, Any]] | None,
    generation: int,
) -> dict[str, Any]:
    """Status of an instance that cannot be scheduled yet, and why."""
    return {
        "phase": "Pending",
        "vmState": states.BUILDING,
        "taskState": states.SCHEDULING,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            previous_conditions,
            [
                condition("Scheduled", False, reason, message, previous_conditions, generation),
                condition("Ready", False, "Pending", message, previous_conditions, generation),
            ],
        ),
    }
