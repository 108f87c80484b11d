"""Typed arguments of each method in the contract.

Each payload is validated on receipt, so a malformed message fails loudly at the
boundary instead of deep inside a handler.
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic

PowerStateName = Literal["running", "shutdown", "paused", "crashed", "nostate"]
MAX_USER_DATA_BYTES = 64 * 1024


class _Payload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ImagePayload(_Payload):
    name: str
    url: str = pydantic.Field(pattern=r"^https?://")
    sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    disk_format: Literal["qcow2", "raw"]


class InstancePayload(_Payload):
    """What a host needs to build one instance."""

    uuid: str = pydantic.Field(min_length=36, max_length=36)
    name: str
    namespace: str
    hostname: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    vcpus: int = pydantic.Field(ge=1)
    memory_mib: int = pydantic.Field(ge=1)
    disk_gib: int = pydantic.Field(ge=1)
    image: ImagePayload
    user_data: str | None = pydantic.Field(default=None, max_length=MAX_USER_DATA_BYTES)
    ssh_authorized_keys: tuple[str, ...] = ()


class BuildAndRunInstance(_Payload):
    instance: InstancePayload


class TerminateInstance(_Payload):
    instance_uuid: str


class ComputeNodeReport(_Payload):
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


class ServiceStopping(_Payload):
    """An agent is stopping (SIGTERM): its host is down until its next heartbeat."""

    host: str


class InstanceUpdate(_Payload):
    """The state of one instance as its host sees it."""

    instance_uuid: str
    host: str
    vm_state: str
    task_state: str | None
    power_state: PowerStateName
    addresses: tuple[str, ...] = ()
    launched_at: datetime.datetime | None = None
    event: str | None = None


class InstanceBuildFailed(_Payload):
    instance_uuid: str
    host: str
    reason: str
    message: str
    reschedulable: bool


class InstanceTerminated(_Payload):
    instance_uuid: str
    host: str
