"""The benchmark hosts' side: their names, waiting for them to be up, and their claims and
usage as MariaDB has them (what the overcommit and fill figures are read from)."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import benchlib
from benchlib import BenchError

#: Placement's resource classes, in the order of every per-resource tuple below.
RESOURCES = ("VCPU", "MEMORY_MB", "DISK_GB")
MEMORY = RESOURCES.index("MEMORY_MB")


def host_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(1, count + 1)]


def wait_for_hosts(custom: Any, hosts: list[str], since: float | None, timeout: float) -> None:
    """Until every host's Hypervisor is up (with a heartbeat after ``since``, when given)."""
    wanted = set(hosts)
    deadline = time.monotonic() + timeout
    up: set[str] = set()
    while time.monotonic() < deadline:
        listing = custom.list_cluster_custom_object(benchlib.GROUP, benchlib.VERSION, "hypervisors")
        up = set()
        for obj in listing.get("items", []):
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            if name not in wanted or status.get("state") != "up":
                continue
            if since is not None:
                beat = status.get("lastHeartbeat")
                if not beat or _epoch(beat) < since - 1:
                    continue
            up.add(name)
        if up == wanted:
            return
        time.sleep(1)
    missing = sorted(wanted - up)
    raise BenchError(f"{len(missing)} of {len(hosts)} hosts are not up: {missing[:5]}...")


def _epoch(timestamp: str) -> float:
    return (
        datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


class NodeUsage(NamedTuple):
    """One compute node as MariaDB has it, per resource (:data:`RESOURCES` order)."""

    host: str
    #: Allocatable: ``vcpus x ratio``, ``(total - reserved) x ratio`` for memory and disk.
    capacity: tuple[float, float, float]
    #: The node's ``*_used`` columns.
    used: tuple[int, int, int]
    #: The sum of its allocations' ``used``, per resource class.
    allocated: tuple[int, int, int]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> NodeUsage:
        """From a row of :data:`NODE_USAGE_SQL`."""
        return cls(
            str(row[0]),
            (float(row[1]), float(row[2]), float(row[3])),
            (int(row[4]), int(row[5]), int(row[6])),
            (int(row[7]), int(row[8]), int(row[9])),
        )

    def overcommitted(self) -> bool:
        """Whether its usage or its allocations exceed its capacity for some resource."""
        return any(
            used > capacity or allocated > capacity
            for used, allocated, capacity in zip(
                self.used, self.allocated, self.capacity, strict=True
            )
        )

    def free(self) -> tuple[float, ...]:
        """Capacity left per resource, by whichever of usage and allocations is higher."""
        return tuple(
            capacity - max(used, allocated)
            for used, allocated, capacity in zip(
                self.used, self.allocated, self.capacity, strict=True
            )
        )


def _allocated(resource_class: str) -> str:
    return (
        "(SELECT COALESCE(SUM(a.used), 0) FROM allocations a "
        f"WHERE a.compute_node_id = cn.id AND a.resource_class = '{resource_class}')"
    )


#: Every live compute node of the hosts ``:hosts``, as :meth:`NodeUsage.from_row` reads it.
NODE_USAGE_SQL = (
    "SELECT cn.host, cn.vcpus * cn.cpu_allocation_ratio, "
    "(cn.memory_mib - cn.reserved_host_memory_mib) * cn.ram_allocation_ratio, "
    "(cn.local_gb - cn.reserved_host_disk_gib) * cn.disk_allocation_ratio, "
    "cn.vcpus_used, cn.memory_mib_used, cn.local_gb_used, "
    + ", ".join(_allocated(resource) for resource in RESOURCES)
    + " FROM compute_nodes cn WHERE cn.deleted = 0 AND cn.host IN :hosts ORDER BY cn.host"
)


def node_usage(engine: Any, hosts: list[str]) -> list[NodeUsage]:
    """The hosts' compute nodes as MariaDB has them now (a host without one is left out)."""
    import sqlalchemy

    query = sqlalchemy.text(NODE_USAGE_SQL).bindparams(
        sqlalchemy.bindparam("hosts", expanding=True)
    )
    with engine.connect() as connection:
        return [NodeUsage.from_row(row) for row in connection.execute(query, {"hosts": hosts})]


def overcommitted(nodes: Sequence[NodeUsage]) -> list[str]:
    """The hosts whose usage or allocations exceed their capacity."""
    return [node.host for node in nodes if node.overcommitted()]


def mismatched(nodes: Sequence[NodeUsage]) -> list[str]:
    """The hosts whose ``*_used`` columns differ from the sum of their allocations."""
    return [node.host for node in nodes if node.used != node.allocated]


def fill(nodes: Sequence[NodeUsage], adding: Sequence[int] = (0, 0, 0)) -> dict[str, float]:
    """Per resource class: the nodes' allocations (plus ``adding``, per resource) / their
    allocatable capacity, each summed over the nodes; NaN for a resource none of them has."""
    result: dict[str, float] = {}
    for index, resource in enumerate(RESOURCES):
        capacity = sum(node.capacity[index] for node in nodes)
        allocated = sum(node.allocated[index] for node in nodes) + adding[index]
        result[resource] = allocated / capacity if capacity > 0 else math.nan
    return result


def fill_ratio(fills: dict[str, float]) -> float:
    """The fullest resource's fill (NaN when none is known)."""
    known = [value for value in fills.values() if not math.isnan(value)]
    return max(known, default=math.nan)


def wait_hosts_free(
    engine: Any, hosts: list[str], before: Sequence[NodeUsage], timeout: float
) -> list[str]:
    """Until every host's usage and allocations are back to ``before``; returns the hosts
    still holding more after ``timeout`` (allocations a delete did not free)."""
    wanted = {node.host: (node.used, node.allocated) for node in before}
    deadline = time.monotonic() + timeout
    held: list[str] = []
    while True:
        held = [
            node.host
            for node in node_usage(engine, hosts)
            if (node.used, node.allocated) != wanted.get(node.host, (node.used, node.allocated))
        ]
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(1)
