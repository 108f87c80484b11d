"""The create on a real database, from the api layer through the conductor's road (record,
schedule, claim, project, cast): a first try records the instance in the transaction of its
claim; a retry, or a first try that finds a record after all, takes the usual road (record,
then claim); a retry of an instance claimed by a try whose cast was lost casts again; an
instance no host takes is recorded and waits Pending.

The statement counts guard the cost of a create (the burst benchmark's ~10 statements per
instance): the first try of a create costs the claim's five statements, and one more when the
scheduler's view of the hosts is read again.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.api import instance_api
from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.exception import NotReady
from kubenova.scheduler.host_manager import HostManager, load_host_states
from tests.integration.conductor import builds
from tests.integration.db.helpers import allocations_of, make_instance, node
from tests.support import FakeClock, RecordingCaster, RecordingKube

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
def host_manager(db_session_factory: db_engine.SessionFactory) -> HostManager:
    """The scheduler's cached view of the hosts, read again only when the test says so (or
    a claim finds it wrong)."""
    return HostManager(lambda: load_host_states(db_session_factory), clock=FakeClock())


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    host_manager: HostManager,
) -> Iterator[Conductor]:
    """A conductor over hosts h1 and h2, each 8 vCPUs, 8 GiB and 100 GiB, registered."""
    conductor = builds.conductor_over(db_session_factory, kube, caster, host_manager=host_manager)
    builds.register(conductor, "h1", "h2")
    yield conductor
    conductor.projector.stop()


@pytest.fixture
def api(conductor: Conductor) -> instance_api.InstanceAPI:
    return instance_api.InstanceAPI(conductor.api, Catalog())


def _prefer_h1(session_factory: db_engine.SessionFactory, host_manager: HostManager) -> None:
    """h2 gets less free memory, so the RAM weigher puts h1 first; the view is read again."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(memory_mib_used=1024)
        )
    host_manager.mark_stale()


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
            "vm_state": record.vm_state,
            "task_state": record.task_state,
            "attempts": record.attempts,
            "allocations": sorted((a.resource_class, a.used) for a in allocations),
            "actions": list(actions),
        }


PLACED_ON_H1 = {
    "host": "h1",
    "node": "h1",
    "vm_state": "building",
    "task_state": "spawning",
    "attempts": 1,
    "allocations": [("DISK_GB", 1), ("MEMORY_MB", 512), ("VCPU", 1)],
    "actions": ["create"],
}


