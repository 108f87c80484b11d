"""Arguments of the contract's migration methods: resize (1.4), Nova's ``resize_instance``,
``finish_resize``, ``confirm_resize``, ``revert_resize`` and ``finish_revert_resize``; live
migration (1.5), Nova's ``pre_live_migration``, ``live_migration``,
``post_live_migration_at_destination``, ``post_live_migration_at_source``,
``rollback_live_migration_at_destination`` and ``live_migration_abort``; and of the report each
step ends with (``migration_step_finished``) and a live migration's progress
(``migration_progress``).

A resize runs on two hosts, which may be one: the source powers the guest off and sets its
disk aside (copying it to the destination when that is another host); the destination
defines it with the new flavor and starts it. Confirming drops what the source kept;
reverting removes the destination's guest, then the source brings the old one back.

A live migration prepares the destination (an empty disk, the config drive), then the source
moves the running guest there, memory and disk, reporting progress as it goes; the destination
then keeps the guest and the source drops what is left, or, when it failed or was aborted, the
destination removes what it prepared and the guest runs on at the source.
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic

from kubenova.rpc.payload_base import InstancePayload, Payload, PowerStateName

_UUID = pydantic.Field(min_length=36, max_length=36)

#: A step of a resize, as the host that ran it reports it.
MigrationStep = Literal[
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
    #: A live migration's total time and the guest's pause at the switch-over, as libvirt
    #: measured them (``live_migration`` only; 1.5).
    total_s: float | None = pydantic.Field(default=None, ge=0)
    downtime_ms: int | None = pydantic.Field(default=None, ge=0)


class PreLiveMigration(Payload):
    """Destination: make ready for the incoming guest (an empty root disk of the flavor's
    size, the config drive, the console log)."""

    instance: InstancePayload
    migration: MigrationRef


class LiveMigration(Payload):
    """Source: move the running guest to the destination, its disk copied with its memory.
    It is aborted when the data left to copy has not gone down for ``progress_timeout_s``
    seconds (or on ``live_migration_abort``)."""

    instance_uuid: str = _UUID
    migration: MigrationRef
    progress_timeout_s: int = pydantic.Field(default=150, ge=1, le=86400)


class PostLiveMigrationAtDestination(Payload):
    """Destination, after the move: the guest is this host's for good."""

    instance: InstancePayload
    migration: MigrationRef


class PostLiveMigrationAtSource(Payload):
    """Source, after the move: what is left of the guest here goes."""

    instance_uuid: str = _UUID
    migration: MigrationRef


class RollbackLiveMigrationAtDestination(Payload):
    """Destination, after a failed or aborted move: what was prepared goes."""

    instance_uuid: str = _UUID
    migration: MigrationRef


class LiveMigrationAbort(Payload):
    """Source: abort the live migration ``migration_uuid`` if it is under way. Handled out of
    the instance's turn: the migration it stops holds that turn while it runs."""

    instance_uuid: str = _UUID
    migration_uuid: str = _UUID


class MigrationProgress(Payload):
    """The source's figures for a live migration under way (libvirt's job statistics; bytes
    of memory and disk together), sent every few seconds."""

    instance_uuid: str = _UUID
    host: str
    migration_uuid: str = _UUID
    elapsed_s: float = pydantic.Field(ge=0)
    data_total: int = pydantic.Field(ge=0)
    data_processed: int = pydantic.Field(ge=0)
    data_remaining: int = pydantic.Field(ge=0)
