"""The conductor's periodic Hypervisor check and an agent's graceful stop, on a real database.

``check_hypervisors`` reads every node with its heartbeat in one query and counts the
instances placed on each in another, learns what the Hypervisor objects say with one LIST
after a start, and patches only what changed: the state, the usage, the placed count
(``instances``), and for a host that is down the removal of ``runningInstances``, which
nobody can vouch for while its agent is silent. A host whose state flips has its instances
projected again. ``service_stopping`` marks a host down at once, and its next heartbeat marks
it up again.

The Kubernetes side is a recording fake (as in test_status_writes.py) holding the objects in
memory and applying status patches as JSON merge patches.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import sqlalchemy as sa

from kubenova.conductor import hypervisors
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.exception import PermanentFailure
from kubenova.rpc import envelope, payloads
from tests.integration.conductor.fakes import (
    instance_name,
    make_conductor,
    node_report,
    running_instance,
)
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

DOWN_TIME_S = OperatorSettings().service_down_time_s
#: What a check patches when it marks down a host whose status has the agent's count.
MARKED_DOWN = {"state": "down", "runningInstances": None}


def _last_seen_up(session_factory: db_engine.SessionFactory, host: str) -> dt.datetime | None:
    with db_engine.transaction(session_factory) as session:
        service = db_api.service_get(session, host, models.AGENT_BINARY)
        assert service is not None
        return service.last_seen_up


def _age_heartbeat(session_factory: db_engine.SessionFactory, host: str, seconds: float) -> None:
    """Make ``host``'s last heartbeat ``seconds`` old."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Service)
            .where(models.Service.host == host)
            .values(last_seen_up=models.utcnow() - dt.timedelta(seconds=seconds))
        )


def _stopping(host: str) -> envelope.Envelope:
    return envelope.Envelope(
        request_id="req-stop",
        method="service_stopping",
        args=payloads.ServiceStopping(host=host).model_dump(mode="json"),
        sender=f"kubenova-agent.{host}",
    )


@pytest.fixture
def two_hosts(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
) -> dict[str, str]:
    """h1 and h2 registered by a heartbeat each, one running instance on each; the
    conductor has projected both instances (Running). Returns host -> instance uuid."""
    for host in ("h1", "h2"):
        conductor.hypervisors.compute_node_report(node_report(host))
    uuids = {}
    for host in ("h1", "h2"):
        uuid = running_instance(db_session_factory, kube, host)
        conductor.projector.project(uuid)
        assert kube.status_of(instance_name(uuid))["phase"] == "Running"
        uuids[host] = uuid
    # The claims moved the usage; a pass makes the objects current again.
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    kube.clear()
    return uuids


# -- check_hypervisors ----------------------------------------------------------------------


def test_a_fresh_conductor_lists_the_hypervisors_once_and_reads_all_nodes_in_two_queries(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    statements: list[str],
) -> None:
    for host in ("h1", "h2", "h3"):
        conductor.hypervisors.compute_node_report(node_report(host))
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", "h3": "up"}

    # A restarted operator: no memory of what was written, objects already current.
    fresh = make_conductor(db_session_factory, kube, caster)
    kube.clear()
    statements.clear()
    assert fresh.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", "h3": "up"}
    assert kube.calls == {"list_hypervisors": 1}
    # The placed counts, then every node with its heartbeat, however many hosts there are.
    assert statements.count("SELECT") == 2, statements

    # The LIST taught it every object's status: the next passes read and write nothing.
    statements.clear()
    assert fresh.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", "h3": "up"}
    assert fresh.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", "h3": "up"}
    assert kube.calls == {"list_hypervisors": 1}
    assert statements.count("SELECT") == 4, statements


def test_a_fresh_conductor_writes_what_the_listed_objects_lack(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"))
    conductor.hypervisors.compute_node_report(node_report("h2"))
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    # Someone else wrote h2's status: it says down and has lost its vCPU usage.
    kube.hypervisors["h2"]["status"]["state"] = "down"
    del kube.hypervisors["h2"]["status"]["vcpus"]

    fresh = make_conductor(db_session_factory, kube, caster)
    kube.clear()
    assert fresh.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}

    assert kube.calls["list_hypervisors"] == 1
    assert kube.hypervisor_patches == [
        ("h2", {"state": "up", "vcpus": kube.hypervisors["h1"]["status"]["vcpus"]})
    ]


