"""Typed arguments of each method in the contract.

Each payload is validated on receipt, so a malformed message fails loudly at the
boundary instead of deep inside a handler. :data:`METHODS` names every method of the
contract with its payload and its version (see :mod:`kubenova.rpc.envelope`).
"""

from __future__ import annotations

import datetime
from typing import Literal, NamedTuple

import pydantic

from kubenova.rpc import migration_payloads

# Re-exported: the contract's callers name them from here.
from kubenova.rpc.payload_base import MAX_USER_DATA_BYTES as MAX_USER_DATA_BYTES
from kubenova.rpc.payload_base import ImagePayload as ImagePayload
from kubenova.rpc.payload_base import InstancePayload as InstancePayload
from kubenova.rpc.payload_base import Payload as Payload
from kubenova.rpc.payload_base import PowerStateName as PowerStateName


class BuildAndRunInstance(Payload):
    instance: InstancePayload


class TerminateInstance(Payload):
    instance_uuid: str


#: The operations a host carries out on an existing instance (Nova's stop_instance,
#: start_instance, ..., rebuild_instance). The conductor names the task state each runs under
#: (``kubenova.compute.operations``).
OperationName = Literal[
    "stop", "start", "pause", "unpause", "suspend", "resume", "reboot", "rebuild"
]
#: How long a host waits, at most, for a guest to shut down by itself (ACPI power button)
#: before it powers it off: Nova's ``shutdown_timeout``.
MAX_SHUTDOWN_TIMEOUT_S = 3600


class InstanceOperation(Payload):
    """An operation on one instance that needs nothing but its uuid (start, pause, unpause,
    suspend, resume)."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)


class StopInstance(Payload):
    """Power an instance off. ``clean_shutdown``: ask the guest first (ACPI power button)
    and wait up to ``shutdown_timeout_s`` before powering it off; else power it off at once."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)
    clean_shutdown: bool = True
    shutdown_timeout_s: int = pydantic.Field(default=60, ge=0, le=MAX_SHUTDOWN_TIMEOUT_S)


