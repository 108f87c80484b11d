"""The end of create actions, in batches: every create that succeeded at its first try ends
the same way (its build event, from the action's start to the launch, on the instance's host,
and the action's finish time), so a burst of them is recorded with two statements per batch
rather than two per instance.

Both statements read what they need from the rows themselves (the instance's launch time and
host, the action's start) and touch only create actions not yet finished, so a batch is
idempotent, and one that names every instance (``uuids`` None) finishes whatever an operator
that stopped before its last batch left unfinished.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import models

BUILD_EVENT: Final = "compute_build_and_run_instance"
_ACTIONS: Final = models.table(models.InstanceAction)
_EVENTS: Final = models.table(models.InstanceActionEvent)
_INSTANCES: Final = models.table(models.Instance)


def _launched_creates(uuids: Sequence[str] | None) -> sa.ColumnElement[bool]:
    """Unfinished create actions of launched instances (of ``uuids``, if given), joined on
    the request that created them."""
    condition = sa.and_(
        _ACTIONS.c.action == "create",
        _ACTIONS.c.finish_time.is_(None),
        _ACTIONS.c.deleted == 0,
        _INSTANCES.c.uuid == _ACTIONS.c.instance_uuid,
        _INSTANCES.c.request_id == _ACTIONS.c.request_id,
        _INSTANCES.c.launched_at.is_not(None),
    )
    if uuids is not None:
        condition = sa.and_(condition, _ACTIONS.c.instance_uuid.in_(list(uuids)))
    return condition


def create_actions_finish(session: orm.Session, uuids: Sequence[str] | None) -> int:
    """End the create actions of the launched instances among ``uuids`` (None: all) with
    their build event; how many were ended."""
    if uuids is not None and not uuids:
        return 0
    now = models.utcnow()
    where = _launched_creates(uuids)
    conn = session.connection()
    conn.execute(
        _EVENTS.insert().from_select(
            ["action_id", "event", "start_time", "finish_time", "result", "host", "created_at",
             "deleted"],
            sa.select(
                _ACTIONS.c.id,
                sa.literal(BUILD_EVENT),
                _ACTIONS.c.start_time,
                _INSTANCES.c.launched_at,
                sa.literal("Success"),
                _INSTANCES.c.host,
                sa.literal(now, models.UTCDateTime()),
                sa.literal(0),
            ).where(where),
        )
    )  # fmt: skip
    ended = conn.execute(
        _ACTIONS.update().where(where).values(finish_time=_INSTANCES.c.launched_at, updated_at=now)
    )
    return int(ended.rowcount)