def test_a_host_whose_heartbeat_is_too_old_goes_down_and_its_instance_says_unknown(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    _age_heartbeat(db_session_factory, "h2", DOWN_TIME_S / 2)  # late, but not too late

    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}

    assert kube.hypervisor_patches == [("h1", MARKED_DOWN)]
    assert kube.hypervisors["h1"]["status"]["state"] == "down"
    # Only the instance on the host that flipped was projected again.
    assert [name for name, _ in kube.instance_patches] == [instance_name(two_hosts["h1"])]
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Unknown"
    assert kube.status_of(instance_name(two_hosts["h2"]))["phase"] == "Running"
    assert "get_instance" not in kube.calls  # projected from memory

    # Nothing changed since: the next pass writes nothing.
    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert kube.calls == {}


def test_an_unchanged_pass_patches_nothing(
    conductor: Conductor, kube: RecordingKube, two_hosts: dict[str, str]
) -> None:
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    assert kube.calls == {}


def test_a_claim_without_a_heartbeat_patches_only_the_usage_and_the_placed_count(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    before = copy.deepcopy(kube.hypervisors["h2"]["status"])
    assert claim(db_session_factory, make_instance(db_session_factory), "h2")

    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}

    ((host, patch),) = kube.hypervisor_patches
    assert host == "h2"
    assert set(patch) == {"vcpus", "memoryMiB", "diskGiB", "instances"}
    assert patch["instances"] == before["instances"] + 1
    assert (patch["vcpus"]["used"], patch["memoryMiB"]["used"], patch["diskGiB"]["used"]) == (
        before["vcpus"]["used"] + 1,
        before["memoryMiB"]["used"] + 512,
        before["diskGiB"]["used"] + 1,
    )
    # The state did not flip, so no instance was projected again.
    assert kube.instance_patches == []