class RebootInstance(Payload):
    """Reboot an instance. ``SOFT`` asks the guest to shut down, waits up to
    ``shutdown_timeout_s``, then starts it again, and falls back to ``HARD`` (power off and
    on) when the guest ignores the request, as Nova's libvirt driver does. A hard reboot also
    starts a stopped, paused or suspended instance."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)
    reboot_type: Literal["SOFT", "HARD"]
    shutdown_timeout_s: int = pydantic.Field(default=60, ge=0, le=MAX_SHUTDOWN_TIMEOUT_S)


class RebuildInstance(Payload):
    """Rebuild an instance where it is (Nova's rebuild): a new root disk from ``instance``'s
    image and a new config drive (its user data), with the same uuid, host and network
    identity (so the same addresses). ``power_on`` False leaves it stopped afterwards, as
    Nova leaves a rebuilt instance that was stopped."""

    instance: InstancePayload
    power_on: bool = True


class ConsolePorts(Payload):
    """The TCP ports a running guest's consoles listen on, on its host's console address, as
    the host's libvirt handed them out when QEMU last started. None: no such console (a host
    serving SPICE over TLS only has no plain SPICE port)."""

    vnc_port: int | None = pydantic.Field(default=None, ge=1, le=65535)
    spice_port: int | None = pydantic.Field(default=None, ge=1, le=65535)
    spice_tls_port: int | None = pydantic.Field(default=None, ge=1, le=65535)


def console_ports_reported(report: pydantic.BaseModel) -> bool:
    """Whether ``report`` says anything about console ports: a report from an agent older than
    1.6 leaves the field out, which is not the same as a None (no console runs)."""
    return "console_ports" in report.model_fields_set


class InstanceOperationFinished(Payload):
    """A host finished (or failed) an operation on one of its instances: the action event
    (Nova's ``compute_<operation>_instance``) and the instance's state afterwards.

    ``vm_state`` is what the host sees now (active, stopped, paused, suspended, error);
    ``message`` explains an ``Error`` or, for a success, anything worth recording (a soft
    reboot that became hard)."""

    instance_uuid: str
    host: str
    operation: OperationName
    result: Literal["Success", "Error"]
    message: str | None = pydantic.Field(default=None, max_length=4096)
    started_at: datetime.datetime
    finished_at: datetime.datetime
    vm_state: str
    power_state: PowerStateName
    addresses: tuple[str, ...] = ()
    # Where the guest's consoles are afterwards (since 1.6; None: none runs).
    console_ports: ConsolePorts | None = None


class ComputeNodeReport(Payload):
    """An agent's registration and heartbeat: its capacity and what it runs."""

    host: str
    vcpus: int = pydantic.Field(ge=0)
    memory_mib: int = pydantic.Field(ge=0)
    disk_gib: int = pydantic.Field(ge=0)
    cpu_arch: str
    hypervisor_type: str
    virt_type: str
    libvirt_version: str
    qemu_version: str
    instance_uuids: tuple[str, ...] = ()
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    # The newest contract version the agent implements, recorded as its service's version
    # (since 1.2; an older agent's report leaves it out).
    service_version: str | None = pydantic.Field(default=None, pattern=r"^\d+\.\d+$")
    # How other hosts reach this host's hypervisor, to move instances here (since 1.4; None:
    # instances cannot be moved here from another host).
    migration_uri: str | None = pydantic.Field(default=None, max_length=1024)
    # Where the console proxy reaches this host's consoles (since 1.8; None: at the host's
    # name), Nova's vncserver_proxyclient_address.
    console_address: str | None = pydantic.Field(default=None, max_length=255)


class ServiceStopping(Payload):
    """An agent is stopping (SIGTERM): its host is down until its next heartbeat."""

    host: str


class InstanceUpdate(Payload):
    """The state of one instance as its host sees it."""

    instance_uuid: str
    host: str
    vm_state: str
    task_state: str | None
    power_state: PowerStateName
    addresses: tuple[str, ...] = ()
    launched_at: datetime.datetime | None = None
    event: str | None = None
    # Where the guest's consoles are (since 1.6; None: none runs).
    console_ports: ConsolePorts | None = None


class InstanceBuildFailed(Payload):
    instance_uuid: str
    host: str
    reason: str
    message: str
    reschedulable: bool


class InstanceTerminated(Payload):
    instance_uuid: str
    host: str


#: An Image's name: a Kubernetes object name (DNS subdomain).
_OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class SnapshotInstance(Payload):
    """Take a snapshot of an instance's root disk (Nova's ``snapshot_instance``): a
    consistent, standalone qcow2 image of it, uploaded with HTTP PUT to ``upload_url`` on the
    image server, and reported with ``snapshot_finished``. ``snapshot_name`` and
    ``snapshot_uid`` name the InstanceSnapshot object (in the instance's namespace) that asked
    for it; ``image_name`` the Image the conductor makes of the upload."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)
    snapshot_name: str = pydantic.Field(pattern=_OBJECT_NAME, max_length=253)
    snapshot_uid: str = pydantic.Field(min_length=36, max_length=36)
    image_name: str = pydantic.Field(pattern=_OBJECT_NAME, max_length=253)
    upload_url: str = pydantic.Field(pattern=r"^https?://", max_length=2048)


class SnapshotFinished(Payload):
    """A host finished (or failed) a snapshot: the action event
    (``compute_snapshot_instance``), what was uploaded (``url``, ``sha256`` and
    ``size_bytes``, for a ``Success``) and the instance's state afterwards (unchanged by a
    snapshot, unless it broke)."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)
    host: str
    snapshot_name: str = pydantic.Field(pattern=_OBJECT_NAME, max_length=253)
    snapshot_uid: str = pydantic.Field(min_length=36, max_length=36)
    image_name: str = pydantic.Field(pattern=_OBJECT_NAME, max_length=253)
    result: Literal["Success", "Error"]
    message: str | None = pydantic.Field(default=None, max_length=4096)
    url: str | None = pydantic.Field(default=None, pattern=r"^https?://", max_length=2048)
    sha256: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = pydantic.Field(default=None, ge=0)
    started_at: datetime.datetime
    finished_at: datetime.datetime
    vm_state: str
    power_state: PowerStateName
    addresses: tuple[str, ...] = ()


