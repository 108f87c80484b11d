"""Instance records deleted a short while ago, read for those who keep showing them for a
while after the Instance object is gone (the EC2 API shows a terminated instance for about an
hour, as EC2 does).

Read-only: one query in the caller's session, on the index that starts with ``namespace``
(docs/ec2.md says why there is no index on ``deleted_at`` yet).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import models

_INSTANCES: Final = models.table(models.Instance)
# Built once: building a statement and its cache key costs more CPU than running it.
_SELECT_RECENTLY_DELETED: Final = (
    sa.select(
        _INSTANCES.c.uuid,
        _INSTANCES.c.name,
        _INSTANCES.c.hostname,
        _INSTANCES.c.flavor,
        _INSTANCES.c.image,
        _INSTANCES.c.availability_zone,
        _INSTANCES.c.created_at,
        _INSTANCES.c.launched_at,
        _INSTANCES.c.deleted_at,
    )
    .where(
        _INSTANCES.c.namespace == sa.bindparam("b_namespace"),
        _INSTANCES.c.deleted_at >= sa.bindparam("b_since", type_=models.UTCDateTime()),
        _INSTANCES.c.deleted != 0,
    )
    .order_by(_INSTANCES.c.deleted_at.desc())
    .limit(sa.bindparam("b_limit"))
)


@dataclasses.dataclass(frozen=True)
class DeletedInstance:
    """What a deleted record still tells of its instance."""

    uuid: str
    name: str
    hostname: str | None
    #: The names of the Flavor and Image it was built from (its snapshots' ``name``).
    flavor_name: str
    image_name: str
    #: The zone it was placed in (None: the default zone).
    availability_zone: str | None
    created_at: dt.datetime
    launched_at: dt.datetime | None
    deleted_at: dt.datetime


def recently_deleted(
    session: orm.Session, namespace: str, since: dt.datetime, *, limit: int
) -> list[DeletedInstance]:
    """The records of ``namespace`` deleted at ``since`` or later, the latest deleted first,
    at most ``limit`` of them."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    rows = session.execute(
        _SELECT_RECENTLY_DELETED,
        {"b_namespace": namespace, "b_since": since, "b_limit": limit},
    )
    return [
        DeletedInstance(
            uuid=row.uuid,
            name=row.name,
            hostname=row.hostname,
            flavor_name=_name(row.flavor),
            image_name=_name(row.image),
            availability_zone=row.availability_zone,
            created_at=row.created_at,
            launched_at=row.launched_at,
            deleted_at=row.deleted_at,
        )
        for row in rows
    ]


def _name(snapshot: Any) -> str:
    return str(snapshot.get("name") or "") if isinstance(snapshot, dict) else ""