def test_a_first_try_records_the_instance_in_its_claims_transaction(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    host_manager: HostManager,
    statements: list[str],
) -> None:
    _prefer_h1(db_session_factory, host_manager)
    request = _request()
    statements.clear()

    api.create(request, "req-1", Catalog())
    sent = list(statements)

    assert _state(db_session_factory, request.uid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    # The hosts' read, then the claim, the node's name, the record, its action and the
    # allocations, in that one transaction; the record is never read or updated.
    assert sent == ["SELECT", "UPDATE", "SELECT", "INSERT", "INSERT", "INSERT"]
    assert node(db_session_factory, "h1").vcpus_used == 1


def test_a_first_try_on_a_fresh_view_of_the_hosts_sends_only_the_claims_statements(
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    statements: list[str],
) -> None:
    api.create(_request(), "req-1", Catalog())
    statements.clear()

    api.create(_request(), "req-2", Catalog())

    assert statements == ["UPDATE", "SELECT", "INSERT", "INSERT", "INSERT"]
    assert len(caster.casts) == 2


def test_a_first_try_records_the_zone_the_instance_asked_for_with_its_claim(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
) -> None:
    request = _request()
    request.spec["availabilityZone"] = "az1"

    api.create(request, "req-1", Catalog())

    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_get(session, request.uid)
        assert record is not None
        assert (record.host, record.availability_zone) == ("h1", "az1")


def test_a_first_try_that_finds_a_record_undoes_its_claim_and_takes_the_usual_road(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    host_manager: HostManager,
) -> None:
    # An earlier try recorded the instance but wrote no status (the operator stopped).
    uuid = make_instance(db_session_factory)
    _prefer_h1(db_session_factory, host_manager)

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

    with pytest.raises(NotReady, match="insufficient memory") as raised:
        api.create(request, "req-3", Catalog())

    assert raised.value.reason == "NoValidHost"
    state = _state(db_session_factory, request.uid)
    assert (state["host"], state["task_state"], state["allocations"]) == (None, "scheduling", [])
    assert state["actions"] == ["create"]
    assert caster.casts == []
    assert node(db_session_factory, "h1").memory_mib_used == 0


def test_a_retry_of_a_pending_instance_claims_its_record(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    host_manager: HostManager,
    statements: list[str],
) -> None:
    request = _request(flavor="huge")
    with pytest.raises(NotReady):
        api.create(request, "req-4", Catalog())
    # The flavor's object was fixed meanwhile (say); the Pending status is written.
    catalog = Catalog()
    catalog.flavors["huge"] = catalog.flavors["m1.tiny"]
    retry = _request(request.uid, flavor="huge", status={"phase": "Pending", "requestId": "r"})
    _prefer_h1(db_session_factory, host_manager)
    statements.clear()

    api.create(retry, "req-4", catalog)
    sent = list(statements)

    assert _state(db_session_factory, request.uid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    # The usual road: the record (its insert finds it), then the claim locks and updates it.
    assert sent[0] == "INSERT"
    assert sent[-1] == "UPDATE"


def test_a_retry_after_a_lost_cast_casts_again_to_the_claimed_host_without_a_new_claim(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = _request()

    def broker_away(*args: Any) -> str:
        raise ConnectionError("the broker is away")

    with monkeypatch.context() as patched:
        patched.setattr(caster, "cast", broker_away)
        with pytest.raises(ConnectionError):
            api.create(request, "req-5", Catalog())
    claimed = node(db_session_factory, "h1")

    api.create(_request(request.uid, status={"phase": "Building"}), "req-5", Catalog())

    assert _state(db_session_factory, request.uid) == PLACED_ON_H1
    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    assert caster.casts[0].args["instance"]["uuid"] == request.uid
    h1 = node(db_session_factory, "h1")
    assert (h1.vcpus_used, h1.generation) == (1, claimed.generation)


def test_a_retry_after_a_lost_cast_to_a_host_now_down_says_so_in_the_status(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    conductor: Conductor,
    kube: RecordingKube,
    caster: RecordingCaster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = _request()
    kube.add_instance(request.name)

    def broker_away(*args: Any) -> str:
        raise ConnectionError("the broker is away")

    with monkeypatch.context() as patched:
        patched.setattr(caster, "cast", broker_away)
        with pytest.raises(ConnectionError):
            api.create(request, "req-6", Catalog())
    # h1's agent goes silent before the retry casts again.
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.Service)
            .where(models.Service.host == "h1")
            .values(last_seen_up=models.utcnow() - dt.timedelta(hours=1))
        )

    api.create(_request(request.uid, status={"phase": "Building"}), "req-6", Catalog())
    conductor.projector.stop()  # writes the status it held back

    assert caster.sent() == [("compute.h1", "build_and_run_instance")]
    assert kube.status_of(request.name)["phase"] == "Unknown"


def test_a_retry_of_an_instance_past_building_casts_nothing(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    caster: RecordingCaster,
) -> None:
    request = _request()
    api.create(request, "req-6", Catalog())
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, request.uid, vm_state="active", task_state=None)
    caster.casts.clear()

    api.create(_request(request.uid, status={"phase": "Running"}), "req-6", Catalog())

    assert caster.casts == []
    assert node(db_session_factory, "h1").vcpus_used == 1


def test_a_retry_of_an_instance_past_building_writes_the_status_a_crash_lost(
    db_session_factory: db_engine.SessionFactory,
    api: instance_api.InstanceAPI,
    conductor: Conductor,
    kube: RecordingKube,
    caster: RecordingCaster,
) -> None:
    # The host reported the guest running and the record says active, but the operator was
    # killed before it wrote that: the object still says Building when its create runs again.
    request = _request()
    kube.add_instance(request.name)
    api.create(request, "req-7", Catalog())
    conductor.projector.stop()
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(
            session, request.uid, vm_state="active", task_state=None, power_state="running"
        )
    caster.casts.clear()
    assert kube.status_of(request.name)["phase"] == "Building"

    api.create(_request(request.uid, status=dict(kube.status_of(request.name))), "req-7", Catalog())

    assert caster.casts == []
    assert kube.status_of(request.name)["phase"] == "Running"