class GetConsoleOutput(Payload):
    """Read the tail of an instance's serial console log (Nova's ``get_console_output``), a
    call: the answer is ``{"output": text}``. ``tail_lines`` None: as much as the host's cap
    allows."""

    instance_uuid: str = pydantic.Field(min_length=36, max_length=36)
    tail_lines: int | None = pydantic.Field(default=None, ge=0)


class Method(NamedTuple):
    """One method of the contract: its arguments and its version."""

    payload: type[Payload]
    #: The contract version in which the arguments last changed (or the method came in). The
    #: publisher sends it in the envelope; a receiver implementing an older contract refuses it.
    version: str


#: Every method of the contract. Changing a payload (a field, its type, whether it is required,
#: a constraint, a default) means giving its method the next version: see the history in
#: :mod:`kubenova.rpc.envelope`, and ``tests/unit/rpc/test_contract_versions.py``.
METHODS: dict[str, Method] = {
    # To compute.<host> (compute_rpcapi.ComputeAPI), handled by kubenova_agent.manager.
    "build_and_run_instance": Method(BuildAndRunInstance, "1.0"),
    "terminate_instance": Method(TerminateInstance, "1.0"),
    "stop_instance": Method(StopInstance, "1.3"),
    "start_instance": Method(InstanceOperation, "1.3"),
    "pause_instance": Method(InstanceOperation, "1.3"),
    "unpause_instance": Method(InstanceOperation, "1.3"),
    "suspend_instance": Method(InstanceOperation, "1.3"),
    "resume_instance": Method(InstanceOperation, "1.3"),
    "reboot_instance": Method(RebootInstance, "1.3"),
    "rebuild_instance": Method(RebuildInstance, "1.3"),
    # A call (kubenova.rpc.call): compute.<host> answers it.
    "get_console_output": Method(GetConsoleOutput, "1.7"),
    # To conductor (conductor_rpcapi.ConductorAPI), handled by kubenova.conductor.manager.
    "compute_node_report": Method(ComputeNodeReport, "1.8"),
    "instance_update": Method(InstanceUpdate, "1.6"),
    "instance_build_failed": Method(InstanceBuildFailed, "1.0"),
    "instance_terminated": Method(InstanceTerminated, "1.0"),
    "service_stopping": Method(ServiceStopping, "1.1"),
    "instance_operation_finished": Method(InstanceOperationFinished, "1.6"),
    # A snapshot: cast to compute.<host>, reported to the conductor.
    "snapshot_instance": Method(SnapshotInstance, "1.4"),
    "snapshot_finished": Method(SnapshotFinished, "1.4"),
    # Resize (kubenova.rpc.migration_payloads).
    "resize_instance": Method(migration_payloads.ResizeInstance, "1.4"),
    "finish_resize": Method(migration_payloads.FinishResize, "1.4"),
    "confirm_resize": Method(migration_payloads.ConfirmResize, "1.4"),
    "revert_resize": Method(migration_payloads.RevertResize, "1.4"),
    "finish_revert_resize": Method(migration_payloads.FinishRevertResize, "1.4"),
    "migration_step_finished": Method(migration_payloads.MigrationStepFinished, "1.5"),
    # Live migration (1.5).
    "pre_live_migration": Method(migration_payloads.PreLiveMigration, "1.5"),
    "live_migration": Method(migration_payloads.LiveMigration, "1.5"),
    "post_live_migration_at_destination": Method(
        migration_payloads.PostLiveMigrationAtDestination, "1.5"
    ),
    "post_live_migration_at_source": Method(migration_payloads.PostLiveMigrationAtSource, "1.5"),
    "rollback_live_migration_at_destination": Method(
        migration_payloads.RollbackLiveMigrationAtDestination, "1.5"
    ),
    "live_migration_abort": Method(migration_payloads.LiveMigrationAbort, "1.5"),
    "migration_progress": Method(migration_payloads.MigrationProgress, "1.5"),
}
