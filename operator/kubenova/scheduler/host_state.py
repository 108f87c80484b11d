"""What the scheduler knows about one host and about one request."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Final

from kubenova import placement

#: The well-known Kubernetes label that names a node's zone; Kubenova reads it as the
#: host's availability zone.
AVAILABILITY_ZONE_LABEL: Final = "topology.kubernetes.io/zone"
#: Nova's ``default_availability_zone``: the zone of a host that does not name one.
DEFAULT_AVAILABILITY_ZONE: Final = "nova"


@dataclasses.dataclass(frozen=True)
class ServerGroupSpec:
    """The server group an instance belongs to, as the scheduler needs it (Nova's
    ``InstanceGroup``).

    ``member_hosts`` maps a host to how many of the group's *other* members already run
    there; the instance being placed must not be counted (Nova counts the group's hosts
    before the new member is added). ``max_server_per_host`` is Nova's anti-affinity rule
    (microversion 2.64): None means 1. It only means something for ``anti-affinity``.
    """

    name: str
    policy: placement.ServerGroupPolicy
    max_server_per_host: int | None = None
    # The group's database id: the claim locks that row, so racing claims of one group
    # see each other's members (kubenova.db.api.claim_resources).
    group_id: int | None = None
    member_hosts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: The hosts that hold at least one member, worked out once per request rather than
    #: once per host filtered.
    occupied_hosts: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The values come from the database and the API as plain strings and ints; refusing a
        # bad one here names it, where a filter would silently treat it as "no policy".
        if self.policy not in placement.SERVER_GROUP_POLICIES:
            raise ValueError(
                f"server group {self.name}: unknown policy {self.policy!r}; "
                f"known: {sorted(placement.SERVER_GROUP_POLICIES)}"
            )
        if self.max_server_per_host is not None and self.max_server_per_host < 1:
            raise ValueError(
                f"server group {self.name}: max_server_per_host must be at least 1, "
                f"not {self.max_server_per_host}"
            )
        occupied = frozenset(host for host, count in self.member_hosts.items() if count > 0)
        # Frozen: the derived field can only be set the way dataclasses set fields.
        object.__setattr__(self, "occupied_hosts", occupied)

    def members_on(self, host: str) -> int:
        """How many of the group's members already run on ``host``."""
        return self.member_hosts.get(host, 0)


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """The resources and constraints of one instance to place (Nova's ``RequestSpec``).

    Every field past the resources has a default that constrains nothing, so a caller sets
    only what the request asks for.

    - ``availability_zone``: the zone the host must be in (None: any).
    - ``node_selector``: labels the host must carry with exactly these values.
    - ``flavor_extra_specs``: the flavor's extra specs; unscoped keys (and keys scoped
      ``aggregate_instance_extra_specs:``) must equal the host's labels, other scopes
      (``hw:``, ``quota:``...) belong to other consumers and are ignored.
    - ``image_architecture`` / ``image_hypervisor_type``: the image's ``hw_architecture``
      and ``img_hv_type`` properties.
    - ``server_group``: the group the instance belongs to, with its members' hosts.
    - ``forced_host``: an administrator's choice of host. Only that host is considered and
      only the filters marked to run on a forced host (liveness, room and the hosts already
      tried) are applied; see :func:`kubenova.scheduler.manager.select_destinations`.
    - ``ignore_hosts``: hosts an earlier attempt of this build already failed on.
    """

    instance_uuid: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    availability_zone: str | None = None
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    flavor_extra_specs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    image_architecture: str | None = None
    image_hypervisor_type: str | None = None
    server_group: ServerGroupSpec | None = None
    forced_host: str | None = None
    ignore_hosts: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class HostState:
    """A compute node's capacity, usage, facts and liveness, as read from the database."""

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
    #: What the host's agent reported: the CPU architecture ("x86_64"), the hypervisor
    #: ("QEMU") and libvirt's domain type ("kvm", "qemu").
    cpu_arch: str | None = None
    hypervisor_type: str | None = None
    virt_type: str | None = None
    #: Builds that failed on this host recently (Nova's ``failed_builds``); reset by a
    #: successful build.
    failed_builds: int = 0

    @property
    def free_vcpus(self) -> float:
        return placement.allocatable(self.vcpus, 0, self.cpu_allocation_ratio) - self.vcpus_used

    @property
    def free_memory_mib(self) -> float:
        allocatable = placement.allocatable(
            self.memory_mib, self.reserved_host_memory_mib, self.ram_allocation_ratio
        )
        return allocatable - self.memory_mib_used

    @property
    def free_disk_gib(self) -> float:
        allocatable = placement.allocatable(
            self.disk_gib, self.reserved_host_disk_gib, self.disk_allocation_ratio
        )
        return allocatable - self.disk_gib_used

    def has_room_for(self, spec: RequestSpec) -> bool:
        """Whether the request's vCPUs, memory and disk fit in what is free (as the claim
        checks it, and the ResourceFilter)."""
        return (
            self.free_memory_mib >= spec.memory_mib
            and self.free_vcpus >= spec.vcpus
            and self.free_disk_gib >= spec.disk_gib
        )

    @property
    def availability_zone(self) -> str:
        """The host's zone: its ``topology.kubernetes.io/zone`` label, else "nova"."""
        return self.labels.get(AVAILABILITY_ZONE_LABEL) or DEFAULT_AVAILABILITY_ZONE

    def is_up(self, now: datetime.datetime, service_down_time_s: int) -> bool:
        """Nova's servicegroup check: a heartbeat younger than service_down_time."""
        if self.last_seen_up is None:
            return False
        age = now - self.last_seen_up
        return age.total_seconds() <= service_down_time_s
