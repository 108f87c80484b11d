"""Arguments of the contract's resize methods (1.4), Nova's ``resize_instance``,
``finish_resize``, ``confirm_resize``, ``revert_resize`` and ``finish_revert_resize``, and of
the report each step ends with (``migration_step_finished``).

A resize runs on two hosts, which may be one: the source powers the guest off and sets its
disk aside (copying it to the destination when that is another host); the destination
defines it with the new flavor and starts it. Confirming drops what the source kept;
reverting removes the destination's guest, then the source brings the old one back.
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic

from kubenova.rpc.payload_base import InstancePayload, Payload, PowerStateName

_UUID = pydantic.Field(min_length=36, max_length=36)

#: A step of a resize, as the host that ran it reports it.
MigrationStep = Literal[
    "resize_instance", "finish_resize", "confirm_resize", "revert_resize", "finish_revert_resize"
]


class MigrationRef(Payload):
    """The migration a step belongs to: its hosts, and how the source reaches the
    destination's hypervisor (``dest_uri``; None when both are one host)."""

    uuid: str = _UUID
    source_host: str
    dest_host: str
    dest_uri: str | None = pydantic.Field(default=None, max_length=1024)

    @property
    def same_host(self) -> bool:
        return self.source_host == self.dest_host


class ResizeInstance(Payload):
    """Source: power the guest off (asking first, for up to ``shutdown_timeout_s``), set its
    disk aside, and copy it to the destination when that is another host."""

    instance_uuid: str = _UUID
    migration: MigrationRef
    shutdown_timeout_s: int = pydantic.Field(default=60, ge=0, le=3600)


class FinishResize(Payload):
    """Destination: the guest defined with ``instance``'s new flavor on the disk it was given,
    started when ``power_on``."""

    instance: InstancePayload
    migration: MigrationRef
    power_on: bool = True


class ConfirmResize(Payload):
    """Source: drop what was set aside for a revert."""

    instance_uuid: str = _UUID
    migration: MigrationRef


class RevertResize(Payload):
    """Destination: remove the resized guest (the source then brings the old one back)."""

    instance_uuid: str = _UUID
    migration: MigrationRef


class FinishRevertResize(Payload):
    """Source: the guest back as it was, ``instance``'s old flavor on the disk set aside,
    started when ``power_on``."""

    instance: InstancePayload
    migration: MigrationRef
    power_on: bool = True


class MigrationStepFinished(Payload):
    """A host finished (or failed) one step of a migration: the action event (Nova's
    ``compute_<step>``) and the instance's state on that host afterwards."""

    instance_uuid: str = _UUID
    host: str
    migration_uuid: str = _UUID
    step: MigrationStep
    result: Literal["Success", "Error"]
    message: str | None = pydantic.Field(default=None, max_length=4096)
    started_at: datetime.datetime
    finished_at: datetime.datetime
    vm_state: str
    power_state: PowerStateName
    addresses: tuple[str, ...] = ()
