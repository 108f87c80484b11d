"""The operations the control plane performs on the ``nova`` database: the one module callers
import (``from kubenova.db import api``). The work lives in :mod:`~kubenova.db.instances`,
:mod:`~kubenova.db.actions`, :mod:`~kubenova.db.hosts`, :mod:`~kubenova.db.host_reports`,
:mod:`~kubenova.db.claims`, :mod:`~kubenova.db.server_groups` and :mod:`~kubenova.db.audit`.

Two calling styles, chosen by who must own the transaction:

* Most functions take a ``session`` first and run inside the caller's transaction, so a caller
  can combine several of them atomically. Such a caller owns the transaction, so it is the one
  to decorate with :func:`~kubenova.db.engine.retry_on_deadlock`::

      @engine.retry_on_deadlock
      def fail_build(session_factory, uuid, code, details, host):
          with engine.transaction(session_factory) as session:
              api.instance_update(session, uuid, vm_state="error", task_state=None)
              api.fault_create(session, uuid, code, "build failed", details, host)

* :func:`claim_resources` and :func:`release_resources` take the session factory and own their
  transaction, because their correctness depends on what is locked, in which order, and on
  retrying the whole transaction after a deadlock (see :mod:`kubenova.db.claims`).
  A claim into a server group (``server_group=ServerGroupClaim(...)``) enforces the group's
  hard policy in that same transaction.

Lock order, for callers combining functions in one transaction: ``instances`` rows, then
``server_groups`` rows, then ``compute_nodes`` rows, then the rows that hang off them
(allocations, members). E.g. record a build failure on a host after updating the instance,
not before.

Times are aware UTC datetimes; soft-deleted rows are hidden unless ``read_deleted=True``.
"""

from __future__ import annotations

from kubenova.db.actions import (
    EVENT_RESULT_ERROR,
    EVENT_RESULT_SUCCESS,
    action_event_finish,
    action_event_record,
    action_event_start,
    action_events,
    action_finish,
    action_finish_with_event,
    action_get,
    action_latest_unfinished,
    action_start,
    actions_unfinished_of_deleted,
    fault_create,
    fault_get_latest,
)
from kubenova.db.audit import (
    UnrecordedDomains,
    UsageDiscrepancy,
    instances_not_reported_by_host,
    reported_without_live_record_by_host,
    usage_audit,
)
from kubenova.db.claims import (
    CLAIMED,
    ClaimResult,
    RecordNewInstance,
    Usage,
    claim_resources,
    release_resources,
)
from kubenova.db.exceptions import (
    AllocationConflictError,
    ComputeNodeConflictError,
    DBError,
    InstanceActionEventNotFoundError,
    InstanceActionNotFoundError,
    InstanceDeletedError,
    InstanceNotFoundError,
    ServerGroupConflictError,
    ServerGroupDeletedError,
    ServerGroupNotFoundError,
    ServerGroupPolicyImmutableError,
    UnexpectedStateError,
)
from kubenova.db.host_reports import (
    ReportedNode,
    compute_node_update_from_report,
    service_record_heartbeat,
)
from kubenova.db.hosts import (
    HostCapacity,
    HostRecord,
    compute_node_allocation_ratios,
    compute_node_capacities,
    compute_node_clear_build_failures,
    compute_node_delete,
    compute_node_get,
    compute_node_record_build_failure,
    compute_node_set_allocation_ratios,
    compute_node_set_disabled,
    compute_nodes_list,
    host_is_up,
    service_get,
    service_is_up,
    service_mark_stopped,
)
from kubenova.db.instances import (
    MAX_USER_DATA_B64,
    MAX_USER_DATA_BYTES,
    instance_count_by_host,
    instance_get,
    instance_get_all,
    instance_insert,
    instance_lock,
    instance_set,
    instance_soft_delete,
    instance_update,
    instance_update_unread,
    instance_uuids_created_before,
    instances_in_task_states,
)
from kubenova.db.server_groups import (
    ServerGroupClaim,
    ServerGroupUsage,
    server_group_get,
    server_group_member_hosts,
    server_group_members,
    server_group_remove_member,
    server_group_upsert,
    server_group_usage_all,
    validate_policy,
)

__all__ = [
    "CLAIMED",
    "EVENT_RESULT_ERROR",
    "EVENT_RESULT_SUCCESS",
    "MAX_USER_DATA_B64",
    "MAX_USER_DATA_BYTES",
    "AllocationConflictError",
    "ClaimResult",
    "ComputeNodeConflictError",
    "DBError",
    "HostCapacity",
    "HostRecord",
    "InstanceActionEventNotFoundError",
    "InstanceActionNotFoundError",
    "InstanceDeletedError",
    "InstanceNotFoundError",
    "RecordNewInstance",
    "ReportedNode",
    "ServerGroupClaim",
    "ServerGroupConflictError",
    "ServerGroupDeletedError",
    "ServerGroupNotFoundError",
    "ServerGroupPolicyImmutableError",
    "ServerGroupUsage",
    "UnexpectedStateError",
    "UnrecordedDomains",
    "Usage",
    "UsageDiscrepancy",
    "action_event_finish",
    "action_event_record",
    "action_event_start",
    "action_events",
    "action_finish",
    "action_finish_with_event",
    "action_get",
    "action_latest_unfinished",
    "action_start",
    "actions_unfinished_of_deleted",
    "claim_resources",
    "compute_node_allocation_ratios",
    "compute_node_capacities",
    "compute_node_clear_build_failures",
    "compute_node_delete",
    "compute_node_get",
    "compute_node_record_build_failure",
    "compute_node_set_allocation_ratios",
    "compute_node_set_disabled",
    "compute_node_update_from_report",
    "compute_nodes_list",
    "fault_create",
    "fault_get_latest",
    "host_is_up",
    "instance_count_by_host",
    "instance_get",
    "instance_get_all",
    "instance_insert",
    "instance_lock",
    "instance_set",
    "instance_soft_delete",
    "instance_update",
    "instance_update_unread",
    "instance_uuids_created_before",
    "instances_in_task_states",
    "instances_not_reported_by_host",
    "release_resources",
    "reported_without_live_record_by_host",
    "server_group_get",
    "server_group_member_hosts",
    "server_group_members",
    "server_group_remove_member",
    "server_group_upsert",
    "server_group_usage_all",
    "service_get",
    "service_is_up",
    "service_mark_stopped",
    "service_record_heartbeat",
    "usage_audit",
    "validate_policy",
]