def test_an_up_hosts_check_writes_the_instances_placed_on_it_beside_its_agents_count(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"))  # its agent runs nothing yet
    running_instance(db_session_factory, kube, "h1")
    assert claim(db_session_factory, make_instance(db_session_factory), "h1")  # still building
    kube.clear()

    assert conductor.hypervisors.check_hypervisors() == {"h1": "up"}

    ((host, patch),) = kube.hypervisor_patches
    assert (host, patch["instances"]) == ("h1", 2)
    # The host is up: what its agent last counted stands until its next heartbeat says more.
    status = kube.hypervisors["h1"]["status"]
    assert (status["instances"], status["runningInstances"]) == (2, 0)


@pytest.fixture
def counted(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> str:
    """h1, up, with one running instance, which its agent's first heartbeat counted (h1's
    status says runningInstances 1), and a check since. Returns the instance's uuid."""
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    uuid = running_instance(db_session_factory, kube, "h1")
    conductor.hypervisors.compute_node_report(node_report("h1", instance_uuids=(uuid,)))
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up"}
    status = kube.hypervisors["h1"]["status"]
    assert (status["runningInstances"], status["vcpus"]["used"]) == (1, 1)
    kube.clear()
    return uuid


def test_a_host_gone_down_loses_its_agents_count_and_keeps_its_placed_count(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    counted: str,
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)

    assert conductor.hypervisors.check_hypervisors() == {"h1": "down"}

    assert kube.hypervisor_patches == [("h1", MARKED_DOWN)]
    status = kube.hypervisors["h1"]["status"]
    assert "runningInstances" not in status
    assert (status["state"], status["instances"], status["vcpus"]["used"]) == ("down", 1, 1)

    # Nothing changed since: the next pass writes nothing.
    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down"}
    assert kube.calls == {}


@pytest.mark.parametrize("gone", ["deleted", "terminated"])
def test_the_placed_count_of_a_down_host_follows_its_instance_going_with_the_usage(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    counted: str,
    gone: str,
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down"}
    if gone == "deleted":
        # The host is down: the record is deleted here, the terminate left in its queue.
        assert conductor.api.delete_instance(counted, "req-delete")
    else:
        # The agent's last word before it went silent, handled late.
        conductor.instances.instance_terminated(
            payloads.InstanceTerminated(instance_uuid=counted, host="h1"),
            "req-terminate",
        )
    kube.clear()

    assert conductor.hypervisors.check_hypervisors() == {"h1": "down"}

    # The placed count and the usage it stands beside move together, in one patch.
    ((host, patch),) = kube.hypervisor_patches
    assert (host, patch["instances"]) == ("h1", 0)
    assert (patch["vcpus"]["used"], patch["memoryMiB"]["used"], patch["diskGiB"]["used"]) == (
        0,
        0,
        0,
    )
    status = kube.hypervisors["h1"]["status"]
    assert (status["state"], status["instances"], status["vcpus"]["used"]) == ("down", 0, 0)
    assert "runningInstances" not in status


def test_a_host_that_comes_back_goes_up_and_its_instance_runs_again(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    assert conductor.hypervisors.check_hypervisors()["h1"] == "down"
    _age_heartbeat(db_session_factory, "h1", 0)  # a heartbeat this conductor did not see
    kube.clear()

    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}

    assert kube.hypervisor_patches == [("h1", {"state": "up"})]
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Running"


def test_a_deleted_hypervisor_is_forgotten_and_learnt_again(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    # h2 is up, so the deletion is refused in the database, and its agent keeps heartbeating;
    # someone has meanwhile recreated the object with a status this conductor did not write.
    assert conductor.hypervisors.hypervisor_deleted("h2") is False
    kube.hypervisors["h2"]["status"] = {"state": "down"}

    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    assert kube.calls["list_hypervisors"] == 1
    ((host, patch),) = kube.hypervisor_patches
    assert (host, patch["state"]) == ("h2", "up")
    assert {"vcpus", "memoryMiB", "diskGiB", "instances"} <= set(patch)

    # And the next heartbeat reads the object again, not only after the resync interval.
    conductor.hypervisors.compute_node_report(node_report("h2"))
    assert kube.calls["ensure_hypervisor"] == 1


def test_a_node_without_a_hypervisor_object_does_not_stop_the_others_being_checked(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    # h1 is down with an instance: deleting its Hypervisor forgets nothing in the database,
    # but the object is gone (the delete handler is optional).
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    assert conductor.hypervisors.hypervisor_deleted("h1") is False
    del kube.hypervisors["h1"]
    # h2, after it in the walk, stops heartbeating too.
    _age_heartbeat(db_session_factory, "h2", DOWN_TIME_S + 60)

    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "down"}

    assert kube.hypervisor_patches == [("h2", MARKED_DOWN)]
    assert kube.status_of(instance_name(two_hosts["h2"]))["phase"] == "Unknown"
    assert "h1" not in kube.hypervisors

    # The missing object is neither listed for nor patched again at every pass.
    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "down"}
    assert kube.calls == {}


def test_a_failed_status_write_does_not_stop_the_others_and_is_retried(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    _age_heartbeat(db_session_factory, "h2", DOWN_TIME_S + 60)
    kube.failing.add("h1")

    assert conductor.hypervisors.check_hypervisors()["h2"] == "down"
    assert kube.hypervisor_patches == [("h2", MARKED_DOWN)]
    assert kube.status_of(instance_name(two_hosts["h2"]))["phase"] == "Unknown"

    # The apiserver recovers: the write that failed is made at the next pass.
    kube.failing.clear()
    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "down"}
    assert kube.hypervisor_patches == [("h1", MARKED_DOWN)]
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Unknown"


# -- a Hypervisor object deleted while nobody handled it ------------------------------------


def _recorded(session_factory: db_engine.SessionFactory, host: str) -> bool:
    """Whether ``host`` still has a live compute node and agent service."""
    with db_engine.transaction(session_factory) as session:
        node = db_api.compute_node_get(session, host)
        service = db_api.service_get(session, host, models.AGENT_BINARY)
    assert (node is None) == (service is None), (node, service)
    return node is not None


def _scheduled_hosts(session_factory: db_engine.SessionFactory) -> list[str]:
    """The hosts a scheduling pass counts."""
    with db_engine.transaction(session_factory) as session:
        return [record.node.host for record in db_api.compute_nodes_list(session)]


@pytest.fixture
def idle_host(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> str:
    """h3, registered by a heartbeat beside ``two_hosts`` and running nothing; its object is
    current. Returns its name."""
    conductor.hypervisors.compute_node_report(node_report("h3"))
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", "h3": "up"}
    assert kube.hypervisors["h3"]["status"]["state"] == "up"
    kube.clear()
    return "h3"


@pytest.mark.parametrize("restarted", [False, True], ids=["same-conductor", "restarted"])
def test_a_down_host_whose_object_is_gone_and_that_runs_nothing_is_forgotten(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    idle_host: str,
    restarted: bool,
) -> None:
    _age_heartbeat(db_session_factory, idle_host, DOWN_TIME_S + 60)
    del kube.hypervisors[idle_host]  # no delete handler ran
    checker = make_conductor(db_session_factory, kube, caster) if restarted else conductor
    kube.clear()

    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "down"}

    assert not _recorded(db_session_factory, idle_host)
    assert _scheduled_hosts(db_session_factory) == ["h1", "h2"]
    assert kube.calls["patch_hypervisor_status"] == 1  # the one that found the object gone
    assert kube.hypervisor_patches == []
    assert idle_host not in kube.hypervisors  # the check makes no object
    assert kube.instance_patches == []

    # Forgotten: later passes neither count nor patch it.
    kube.clear()
    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}
    assert kube.calls == {}

    # Its agent starting again registers it again, object and all.
    checker.hypervisors.compute_node_report(node_report(idle_host))
    assert _recorded(db_session_factory, idle_host)
    assert kube.hypervisors[idle_host]["status"]["state"] == "up"
    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "up"}


def test_a_down_host_whose_object_is_gone_is_kept_while_an_instance_is_recorded_on_it(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    del kube.hypervisors["h1"]

    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}

    assert _recorded(db_session_factory, "h1")
    assert _scheduled_hosts(db_session_factory) == ["h1", "h2"]
    assert "h1" not in kube.hypervisors
    # Its state flipped all the same: its instance says Unknown.
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Unknown"
    assert kube.status_of(instance_name(two_hosts["h2"]))["phase"] == "Running"

    # It stays checked, and recorded, at the next passes.
    for _ in range(3):
        assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert _recorded(db_session_factory, "h1")

    # Once its instance is gone, the usage it frees is patched for, and the host forgotten.
    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=two_hosts["h1"], host="h1"),
        "req-terminate",
    )
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert not _recorded(db_session_factory, "h1")
    assert conductor.hypervisors.check_hypervisors() == {"h2": "up"}


