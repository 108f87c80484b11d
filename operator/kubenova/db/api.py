"""The operations the control plane performs on the ``nova`` database: the one module callers
import (``from kubenova.db import api``). The work lives in :mod:`~kubenova.db.instances`,
:mod:`~kubenova.db.actions`, :mod:`~kubenova.db.hosts` and :mod:`~kubenova.db.placement`.

Two calling styles, chosen by who must own the transaction:

* Most functions take a ``session`` first and run inside the caller's transaction, so a caller
  can combine several of them atomically. Such a caller owns the transaction, so it is the one
  to decorate with :func:`~kubenova.db.engine.retry_on_deadlock`::

      @engine.retry_on_deadlock
      def fail_build(session_factory, uuid, details, host):
          with engine.transaction(session_factory) as session:
              api.instance_update(session, uuid, vm_state="error", task_state=None)
              api.fault_create(session, uuid, 500, "build failed", details, host)

* :func:`claim_resources` and :func:`release_resources` take the session factory and own their
  transaction, because their correctness depends on what is locked, in which order, and on
  retrying the whole transaction after a deadlock (see :mod:`kubenova.db.placement`).

Times are aware UTC datetimes; soft-deleted rows are hidden unless ``read_deleted=True``.
"""

from __future__ import annotations

from kubenova.db.actions import (
    EVENT_RESULT_ERROR,
    EVENT_RESULT_SUCCESS,
    action_event_finish,
    action_event_start,
    action_finish,
    action_start,
    fault_create,
    fault_get_latest,
)
from kubenova.db.exceptions import (
    AllocationConflictError,
    ComputeNodeConflictError,
    DBError,
    InstanceActionEventNotFoundError,
    InstanceActionNotFoundError,
    InstanceDeletedError,
    InstanceNotFoundError,
    UnexpectedStateError,
)
from kubenova.db.hosts import (
    HostRecord,
    compute_node_get,
    compute_node_update_from_report,
    compute_nodes_list,
    service_get_all,
    service_is_up,
    service_update_heartbeat,
)
from kubenova.db.instances import (
    MAX_USER_DATA_B64,
    MAX_USER_DATA_BYTES,
    instance_create,
    instance_get,
    instance_get_all,
    instance_soft_delete,
    instance_update,
)
from kubenova.db.placement import (
    Usage,
    allocations_for_instance,
    claim_resources,
    release_resources,
    usage_by_host,
)

__all__ = [
    "EVENT_RESULT_ERROR",
    "EVENT_RESULT_SUCCESS",
    "MAX_USER_DATA_B64",
    "MAX_USER_DATA_BYTES",
    "AllocationConflictError",
    "ComputeNodeConflictError",
    "DBError",
    "HostRecord",
    "InstanceActionEventNotFoundError",
    "InstanceActionNotFoundError",
    "InstanceDeletedError",
    "InstanceNotFoundError",
    "UnexpectedStateError",
    "Usage",
    "action_event_finish",
    "action_event_start",
    "action_finish",
    "action_start",
    "allocations_for_instance",
    "claim_resources",
    "compute_node_get",
    "compute_node_update_from_report",
    "compute_nodes_list",
    "fault_create",
    "fault_get_latest",
    "instance_create",
    "instance_get",
    "instance_get_all",
    "instance_soft_delete",
    "instance_update",
    "release_resources",
    "service_get_all",
    "service_is_up",
    "service_update_heartbeat",
    "usage_by_host",
]
