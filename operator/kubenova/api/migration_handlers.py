"""The kopf handlers of InstanceMigrations: thin adapters to the conductor's migrations.

Loaded beside ``kubenova.api.handlers`` (``kubenova.cmd.operator`` imports it), whose startup
handler wires the runtime used here. An InstanceMigration is a one-shot request: the handler
acts on an object whose status says nothing yet, and the conductor writes every status after
that. The delete handler (kopf's finalizer) asks the conductor to undo a move that has not
happened yet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kubenova import log
from kubenova.api.runtime import Runtime
from kubenova.conductor.instance_migrations import MigrationRequest, request_id_of
from kubenova.k8s import resources
from kubenova.k8s.migrations import INSTANCE_MIGRATIONS


def _not_started(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> bool:
    """An InstanceMigration whose status has no phase yet: decided on the object alone, so
    the watch events of the conductor's own status writes never reach the handler."""
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return False
    return not (body.get("status") or {}).get("phase")


def request_of(body: kopf.Body | dict[str, Any]) -> MigrationRequest:
    meta, spec = body["metadata"], body.get("spec") or {}
    return MigrationRequest(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        instance=str(spec["instance"]),
        target_host=spec.get("targetHost"),
        type=str(spec.get("type") or "Cold"),
        status=dict(body.get("status") or {}),
    )


@kopf.on.event(resources.GROUP, resources.VERSION, INSTANCE_MIGRATIONS, when=_not_started)
async def instance_migration_created(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Start the move, or say why it is refused (the InstanceMigration's status)."""
    runtime: Runtime = memo["runtime"]
    request = request_of(body)

    def start() -> None:
        with log.request_context(request_id_of(request.uid)):
            runtime.conductor.migrations.create(request)

    await asyncio.get_running_loop().run_in_executor(None, start)


@kopf.on.delete(resources.GROUP, resources.VERSION, INSTANCE_MIGRATIONS)
def instance_migration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Undo the move if the guest has not moved yet."""
    runtime: Runtime = memo["runtime"]
    uid = body["metadata"]["uid"]
    with log.request_context(request_id_of(uid)):
        runtime.conductor.migrations.cancel(uid)