def test_a_kept_host_whose_object_is_gone_is_not_patched_again_at_every_pass(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
    del kube.hypervisors["h1"]
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}

    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert kube.calls == {}


@pytest.mark.parametrize("how", ["restarted", "came-back"])
def test_an_up_host_whose_object_is_gone_is_kept_and_its_heartbeat_makes_the_object_again(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    idle_host: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "restarted":
        # A restarted operator: its LIST does not have the object, so it patches it all.
        checker = make_conductor(db_session_factory, kube, caster)
    else:
        # This conductor saw it go down; a heartbeat it did not see brings it back up.
        _age_heartbeat(db_session_factory, idle_host, DOWN_TIME_S + 60)
        assert conductor.hypervisors.check_hypervisors()[idle_host] == "down"
        _age_heartbeat(db_session_factory, idle_host, 0)
        checker = conductor
    del kube.hypervisors[idle_host]
    kube.clear()

    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "up"}

    assert _recorded(db_session_factory, idle_host)
    assert _scheduled_hosts(db_session_factory) == ["h1", "h2", idle_host]
    assert kube.calls["patch_hypervisor_status"] == 1
    assert kube.hypervisor_patches == []
    # Remembered, so not patched again at every pass.
    kube.clear()
    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "up"}
    assert kube.calls == {}

    # The next heartbeat that reads the object (the first to a restarted conductor, or the
    # one a resync is due at) makes it again; kopf's create handler for the new object
    # (hypervisor_changed) has the next pass write the host's whole status into it.
    monkeypatch.setattr(hypervisors, "HYPERVISOR_RESYNC_S", 0.0)
    checker.hypervisors.compute_node_report(node_report(idle_host))
    assert kube.calls["ensure_hypervisor"] == 1
    obj = kube.hypervisors[idle_host]
    checker.hypervisors.hypervisor_changed(idle_host, obj["metadata"]["labels"], obj["spec"])
    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "up"}
    status = kube.hypervisors[idle_host]["status"]
    assert status["state"] == "up"
    assert {"vcpus", "memoryMiB", "diskGiB"} <= set(status)
    assert (status["vcpus"]["used"], status["instances"]) == (0, 0)
    assert _recorded(db_session_factory, idle_host)


@pytest.mark.parametrize("restarted", [False, True], ids=["same-conductor", "restarted"])
def test_a_down_host_whose_object_exists_is_kept(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    idle_host: str,
    restarted: bool,
) -> None:
    _age_heartbeat(db_session_factory, idle_host, DOWN_TIME_S + 60)
    checker = make_conductor(db_session_factory, kube, caster) if restarted else conductor
    kube.clear()

    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "down"}

    assert kube.hypervisor_patches == [(idle_host, MARKED_DOWN)]
    assert kube.hypervisors[idle_host]["status"]["state"] == "down"
    assert _recorded(db_session_factory, idle_host)
    assert _scheduled_hosts(db_session_factory) == ["h1", "h2", idle_host]

    kube.clear()
    assert checker.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up", idle_host: "down"}
    assert kube.calls == {}
    assert _recorded(db_session_factory, idle_host)


