"""Errors the database layer raises for conditions a caller is expected to handle.

Driver and connection errors are not wrapped: they surface as SQLAlchemy exceptions, and the
transient ones (deadlock, lock wait timeout) are retried by
:func:`kubenova.db.engine.retry_on_deadlock` before they ever reach a caller.
"""

from __future__ import annotations


class DBError(Exception):
    """Base class of every error raised on purpose by ``kubenova.db``."""


class InstanceNotFoundError(DBError):
    """No live (not soft-deleted) instance record has this uuid."""

    def __init__(self, uuid: str) -> None:
        super().__init__(f"instance {uuid} could not be found")
        self.uuid = uuid


class InstanceDeletedError(DBError):
    """The uuid belongs to an instance that was soft-deleted; it cannot be created again.

    Instance uuids are Kubernetes ``metadata.uid`` values, which are never reused, so meeting a
    deleted record on create means the caller is acting on a stale object.
    """

    def __init__(self, uuid: str) -> None:
        super().__init__(f"instance {uuid} was deleted and cannot be created again")
        self.uuid = uuid


class UnexpectedStateError(DBError):
    """A compare-and-swap update found the instance in another state than the caller expected.

    Nova's ``expected_task_state``: two actors racing on one instance (a delete arriving during
    a build) are told, rather than one silently overwriting the other.
    """

    def __init__(self, uuid: str, field: str, expected: object, actual: object) -> None:
        super().__init__(f"instance {uuid}: {field} is {actual!r}, expected one of {expected!r}")
        self.uuid = uuid
        self.field = field
        self.expected = expected
        self.actual = actual


class InstanceActionNotFoundError(DBError):
    """No instance action matches this instance and request id."""

    def __init__(self, uuid: str, request_id: str) -> None:
        super().__init__(f"no action for instance {uuid} with request id {request_id}")
        self.uuid = uuid
        self.request_id = request_id


class InstanceActionEventNotFoundError(DBError):
    """The action exists but has no event of this name."""

    def __init__(self, action_id: int, event: str) -> None:
        super().__init__(f"action {action_id} has no event {event!r}")
        self.action_id = action_id
        self.event = event


class AllocationConflictError(DBError):
    """The instance already holds allocations that differ from the claim being made.

    A claim is idempotent only for the same host and the same amounts; anything else (a claim
    on another host while the first is still held) must release first, or the usage would be
    counted twice.
    """

    def __init__(self, uuid: str, detail: str) -> None:
        super().__init__(f"instance {uuid} already holds other allocations: {detail}")
        self.uuid = uuid


class ComputeNodeConflictError(DBError):
    """A compute node report names a uuid that already belongs to another record."""
