"""One look at the stack for a burst's namespace: its Instance objects (apiserver), its records
and the claims on the suite's hosts (MariaDB), the hosts' Hypervisor status (state and audit)
and, for a real host, the domains its libvirt defines (``virsh list --all --uuid``).

It only reads. Every call is bounded in time, since the suite looks while a fault may have
taken the apiserver or MariaDB away: a look that fails raises, and the caller counts that look
as not converged.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Collection, Sequence
from typing import Any

import benchlib
import counts

#: Seconds an apiserver call may take before the look is given up.
API_TIMEOUT_S = 10
#: libvirt's URI for the real host's domains (the local stack's libvirtd).
LIBVIRT_URI = "qemu:///system"

#: Every record of the namespace, deleted ones included (they tell a leftover domain).
RECORDS_SQL = (
    "SELECT uuid, deleted, vm_state, task_state, host FROM instances WHERE namespace = :namespace"
)

#: Every instance holding allocations on the hosts ``:hosts`` (one row per instance and
#: host), and whether a live record backs it.
CLAIMS_SQL = (
    "SELECT DISTINCT a.instance_uuid, cn.host, "
    "EXISTS (SELECT 1 FROM instances i WHERE i.uuid = a.instance_uuid AND i.deleted = 0) "
    "FROM allocations a JOIN compute_nodes cn ON cn.id = a.compute_node_id "
    "WHERE cn.host IN :hosts"
)


@dataclasses.dataclass(frozen=True)
class Scope:
    """What one burst is observed over.

    ``hosts``: the Hypervisors its instances may land on; ``exclusive``: those only the
    suite uses (the simulated ones); ``libvirt_hosts``: those whose domains are read from
    this machine's libvirt (the real host).
    """

    namespace: str
    hosts: Sequence[str]
    exclusive: Collection[str]
    libvirt_hosts: Collection[str] = ()


def look(custom: Any, engine: Any, scope: Scope) -> counts.Observation:
    """The namespace's objects, records and claims, and the hosts' status, now."""
    listing = custom.list_namespaced_custom_object(
        benchlib.GROUP,
        benchlib.VERSION,
        scope.namespace,
        "instances",
        _request_timeout=API_TIMEOUT_S,
    )
    objects = [counts.InstanceObject.from_object(o) for o in listing.get("items", [])]
    hypervisors = custom.list_cluster_custom_object(
        benchlib.GROUP, benchlib.VERSION, "hypervisors", _request_timeout=API_TIMEOUT_S
    )
    wanted = set(scope.hosts)
    audits = [
        counts.HostAudit.from_object(o, exclusive=o["metadata"]["name"] in scope.exclusive)
        for o in hypervisors.get("items", [])
        if o["metadata"]["name"] in wanted
    ]
    records, claims = read_database(engine, scope.namespace, list(scope.hosts))
    domains = {host: libvirt_domains() for host in scope.libvirt_hosts}
    return counts.Observation(
        objects=objects,
        records=records,
        audits=audits,
        claims=claims,
        hosts=list(scope.hosts),
        domains=domains,
    )


def read_database(
    engine: Any, namespace: str, hosts: list[str]
) -> tuple[list[counts.InstanceRecord], list[counts.Claim]]:
    """The namespace's records and the hosts' claims, in one transaction (one snapshot)."""
    import sqlalchemy

    claims_query = sqlalchemy.text(CLAIMS_SQL).bindparams(
        sqlalchemy.bindparam("hosts", expanding=True)
    )
    with engine.connect() as connection, connection.begin():
        records = [
            counts.InstanceRecord(
                uuid=str(uuid),
                deleted=bool(deleted),
                vm_state=str(vm_state),
                task_state=task_state,
                host=host,
            )
            for uuid, deleted, vm_state, task_state, host in connection.execute(
                sqlalchemy.text(RECORDS_SQL), {"namespace": namespace}
            )
        ]
        claims = [
            counts.Claim(instance_uuid=str(uuid), host=str(host), record_live=bool(live))
            for uuid, host, live in connection.execute(claims_query, {"hosts": hosts})
        ]
    return records, claims


def claims_of(engine: Any, uuids: Collection[str]) -> set[str]:
    """Which of ``uuids`` still hold allocations (on any host)."""
    import sqlalchemy

    if not uuids:
        return set()
    query = sqlalchemy.text(
        "SELECT DISTINCT instance_uuid FROM allocations WHERE instance_uuid IN :uuids"
    ).bindparams(sqlalchemy.bindparam("uuids", expanding=True))
    with engine.connect() as connection:
        return {str(row[0]) for row in connection.execute(query, {"uuids": sorted(uuids)})}


def parse_uuid_list(text: str) -> frozenset[str]:
    """The uuids of ``virsh list --all --uuid``: one a line, blank lines left out."""
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def libvirt_domains(uri: str = LIBVIRT_URI) -> frozenset[str]:
    """The uuid of every domain this machine's libvirtd defines, running or not."""
    result = subprocess.run(
        ["virsh", "-q", "-c", uri, "list", "--all", "--uuid"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise benchlib.BenchError(
            f"virsh list on {uri} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return parse_uuid_list(result.stdout)


def running_domains(custom: Any, hosts: Collection[str]) -> dict[str, int | None]:
    """Each host's ``status.runningInstances`` (the domains its agent last reported); None
    while it is down or has not said."""
    listing = custom.list_cluster_custom_object(
        benchlib.GROUP, benchlib.VERSION, "hypervisors", _request_timeout=API_TIMEOUT_S
    )
    found: dict[str, int | None] = dict.fromkeys(hosts)
    for obj in listing.get("items", []):
        name = obj["metadata"]["name"]
        if name in found:
            value = (obj.get("status") or {}).get("runningInstances")
            found[name] = int(value) if value is not None else None
    return found