# -- service_stopping -----------------------------------------------------------------------


def test_a_stopping_service_is_down_at_once_and_up_again_at_its_next_heartbeat(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    conductor.manager.handle(_stopping("h1"), "agent-h1")

    # The scheduler's view: no heartbeat to count from.
    assert _last_seen_up(db_session_factory, "h1") is None
    assert _last_seen_up(db_session_factory, "h2") is not None
    assert kube.hypervisor_patches == [("h1", MARKED_DOWN)]
    assert [name for name, _ in kube.instance_patches] == [instance_name(two_hosts["h1"])]
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Unknown"
    assert kube.status_of(instance_name(two_hosts["h2"]))["phase"] == "Running"

    # The periodic check agrees and has nothing to write.
    kube.clear()
    assert conductor.hypervisors.check_hypervisors() == {"h1": "down", "h2": "up"}
    assert kube.calls == {}

    conductor.hypervisors.compute_node_report(node_report("h1"))
    assert _last_seen_up(db_session_factory, "h1") is not None
    assert kube.hypervisors["h1"]["status"]["state"] == "up"
    assert ("h1", "up") in [(host, patch.get("state")) for host, patch in kube.hypervisor_patches]
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}


def test_a_stopping_service_first_heard_of_after_a_restart_loses_its_agents_count(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    counted: str,
) -> None:
    fresh = make_conductor(db_session_factory, kube, caster)

    fresh.manager.handle(_stopping("h1"), "agent-h1")
    assert fresh.hypervisors.check_hypervisors() == {"h1": "down"}

    status = kube.hypervisors["h1"]["status"]
    assert (status["state"], status["instances"]) == ("down", 1)
    assert "runningInstances" not in status


@pytest.mark.parametrize("went_down", ["service_stopping", "heartbeat_too_old"])
def test_instances_on_a_host_that_heartbeats_again_are_running_again(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
    went_down: str,
) -> None:
    if went_down == "service_stopping":
        conductor.manager.handle(_stopping("h1"), "agent-h1")
    else:
        _age_heartbeat(db_session_factory, "h1", DOWN_TIME_S + 60)
        assert conductor.hypervisors.check_hypervisors()["h1"] == "down"
    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Unknown"

    # The agent starts again: a heartbeat, then its view of the instance, as recorded.
    uuid = two_hosts["h1"]
    conductor.hypervisors.compute_node_report(node_report("h1", instance_uuids=(uuid,)))
    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="active",
            task_state=None,
            power_state="running",
            addresses=("192.168.122.10",),
        )
    )
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}

    assert kube.status_of(instance_name(two_hosts["h1"]))["phase"] == "Running"


def test_a_stopping_report_from_another_user_is_refused_and_changes_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    seen = _last_seen_up(db_session_factory, "h1")

    with pytest.raises(PermanentFailure, match="not 'agent-h1'"):
        conductor.manager.handle(_stopping("h1"), "agent-h2")

    assert _last_seen_up(db_session_factory, "h1") == seen
    assert kube.calls == {}
    assert conductor.hypervisors.check_hypervisors() == {"h1": "up", "h2": "up"}


def test_a_stopping_report_about_an_unknown_host_writes_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    two_hosts: dict[str, str],
) -> None:
    conductor.manager.handle(_stopping("h9"), "agent-h9")
    assert kube.calls == {}
    assert _last_seen_up(db_session_factory, "h1") is not None


def test_service_mark_stopped_touches_only_the_live_service_it_names(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        with db_engine.transaction(db_session_factory) as session:
            db_api.service_record_heartbeat(
                session, host, models.AGENT_BINARY, f"compute.{host}", "1.0"
            )

    with db_engine.transaction(db_session_factory) as session:
        assert db_api.service_mark_stopped(session, "nowhere", models.AGENT_BINARY) is False
        assert db_api.service_mark_stopped(session, "h1", "kubenova-other") is False
    assert _last_seen_up(db_session_factory, "h1") is not None

    with db_engine.transaction(db_session_factory) as session:
        assert db_api.service_mark_stopped(session, "h1", models.AGENT_BINARY) is True
    assert _last_seen_up(db_session_factory, "h1") is None
    assert _last_seen_up(db_session_factory, "h2") is not None
