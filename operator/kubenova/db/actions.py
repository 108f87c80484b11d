"""Instance action history (actions and their events) and instance faults.

Every function runs in the caller's transaction (see :mod:`kubenova.db.api`). Writers are
idempotent where a retried handler or a duplicated message would otherwise write twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import exceptions, instances, models

EVENT_RESULT_SUCCESS: Final = "Success"
EVENT_RESULT_ERROR: Final = "Error"

# Nova truncates fault messages to the column's size rather than failing the fault write.
MAX_FAULT_MESSAGE: Final = 255


_INSERT_ACTION: Final = models.table(models.InstanceAction).insert()


def action_start(
    session: orm.Session,
    uuid: str,
    action: str,
    request_id: str,
    message: str | None = None,
    *,
    instance: models.Instance | None = None,
    new_instance: bool = False,
) -> models.InstanceAction:
    """Record that ``action`` began for an instance on behalf of ``request_id``.

    Idempotent on (instance, action, request id), since handlers are retried: the existing
    action is returned rather than a duplicate written. A caller that already holds the
    live record in this transaction passes it as ``instance`` to save reading it again;
    one that inserted that record in this very transaction also says ``new_instance``,
    since no action of it can exist yet, which saves the idempotency read too.
    """
    if not (new_instance and instance is not None and instance.uuid == uuid):
        existing = session.scalars(
            sa.select(models.InstanceAction)
            .where(
                models.InstanceAction.instance_uuid == uuid,
                models.InstanceAction.request_id == request_id,
                models.InstanceAction.action == action,
                models.live(models.InstanceAction),
            )
            .order_by(models.InstanceAction.id.desc())
            .limit(1)
        ).first()
        if existing is not None:
            return existing
    if instance is None or instance.uuid != uuid or instance.deleted:
        instance = instances.instance_get(session, uuid)
    if instance is None:
        raise exceptions.InstanceNotFoundError(uuid)
    now = models.utcnow()
    values = {
        "instance_uuid": uuid,
        "action": action,
        "request_id": request_id,
        "project_id": instance.project_id,
        "start_time": now,
        "created_at": now,
        "finish_time": None,
        "message": message,
        "deleted": 0,
    }
    # One Core INSERT: the unit of work would cost more than the statement.
    result = session.connection().execute(_INSERT_ACTION, values)
    (new_id,) = result.inserted_primary_key or (None,)
    return models.InstanceAction(id=new_id, **values)


def _action_get(session: orm.Session, uuid: str, request_id: str) -> models.InstanceAction:
    action = session.scalars(
        sa.select(models.InstanceAction)
        .where(
            models.InstanceAction.instance_uuid == uuid,
            models.InstanceAction.request_id == request_id,
            models.live(models.InstanceAction),
        )
        .order_by(models.InstanceAction.id.desc())
        .limit(1)
    ).first()
    if action is None:
        raise exceptions.InstanceActionNotFoundError(uuid, request_id)
    return action


def action_finish(
    session: orm.Session, uuid: str, request_id: str, message: str | None = None
) -> models.InstanceAction:
    """Set the finish time of the newest action of ``request_id``.

    An ``Error`` message set by a failed event is kept unless ``message`` is given. Raises
    :class:`InstanceActionNotFoundError`.
    """
    action = _action_get(session, uuid, request_id)
    if action.finish_time is None:
        action.finish_time = models.utcnow()
    if message is not None:
        action.message = message
    session.flush()
    return action


def action_event_start(
    session: orm.Session, uuid: str, request_id: str, event: str, host: str | None = None
) -> models.InstanceActionEvent:
    """Record that ``event`` began on ``host`` as part of the action of ``request_id``.

    A reschedule runs the same event again on another host, so a new row is written unless an
    unfinished one for the same event and host exists (a duplicated message), which is returned.
    """
    action = _action_get(session, uuid, request_id)
    existing = session.scalars(
        sa.select(models.InstanceActionEvent)
        .where(
            models.InstanceActionEvent.action_id == action.id,
            models.InstanceActionEvent.event == event,
            models.InstanceActionEvent.finish_time.is_(None),
            _host_is(models.InstanceActionEvent.host, host),
        )
        .order_by(models.InstanceActionEvent.id.desc())
        .limit(1)
    ).first()
    if existing is not None:
        return existing
    record = models.InstanceActionEvent(
        action_id=action.id, event=event, host=host, start_time=models.utcnow()
    )
    session.add(record)
    session.flush()
    return record


def action_event_finish(
    session: orm.Session,
    uuid: str,
    request_id: str,
    event: str,
    result: str,
    *,
    host: str | None = None,
    traceback: str | None = None,
    details: str | None = None,
) -> models.InstanceActionEvent:
    """Finish the newest ``event`` of the action of ``request_id`` with ``result``.

    ``result`` is ``Success`` or ``Error``; an ``Error`` also sets the action's message to
    ``"Error"``, as Nova does. Finishing an event that is already finished returns it unchanged
    (duplicated messages). Raises :class:`InstanceActionEventNotFoundError` when it never started.
    """
    if result not in (EVENT_RESULT_SUCCESS, EVENT_RESULT_ERROR):
        raise ValueError(f"event result must be {EVENT_RESULT_SUCCESS} or {EVENT_RESULT_ERROR}")
    action = _action_get(session, uuid, request_id)
    stmt = sa.select(models.InstanceActionEvent).where(
        models.InstanceActionEvent.action_id == action.id,
        models.InstanceActionEvent.event == event,
    )
    if host is not None:
        stmt = stmt.where(models.InstanceActionEvent.host == host)
    record = session.scalars(
        stmt.order_by(
            # The unfinished one first, then the newest.
            models.InstanceActionEvent.finish_time.is_(None).desc(),
            models.InstanceActionEvent.id.desc(),
        ).limit(1)
    ).first()
    if record is None:
        raise exceptions.InstanceActionEventNotFoundError(action.id, event)
    if record.finish_time is not None:
        return record
    record.finish_time = models.utcnow()
    record.result = result
    record.traceback = traceback
    record.details = details
    if result == EVENT_RESULT_ERROR:
        action.message = EVENT_RESULT_ERROR
    session.flush()
    return record


def _host_is(
    column: orm.InstrumentedAttribute[str | None], host: str | None
) -> sa.ColumnElement[bool]:
    return column.is_(None) if host is None else column == host


def fault_create(
    session: orm.Session,
    uuid: str,
    code: int,
    message: str,
    details: str | None,
    host: str | None,
) -> models.InstanceFault:
    """Record why an instance failed. ``message`` is cut to 255 characters (the full text
    belongs in ``details``). Raises :class:`InstanceNotFoundError` for an unknown uuid."""
    if instances.instance_get(session, uuid, read_deleted=True) is None:
        raise exceptions.InstanceNotFoundError(uuid)
    fault = models.InstanceFault(
        instance_uuid=uuid,
        code=code,
        message=message[:MAX_FAULT_MESSAGE],
        details=details,
        host=host,
    )
    session.add(fault)
    session.flush()
    return fault


def fault_get_latest(session: orm.Session, uuid: str) -> models.InstanceFault | None:
    """The newest fault of an instance (what the status shows), or None."""
    return session.scalars(
        sa.select(models.InstanceFault)
        .where(models.InstanceFault.instance_uuid == uuid, models.live(models.InstanceFault))
        .order_by(models.InstanceFault.id.desc())
        .limit(1)
    ).first()


def action_event_record(
    session: orm.Session,
    uuid: str,
    request_id: str,
    event: str,
    result: str,
    *,
    host: str | None,
    start_time: dt.datetime | None,
    finish_time: dt.datetime,
    details: str | None = None,
) -> tuple[models.InstanceAction, models.InstanceActionEvent]:
    """Record an event that began and ended elsewhere (a host reports both times in one
    message), as part of the action of ``request_id``; ``start_time`` None is the action's
    start. An ``Error`` also sets the action's message to ``"Error"``, as
    :func:`action_event_finish` does. Returns the action and the event. Raises
    :class:`InstanceActionNotFoundError` when there is no such action."""
    if result not in (EVENT_RESULT_SUCCESS, EVENT_RESULT_ERROR):
        raise ValueError(f"event result must be {EVENT_RESULT_SUCCESS} or {EVENT_RESULT_ERROR}")
    action = _action_get(session, uuid, request_id)
    record = models.InstanceActionEvent(
        action_id=action.id,
        event=event,
        host=host,
        start_time=start_time if start_time is not None else action.start_time,
        finish_time=finish_time,
        result=result,
        details=details,
    )
    session.add(record)
    if result == EVENT_RESULT_ERROR:
        action.message = EVENT_RESULT_ERROR
    session.flush()
    return action, record


def action_get(session: orm.Session, uuid: str, request_id: str) -> models.InstanceAction | None:
    """The newest live action of ``request_id`` for the instance, or None."""
    try:
        return _action_get(session, uuid, request_id)
    except exceptions.InstanceActionNotFoundError:
        return None


def action_events(session: orm.Session, action_id: int) -> list[models.InstanceActionEvent]:
    """The events of one action, oldest first."""
    return list(
        session.scalars(
            sa.select(models.InstanceActionEvent)
            .where(
                models.InstanceActionEvent.action_id == action_id,
                models.live(models.InstanceActionEvent),
            )
            .order_by(models.InstanceActionEvent.id)
        )
    )


def action_latest_unfinished(session: orm.Session, uuid: str) -> models.InstanceAction | None:
    """The newest action of the instance that has not finished, or None."""
    return session.scalars(
        sa.select(models.InstanceAction)
        .where(
            models.InstanceAction.instance_uuid == uuid,
            models.InstanceAction.finish_time.is_(None),
            models.live(models.InstanceAction),
        )
        .order_by(models.InstanceAction.id.desc())
        .limit(1)
    ).first()


def actions_unfinished_of_deleted(
    session: orm.Session, action: str
) -> list[tuple[models.InstanceAction, models.Instance]]:
    """The unfinished ``action``s of soft-deleted instances, oldest first, with their records:
    operations whose instance went before they ended (its delete replaced the task state)."""
    rows = session.execute(
        sa.select(models.InstanceAction, models.Instance)
        .join(models.Instance, models.Instance.uuid == models.InstanceAction.instance_uuid)
        .where(
            models.InstanceAction.action == action,
            models.InstanceAction.finish_time.is_(None),
            models.live(models.InstanceAction),
            sa.not_(models.live(models.Instance)),
        )
        .order_by(models.InstanceAction.id)
    )
    return [(found, record) for found, record in rows]


_ACTIONS: Final = models.table(models.InstanceAction)
_EVENTS: Final = models.table(models.InstanceActionEvent)


def _newest_action_id(uuid: str, request_id: str, action: str) -> sa.ScalarSelect[int]:
    return (
        sa.select(_ACTIONS.c.id)
        .where(
            _ACTIONS.c.instance_uuid == uuid,
            _ACTIONS.c.request_id == request_id,
            _ACTIONS.c.action == action,
            _ACTIONS.c.deleted == 0,
        )
        .order_by(_ACTIONS.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def action_finish_with_event(
    session: orm.Session,
    uuid: str,
    request_id: str,
    action: str,
    event: str,
    result: str,
    *,
    host: str | None,
    finish_time: dt.datetime,
    details: str | None = None,
) -> bool:
    """End the newest ``action`` of ``request_id`` with one more event that ran from the
    action's start until ``finish_time``, in two statements and no read (the road every
    create ends on). False when there is no such action."""
    if result not in (EVENT_RESULT_SUCCESS, EVENT_RESULT_ERROR):
        raise ValueError(f"event result must be {EVENT_RESULT_SUCCESS} or {EVENT_RESULT_ERROR}")
    now = models.utcnow()
    newest = sa.select(
        _ACTIONS.c.id,
        sa.literal(event),
        _ACTIONS.c.start_time,
        sa.literal(finish_time, models.UTCDateTime()),
        sa.literal(result),
        sa.literal(host, sa.String()),
        sa.literal(details, sa.Text()),
        sa.literal(now, models.UTCDateTime()),
        sa.literal(0),
    ).where(_ACTIONS.c.id == _newest_action_id(uuid, request_id, action))
    inserted = session.connection().execute(
        _EVENTS.insert().from_select(
            [
                "action_id",
                "event",
                "start_time",
                "finish_time",
                "result",
                "host",
                "details",
                "created_at",
                "deleted",
            ],
            newest,
        )
    )
    if inserted.rowcount != 1:
        return False
    values: dict[str, object] = {"finish_time": finish_time, "updated_at": now}
    if result == EVENT_RESULT_ERROR:
        values["message"] = EVENT_RESULT_ERROR
    session.connection().execute(
        _ACTIONS.update()
        .where(
            _ACTIONS.c.instance_uuid == uuid,
            _ACTIONS.c.request_id == request_id,
            _ACTIONS.c.action == action,
            _ACTIONS.c.finish_time.is_(None),
        )
        .values(**values)
    )
    return True
