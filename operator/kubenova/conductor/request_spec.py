"""From an Instance's spec, its flavor and image snapshots and its ServerGroup to the
scheduler's RequestSpec, and the server group part of the claim."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.scheduler.host_state import RequestSpec, ServerGroupSpec


def build(
    *,
    instance_uuid: str,
    spec: dict[str, Any],
    flavor: dict[str, Any],
    image: dict[str, Any],
    server_group: ServerGroupSpec | None,
    ignore_hosts: Iterable[str] = (),
) -> RequestSpec:
    """The request the scheduler places; ``flavor`` and ``image`` are the record's snapshots."""
    return RequestSpec(
        instance_uuid=instance_uuid,
        vcpus=flavor["vcpus"],
        memory_mib=flavor["memory_mib"],
        disk_gib=flavor["disk_gib"],
        availability_zone=spec.get("availabilityZone"),
        node_selector=dict(spec.get("nodeSelector") or {}),
        flavor_extra_specs=dict(flavor.get("extra_specs") or {}),
        image_architecture=image.get("architecture"),
        image_hypervisor_type=image.get("hypervisor_type"),
        server_group=server_group,
        forced_host=spec.get("forcedHost"),
        ignore_hosts=frozenset(ignore_hosts),
    )


def server_group(
    session_factory: db_engine.SessionFactory,
    group_object: dict[str, Any],
    instance_uuid: str,
) -> ServerGroupSpec:
    """Record the ServerGroup object and read where its other members run."""
    meta, group_spec = group_object["metadata"], group_object["spec"]
    max_per_host = (group_spec.get("rules") or {}).get("maxServerPerHost")
    with db_engine.transaction(session_factory) as session:
        record = db_api.server_group_upsert(
            session,
            uuid=meta["uid"],
            name=meta["name"],
            namespace=meta["namespace"],
            policy=group_spec["policy"],
            max_server_per_host=max_per_host,
        )
        member_hosts = db_api.server_group_member_hosts(
            session, record.id, exclude_instance=instance_uuid
        )
        return ServerGroupSpec(
            name=record.name,
            policy=record.policy,  # type: ignore[arg-type]
            max_server_per_host=record.max_server_per_host,
            member_hosts=member_hosts,
            group_id=record.id,
        )


def group_claim(spec: RequestSpec) -> db_api.ServerGroupClaim | None:
    """What the claim must lock and check for the request's server group."""
    group = spec.server_group
    if group is None or group.group_id is None:
        return None
    return db_api.ServerGroupClaim(
        group_id=group.group_id,
        policy=group.policy,
        max_server_per_host=group.max_server_per_host,
    )
