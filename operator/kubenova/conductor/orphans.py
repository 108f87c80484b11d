"""Records whose Instance object is gone: deleted as their object's delete would have.

An Instance's finalizer keeps its object until the conductor has deleted its record, so a
live record without an object means the objects were lost behind the finalizer's back: the
cluster was made anew over a database that outlived it (its etcd wiped, its namespaces
force-emptied), or an object was deleted after its finalizer was removed by hand. Such a
record holds its claim, its group membership and its host's domain for ever. This periodic
sweep gives it the delete its object no longer can: the domain is terminated on its host and
the record deleted, through the same road as a delete (``ComputeTaskManager.delete_instance``).

The apiserver's LIST is the truth, not a cache. A record is only reaped when two sweeps in a
row found it without an object and it is older than ``grace_s``, so a record written a moment
before its object became visible, or a LIST that failed, costs nothing.
"""

from __future__ import annotations

import datetime
import logging

from kubenova.conductor.compute_tasks import ComputeTaskManager
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.k8s.client import KubeClient
from kubenova.rpc import envelope

LOG = logging.getLogger(__name__)


class OrphanSweeper:
    """Deletes the live records no Instance object stands for any more."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        tasks: ComputeTaskManager,
        *,
        grace_s: float,
    ) -> None:
        self._session_factory = session_factory
        self._kube = kube
        self._tasks = tasks
        self._grace = datetime.timedelta(seconds=grace_s)
        # Uuids the previous sweep found without an object.
        self._suspects: set[str] = set()

    def sweep(self) -> list[str]:
        """Delete the records found without an object by this sweep and the previous one;
        their uuids (the deletes that wait for their host to terminate included)."""
        objects = self._kube.list_instance_uids()
        cutoff = datetime.datetime.now(datetime.UTC) - self._grace
        with db_engine.transaction(self._session_factory) as session:
            suspects = db_api.instance_uuids_created_before(session, cutoff) - objects
        confirmed, self._suspects = sorted(suspects & self._suspects), suspects
        for instance_uuid in confirmed:
            LOG.warning("instance %s has no Instance object any more: deleting it", instance_uuid)
            self._tasks.delete_instance(instance_uuid, envelope.new_request_id())
        return confirmed
