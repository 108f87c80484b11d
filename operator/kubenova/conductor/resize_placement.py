"""Where a resize goes: the scheduler picks a destination for the new flavor among the hosts
that pass its filters (the instance's own host too, unless ``allow_resize_to_same_host`` is
off), keeping the instance's zone and server group, and the claim holds both hosts
(:func:`kubenova.db.moves.claim_move`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubenova.compute import states
from kubenova.conductor import request_spec
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.k8s.client import KubeClient
from kubenova.scheduler.manager import SchedulerManager

#: Why a host was passed over: its agent gives no migration URI, so no disk can reach it.
NO_MIGRATION_URI = "no migration URI"


@dataclasses.dataclass(frozen=True)
class Resize:
    """A resize to place: the instance, its new flavor, its spec, and the migration's ids."""

    record: models.Instance
    flavor: Mapping[str, Any]
    spec: Mapping[str, Any]
    request_id: str
    migration_uuid: str
    #: A resize (the same host allowed), or a cold migration or an evacuation (always
    #: another host).
    migration_type: str = moves.RESIZE
    #: A cold migration's chosen destination (checked by the filters that run on a forced
    #: host: up, enabled, room).
    target_host: str | None = None
    #: The InstanceMigration that asked for it.
    object_name: str | None = None
    object_uid: str | None = None


def claim_destination(
    settings: OperatorSettings,
    session_factory: db_engine.SessionFactory,
    kube: KubeClient,
    scheduler: SchedulerManager,
    resize: Resize,
) -> str:
    """Schedule the new flavor and claim the destination; the destination's host. Raises
    NoValidHost when no host takes it, ValueError for a server group that is gone."""
    record, flavor, spec = resize.record, resize.flavor, resize.spec
    request_id, migration_uuid = resize.request_id, resize.migration_uuid
    group = None
    group_name = spec.get("serverGroup")
    if group_name:
        group_object = kube.get_server_group(record.namespace, group_name)
        if group_object is None:
            raise ValueError(f"spec.serverGroup: ServerGroup {group_name!r} does not exist")
        group = request_spec.server_group(session_factory, group_object, record.uuid)
    # The zone the instance is in holds; a forced host placed its build, not its move.
    placement_spec = {
        **spec,
        "availabilityZone": spec.get("availabilityZone") or record.availability_zone,
        "forcedHost": resize.target_host,
    }
    stays = resize.migration_type == moves.RESIZE and settings.allow_resize_to_same_host
    ignore = () if stays else (record.host or "",)
    wanted = request_spec.build(
        instance_uuid=record.uuid,
        spec=placement_spec,
        flavor=dict(flavor),
        image=dict(record.image),
        server_group=group,
        ignore_hosts=ignore,
    )
    group_claim = request_spec.group_claim(wanted)
    power_on = record.vm_state == states.ACTIVE

    # An evacuation copies nothing between hosts (it builds from the image), so it needs no
    # migration URI on the destination.
    copies_disk = resize.migration_type != moves.EVACUATION

    def claim(_spec: Any, host: str) -> db_api.ClaimResult:
        if copies_disk and host != record.host and not _takes_moves(session_factory, host):
            return db_api.ClaimResult(NO_MIGRATION_URI)
        return moves.claim_move(
            session_factory,
            moves.MoveRequest(
                migration_uuid=migration_uuid,
                instance_uuid=record.uuid,
                migration_type=resize.migration_type,
                dest_host=host,
                new_usage=db_api.Usage(
                    vcpus=int(flavor["vcpus"]),
                    memory_mib=int(flavor["memory_mib"]),
                    disk_gib=int(flavor["disk_gib"]),
                ),
                old_flavor=dict(record.flavor),
                new_flavor=dict(flavor),
                request_id=request_id,
                power_on=power_on,
                server_group=group_claim,
                object_name=resize.object_name,
                object_uid=resize.object_uid,
            ),
        )

    return scheduler.schedule(wanted, claim)


def _takes_moves(session_factory: db_engine.SessionFactory, host: str) -> bool:
    """Whether another host's agent can reach ``host``'s hypervisor (its migration URI)."""
    with db_engine.transaction(session_factory) as session:
        node = db_api.compute_node_get(session, host)
        return node is not None and bool(node.migration_uri)
