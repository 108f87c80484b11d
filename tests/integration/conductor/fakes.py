"""Builders for conductor tests on a real database: a conductor over the recording fakes of
``tests.support``, and the records and reports they stand beside."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import compute_rpcapi, payloads
from tests.integration.db.helpers import FLAVOR, claim, make_instance
from tests.support import RecordingCaster, RecordingKube

LAUNCHED = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


class FakeMigrationObjects:
    """The Instances of a RecordingKube, and the InstanceMigrations' statuses as written."""

    def __init__(self, kube: RecordingKube) -> None:
        self.kube = kube
        self.statuses: dict[str, dict[str, Any]] = {}
        #: Every status write, in order: (object name, the fields written).
        self.writes: list[tuple[str, dict[str, Any]]] = []
        #: How many of the next status writes fail, as an apiserver that is away.
        self.failing_writes = 0

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_instance(namespace, name)

    def patch_migration_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        if self.failing_writes:
            self.failing_writes -= 1
            raise ConnectionError("the apiserver is away")
        self.statuses.setdefault(name, {}).update(copy.deepcopy(status))
        self.writes.append((name, copy.deepcopy(status)))
        return True


def make_conductor(
    session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> Conductor:
    """A conductor with the default settings over the fakes (and a scheduler over the
    database's hosts)."""
    compute = compute_rpcapi.ComputeAPI(caster)
    return Conductor.build(OperatorSettings(), session_factory, kube, compute)  # type: ignore[arg-type]


def node_report(host: str = "h1", **overrides: Any) -> payloads.ComputeNodeReport:
    """A heartbeat of an 8 vCPU, 8 GiB, 100 GiB host labelled with zone az1."""
    values: dict[str, Any] = {
        "host": host,
        "vcpus": 8,
        "memory_mib": 8192,
        "disk_gib": 100,
        "cpu_arch": "x86_64",
        "hypervisor_type": "QEMU",
        "virt_type": "qemu",
        "libvirt_version": "9.0.0",
        "qemu_version": "7.2.0",
        "labels": {"topology.kubernetes.io/zone": "az1"},
    }
    values.update(overrides)
    return payloads.ComputeNodeReport(**values)


def instance_name(uuid: str) -> str:
    """The object name ``make_instance`` gives the record with this uuid."""
    return f"vm-{uuid[:8]}"


def running_instance(
    session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    host: str = "h1",
    *,
    status: dict[str, Any] | None = None,
) -> str:
    """An instance running on ``host``, recorded and present in Kubernetes with ``status``."""
    uuid = make_instance(session_factory)
    assert claim(session_factory, uuid, host)
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(
            session,
            uuid,
            vm_state="active",
            task_state=None,
            power_state="running",
            addresses=["192.168.122.10"],
            launched_at=LAUNCHED,
        )
    kube.add_instance(instance_name(uuid), status)
    return uuid


def building_on(
    session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    host: str,
    alternates: list[str],
    *,
    attempts: int = 1,
) -> str:
    """An instance claimed on ``host`` at its ``attempts``-th try with the alternates the
    scheduler chose, as the scheduler claims it, and present in Kubernetes."""
    uuid = make_instance(session_factory)
    claimed = db_api.claim_resources(
        session_factory,
        uuid,
        host,
        FLAVOR["vcpus"],
        FLAVOR["memory_mib"],
        FLAVOR["disk_gib"],
        instance_values={"task_state": "spawning", "attempts": attempts, "alternates": alternates},
    )
    assert claimed
    kube.add_instance(instance_name(uuid))
    return uuid


def vcpus_used(session_factory: db_engine.SessionFactory) -> dict[str, int]:
    """Each host's vCPUs claimed."""
    with db_engine.transaction(session_factory) as session:
        return {n.host: n.vcpus_used for n in session.query(models.ComputeNode)}


def migration_of(session_factory: db_engine.SessionFactory, uuid: str) -> models.Migration:
    """The instance's one migration record, read afresh."""
    with db_engine.transaction(session_factory) as session:
        found = session.query(models.Migration).filter_by(instance_uuid=uuid).one()
        session.expunge(found)
        return found


def built_report(uuid: str, host: str, **over: Any) -> payloads.InstanceUpdate:
    """``host``'s report once its build of ``uuid`` is over: running, with an address."""
    values: dict[str, Any] = {
        "instance_uuid": uuid, "host": host, "vm_state": "active", "task_state": None,
        "power_state": "running", "addresses": ("192.168.122.20",),
        "launched_at": dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC),
    }  # fmt: skip
    values.update(over)
    return payloads.InstanceUpdate(**values)
