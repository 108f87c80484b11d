"""The api layer's create on a real database: a first try records the instance in the
transaction of its claim; a retry, or a first try that finds a record after all, takes the
usual road (record, then claim); an instance no host takes is recorded and waits Pending."""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.api import instance_api, request_spec
from kubenova.conductor.manager import ConductorManager
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import compute_rpcapi
from kubenova.scheduler import host_state
from kubenova.scheduler.filters.compute_filter import ComputeFilter
from kubenova.scheduler.filters.resource_filter import ResourceFilter
from kubenova.scheduler.manager import SchedulerManager
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.integration.db.helpers import allocations_of, make_host, make_instance, node
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


class Catalog:
    """Flavors and Images by name, as the operator's indexes hold them."""

    def __init__(self) -> None:
        self.flavors = {
            "m1.tiny": {"spec": {"vcpus": 1, "memoryMiB": 512, "diskGiB": 1}},
            "huge": {"spec": {"vcpus": 1, "memoryMiB": 1024 * 1024, "diskGiB": 1}},
        }
        self.image = {
            "spec": {
                "source": {"url": "http://127.0.0.1:8089/tiny.qcow2"},
                "sha256": "0" * 64,
                "diskFormat": "qcow2",
            }
        }

    def get_flavor(self, name: str) -> dict[str, Any] | None:
        return self.flavors.get(name)

    def get_image(self, name: str) -> dict[str, Any] | None:
        return self.image


@pytest.fixture
def api(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: ConductorManager,
) -> Iterator[instance_api.InstanceAPI]:
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        with db_engine.transaction(db_session_factory) as session:
            db_api.service_record_heartbeat(
                session, host, models.AGENT_BINARY, f"compute.{host}", "1.0"
            )
    scheduler = SchedulerManager(
        lambda: host_state.load_host_states(db_session_factory),
        functools.partial(request_spec.claim, db_session_factory),
        filters=[ComputeFilter(), ResourceFilter()],
        weighers=[RAMWeigher()],
    )
    compute = compute_rpcapi.ComputeAPI(caster)
    yield instance_api.InstanceAPI(
        OperatorSettings(),
        db_session_factory,
        kube,  # type: ignore[arg-type]
        scheduler,
        compute,
        conductor,
    )
    conductor.status_writer.stop()


def _request(
    uid: str | None = None, *, flavor: str = "m1.tiny", status: dict[str, Any] | None = None
) -> instance_api.InstanceRequest:
    uid = uid or str(uuidlib.uuid4())
    return instance_api.InstanceRequest(
        uid=uid,
        name=f"vm-{uid[:8]}",
        namespace="default",
        generation=1,
        spec={"flavor": flavor, "image": "tiny"},
        status=dict(status or {}),
    )


def _state(session_factory: db_engine.SessionFactory, uuid: str) -> dict[str, Any]:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        allocations = allocations_of(session, uuid)
        actions = session.scalars(
            sa.select(models.InstanceAction.action).where(
                models.InstanceAction.instance_uuid == uuid
            )
        ).all()
        return {
            "host": record.host,
            "node": record.node,
            "task_state": record.task_state,
            "attempts": record.attempts,
            "alternates": record.alternates,
            "allocations": sorted((a.resource_class, a.used) for a in allocations),
            "actions": list(actions),
        }


PLACED_ON_H1 = {
    "host": "h1",
    "node": "h1",
    "task_state": "spawning",
    "attempts": 1,
    "alternates": ["h2"],
    "allocations": [("DISK_GB", 1), ("MEMORY_MB", 512), ("VCPU", 1)],
    "actions": ["create"],
}


def test_a_first_try_records_the_instance_in_its_claims_transaction(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    statements: list[str],
) -> None:
    # h1 has more free memory: the RAM weigher puts it first.
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(memory_mib_used=1024)
        )
    request = _request()
    statements.clear()

    api.create(request, "req-1", Catalog())
    sent = list(statements)

    assert _state(db_session_factory, request.uid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    # After the host states' read: the claim, the node's name, then the record, its action
    # and the allocations, in that one transaction; the record is never read or updated.
    assert sent[0] == "SELECT"
    assert sent[1:] == ["UPDATE", "SELECT", "INSERT", "INSERT", "INSERT"]
    assert node(db_session_factory, "h1").vcpus_used == 1


def test_a_first_try_that_finds_a_record_undoes_its_claim_and_takes_the_usual_road(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
) -> None:
    # An earlier try recorded the instance but wrote no status (the operator stopped).
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(memory_mib_used=1024)
        )

    api.create(_request(uuid), "req-2", Catalog())

    assert _state(db_session_factory, uuid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    # The claim that found the record was undone: the host counts one instance, not two.
    h1 = node(db_session_factory, "h1")
    assert (h1.vcpus_used, h1.memory_mib_used, h1.local_gb_used) == (1, 512, 1)


def test_an_instance_no_host_takes_is_recorded_and_waits(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
) -> None:
    request = _request(flavor="huge")

    with pytest.raises(instance_api.NotReady, match="insufficient memory"):
        api.create(request, "req-3", Catalog())

    state = _state(db_session_factory, request.uid)
    assert (state["host"], state["task_state"], state["allocations"]) == (None, "scheduling", [])
    assert state["actions"] == ["create"]
    assert caster.casts == []
    assert node(db_session_factory, "h1").memory_mib_used == 0


def test_a_retry_of_a_pending_instance_claims_its_record(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    statements: list[str],
) -> None:
    request = _request(flavor="huge")
    with pytest.raises(instance_api.NotReady):
        api.create(request, "req-4", Catalog())
    # The flavor's object was fixed meanwhile (say); the Pending status is written.
    catalog = Catalog()
    catalog.flavors["huge"] = catalog.flavors["m1.tiny"]
    retry = _request(request.uid, flavor="huge", status={"phase": "Pending", "requestId": "r"})
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(memory_mib_used=1024)
        )
    statements.clear()

    api.create(retry, "req-4", catalog)
    sent = list(statements)

    assert _state(db_session_factory, request.uid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    # The usual road: the record (its insert finds it), then the claim locks and updates it.
    assert sent[0] == "INSERT"
    assert sent[-1] == "UPDATE"
