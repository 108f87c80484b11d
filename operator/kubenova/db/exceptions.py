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


class ServerGroupNotFoundError(DBError):
    """No live server group has this id or uuid (it was never recorded, or was deleted)."""

    def __init__(self, ref: int | str) -> None:
        super().__init__(f"server group {ref} could not be found")
        self.ref = ref


class ServerGroupDeletedError(DBError):
    """The uuid belongs to a server group that was deleted; it cannot be recorded again.

    As for instances, the uuid is a Kubernetes uid, never reused: meeting a deleted record
    means the caller acts on a stale object.
    """

    def __init__(self, uuid: str) -> None:
        super().__init__(f"server group {uuid} was deleted and cannot be recorded again")
        self.uuid = uuid


class ServerGroupConflictError(DBError):
    """Another live server group already holds this namespace and name.

    Kubernetes keeps one object per name, so the other record belongs to an object that is
    gone but whose deletion was never recorded; delete that record (``existing_uuid``) first.
    """

    def __init__(self, namespace: str, name: str, uuid: str, existing_uuid: str) -> None:
        super().__init__(
            f"server group {namespace}/{name} is recorded with uuid {existing_uuid}, "
            f"not {uuid}: delete the stale record first"
        )
        self.namespace = namespace
        self.name = name
        self.uuid = uuid
        self.existing_uuid = existing_uuid


class ServerGroupPolicyImmutableError(DBError):
    """The policy of a server group that has members cannot change.

    The members were placed under the old policy; a new one would not move them, so it would
    describe a placement that is not true.
    """

    def __init__(self, uuid: str, policy: str, requested: str, members: int) -> None:
        super().__init__(
            f"server group {uuid} has {members} member(s): its policy stays {policy!r}, "
            f"it cannot become {requested!r}"
        )
        self.uuid = uuid
        self.policy = policy
        self.requested = requested
        self.members = members
