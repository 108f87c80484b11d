"""Records the database tests start from."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import api, models
from kubenova.db import engine as db_engine

FLAVOR = {"name": "m1.tiny", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}
IMAGE = {
    "name": "tiny",
    "url": "http://127.0.0.1:8089/tiny.qcow2",
    "sha256": "0" * 64,
    "disk_format": "qcow2",
}


def instance_fields(uuid: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``api.instance_insert`` for an instance as the api handler
    records it (a new uuid unless given), for a create inside the caller's transaction."""
    uuid = uuid or str(uuidlib.uuid4())
    values: dict[str, Any] = {
        "uuid": uuid,
        "name": f"vm-{uuid[:8]}",
        "namespace": "default",
        "hostname": f"vm-{uuid[:8]}",
        "flavor": FLAVOR,
        "image": IMAGE,
        "user_data_b64": None,
        "ssh_keys": ["ssh-ed25519 AAAA test@example"],
        "request_id": f"req-{uuid}",
        "generation": 1,
    }
    values.update(overrides)
    return values


def make_instance(
    session_factory: db_engine.SessionFactory, uuid: str | None = None, **overrides: Any
) -> str:
    """Record an instance as the api handler would; returns its uuid."""
    values = instance_fields(uuid, **overrides)
    with db_engine.transaction(session_factory) as session:
        api.instance_insert(session, **values)
    return values["uuid"]


#: A time before any test ran: a row aged to it shows whether a later write touched it.
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def age_instance(session_factory: db_engine.SessionFactory, uuid: str) -> None:
    """Set the instance's ``updated_at`` to :data:`LONG_AGO`, so a later write shows."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uuid)
            .values(updated_at=LONG_AGO)
        )


@contextlib.contextmanager
def recorded_statements(session_factory: db_engine.SessionFactory) -> Iterator[list[str]]:
    """The SQL of every statement the factory's engine sends while the block runs, in order
    (``SAVEPOINT`` and friends included; BEGIN and COMMIT are driver calls, not statements)."""
    engine = session_factory.kw["bind"]
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def verbs(statements: list[str]) -> list[str]:
    """The first word of each statement: ``["SELECT", "INSERT"]``."""
    return [statement.split(None, 1)[0].upper() for statement in statements]


def reads_of(table: str, statements: list[str]) -> list[str]:
    """The SELECTs among ``statements`` that read ``table``."""
    return [
        s for s in statements if s.upper().startswith("SELECT") and f" FROM {table} " in f"{s} "
    ]


def make_host(
    session_factory: db_engine.SessionFactory,
    host: str,
    *,
    vcpus: int,
    memory_mib: int,
    local_gb: int,
    **node_values: Any,
) -> None:
    """A compute node as its agent reports it, then the operator-set values (ratios,
    reservations) written directly."""
    with db_engine.transaction(session_factory) as session:
        api.compute_node_update_from_report(
            session,
            host,
            vcpus=vcpus,
            memory_mib=memory_mib,
            local_gb=local_gb,
            hypervisor_type="QEMU",
            hypervisor_version="7.2.0",
            libvirt_version="9.0.0",
            virt_type="qemu",
            cpu_arch="x86_64",
            running_vms=0,
            labels={"zone": "test"},
        )
        if node_values:
            session.execute(
                sa.update(models.ComputeNode)
                .where(models.ComputeNode.host == host)
                .values(**node_values)
            )


def node(session_factory: db_engine.SessionFactory, host: str) -> models.ComputeNode:
    """A fresh read of a host's compute node."""
    with db_engine.transaction(session_factory) as session:
        found = api.compute_node_get(session, host)
        assert found is not None
        return found


def make_group(
    session_factory: db_engine.SessionFactory,
    policy: str,
    *,
    max_server_per_host: int | None = None,
    namespace: str = "default",
    name: str | None = None,
    uuid: str | None = None,
) -> models.ServerGroup:
    """Record a ServerGroup object as the api handler would."""
    uuid = uuid or str(uuidlib.uuid4())
    with db_engine.transaction(session_factory) as session:
        return api.server_group_upsert(
            session,
            uuid=uuid,
            name=name or f"group-{uuid[:8]}",
            namespace=namespace,
            policy=policy,
            max_server_per_host=max_server_per_host,
        )


def claim(
    session_factory: db_engine.SessionFactory,
    uuid: str,
    host: str,
    group: models.ServerGroup | None = None,
) -> api.ClaimResult:
    """Claim the 1 vCPU, 512 MiB, 1 GiB flavor, into ``group`` if given."""
    return api.claim_resources(
        session_factory,
        uuid,
        host,
        1,
        512,
        1,
        server_group=api.ServerGroupClaim.from_group(group) if group is not None else None,
    )


def member_hosts(session_factory: db_engine.SessionFactory, group_id: int) -> dict[str, int]:
    """A fresh read of the group's {host: live members}."""
    with db_engine.transaction(session_factory) as session:
        return api.server_group_member_hosts(session, group_id)


def members(session_factory: db_engine.SessionFactory, group_id: int) -> list[str]:
    """A fresh read of the group's member rows (every row, whatever the instance's state)."""
    with db_engine.transaction(session_factory) as session:
        return list(
            session.scalars(
                sa.select(models.ServerGroupMember.instance_uuid)
                .where(models.ServerGroupMember.group_id == group_id)
                .order_by(models.ServerGroupMember.id)
            )
        )


def allocations_of(session: orm.Session, uuid: str) -> list[models.Allocation]:
    """The allocation rows an instance holds, oldest first (empty when it holds none)."""
    return list(
        session.scalars(
            sa.select(models.Allocation)
            .where(models.Allocation.instance_uuid == uuid)
            .order_by(models.Allocation.id)
        )
    )


def soft_delete_group(session_factory: db_engine.SessionFactory, uuid: str) -> None:
    """Mark the group's record deleted, as Nova's soft delete does (``deleted = id``), and drop
    its members: the state a deleted ServerGroup leaves, which the claims and upserts under
    test must meet. The operator has no delete of its own yet, so the test writes it."""
    group_t = models.ServerGroup
    with db_engine.transaction(session_factory) as session:
        group_id = session.scalar(sa.select(group_t.id).where(group_t.uuid == uuid))
        assert group_id is not None, f"no server group {uuid}"
        session.execute(
            sa.delete(models.ServerGroupMember).where(models.ServerGroupMember.group_id == group_id)
        )
        session.execute(
            sa.update(group_t)
            .where(group_t.id == group_id)
            .values(deleted=group_t.id, deleted_at=models.utcnow())
        )


def downgrade(url: str, revision: str) -> None:
    """Run Alembic's downgrade of the database at ``url`` to ``revision``
    (``kubenova-manage db sync`` only goes up)."""
    from alembic import command

    from kubenova.db import migration

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            config = migration.alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
            conn.commit()
    finally:
        engine.dispose()
