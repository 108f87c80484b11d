"""The kopf handler of InstanceSnapshots: a thin adapter to the conductor's snapshots.

Loaded beside ``kubenova.api.handlers`` (``kubenova.cmd.operator`` imports both), whose
startup handler wires the runtime this one uses. An InstanceSnapshot is a one-shot request:
the handler acts on an object whose status says nothing yet, and the conductor writes every
status after that. Deleting one deletes nothing else (the Image outlives it), so there is no
delete handler and no finalizer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from kubenova import log
from kubenova.api.runtime import Runtime
from kubenova.conductor.snapshot_requests import SnapshotRequest, request_id_of
from kubenova.k8s import resources
from kubenova.k8s.snapshots import INSTANCE_SNAPSHOTS

LOG = logging.getLogger(__name__)

# An event handler is not retried by kopf: a database or apiserver away for a moment is waited
# for here (the conductor finds a snapshot it already started by its request id).
RETRY_DELAYS_S = (1.0, 5.0, 15.0)


def _not_started(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> bool:
    """An InstanceSnapshot whose status has no phase yet: decided on the object alone, so the
    watch events of the conductor's own status writes never reach the handler."""
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return False
    return not (body.get("status") or {}).get("phase")


def request_of(body: kopf.Body | dict[str, Any]) -> SnapshotRequest:
    meta, spec = body["metadata"], body.get("spec") or {}
    return SnapshotRequest(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        instance=str(spec["instance"]),
        image_name=str(spec["imageName"]),
        status=dict(body.get("status") or {}),
    )


@kopf.on.event(resources.GROUP, resources.VERSION, INSTANCE_SNAPSHOTS, when=_not_started)
async def instance_snapshot_created(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Start the snapshot, or say why it is refused (the InstanceSnapshot's status)."""
    runtime: Runtime = memo["runtime"]
    request = request_of(body)

    def start() -> None:
        with log.request_context(request_id_of(request.uid)):
            for delay in (*RETRY_DELAYS_S, None):
                try:
                    runtime.conductor.snapshots.create(request)
                    return
                except Exception:
                    if delay is None:
                        raise
                    LOG.warning(
                        "instancesnapshot %s/%s: could not start it; again in %.0f s",
                        request.namespace,
                        request.name,
                        delay,
                        exc_info=True,
                    )
                    time.sleep(delay)

    await asyncio.get_running_loop().run_in_executor(None, start)
