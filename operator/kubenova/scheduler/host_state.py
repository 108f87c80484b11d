"""What the scheduler knows about one host and about one request."""

from __future__ import annotations

import dataclasses
import datetime

from kubenova.db import api as db_api
from kubenova.db import engine as db_engine


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """The resources and constraints of one instance to place."""

    instance_uuid: str
    vcpus: int
    memory_mib: int
    disk_gib: int


@dataclasses.dataclass(frozen=True)
class HostState:
    """A compute node's capacity, usage and liveness, as read from the database."""

    host: str
    vcpus: int
    vcpus_used: int
    memory_mib: int
    memory_mib_used: int
    disk_gib: int
    disk_gib_used: int
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mib: int = 0
    reserved_host_disk_gib: int = 0
    disabled: bool = False
    disabled_reason: str | None = None
    last_seen_up: datetime.datetime | None = None
    num_instances: int = 0
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_memory_mib(self) -> float:
        return (
            self.memory_mib - self.reserved_host_memory_mib
        ) * self.ram_allocation_ratio - self.memory_mib_used

    @property
    def free_disk_gib(self) -> float:
        return (
            self.disk_gib - self.reserved_host_disk_gib
        ) * self.disk_allocation_ratio - self.disk_gib_used

    def is_up(self, now: datetime.datetime, service_down_time_s: int) -> bool:
        """Nova's servicegroup check: a heartbeat younger than service_down_time."""
        if self.last_seen_up is None:
            return False
        age = now - self.last_seen_up
        return age.total_seconds() <= service_down_time_s


def load_host_states(session_factory: db_engine.SessionFactory) -> list[HostState]:
    """Every live compute node with its agent's heartbeat, read in one transaction."""
    with db_engine.transaction(session_factory) as session:
        return [
            HostState(
                host=record.node.host,
                vcpus=record.node.vcpus,
                vcpus_used=record.node.vcpus_used,
                memory_mib=record.node.memory_mib,
                memory_mib_used=record.node.memory_mib_used,
                disk_gib=record.node.local_gb,
                disk_gib_used=record.node.local_gb_used,
                cpu_allocation_ratio=record.node.cpu_allocation_ratio,
                ram_allocation_ratio=record.node.ram_allocation_ratio,
                disk_allocation_ratio=record.node.disk_allocation_ratio,
                reserved_host_memory_mib=record.node.reserved_host_memory_mib,
                reserved_host_disk_gib=record.node.reserved_host_disk_gib,
                disabled=record.disabled,
                disabled_reason=record.node.disabled_reason,
                last_seen_up=record.last_seen_up,
                num_instances=record.node.running_vms,
                labels=dict(record.node.labels or {}),
            )
            for record in db_api.compute_nodes_list(session)
        ]
