"""Placement on simulated hosts: server groups, zones, labels, disabled and forced hosts,
and rescheduling of failed builds. Every instance here is confined by a node selector to
the hosts its test started, so the real host and other tests' hosts do not interfere."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import (
    apply,
    condition_of,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLAVOR = "e2e-sched"
ZONE_LABEL = "topology.kubernetes.io/zone"


@pytest.fixture
def pool() -> dict[str, str]:
    """A label only this test's hosts carry.

    Prefixed with a letter: a bare hex value such as ``42830870e8`` is a string to PyYAML,
    which therefore writes it unquoted, but a float to kubectl's YAML 1.2 parser, and the
    apiserver then refuses the Instance's nodeSelector."""
    return {"e2e.kubenova.io/pool": f"p{uuid.uuid4().hex[:10]}"}


@pytest.fixture(autouse=True)
def flavor(stack):
    apply(flavor_manifest(FLAVOR, 1, 256, 1))


def _instance(name, namespace, pool, **spec):
    node_selector = {**pool, **spec.pop("nodeSelector", {})}
    return instance_manifest(name, namespace, FLAVOR, nodeSelector=node_selector, **spec)


def _server_group(name, namespace, policy, **rules):
    manifest = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "ServerGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"policy": policy},
    }
    if rules:
        manifest["spec"]["rules"] = rules
    return manifest


def _running_host(namespace, name, timeout=60):
    status = wait_for(
        f"{name} to be Running",
        lambda: (s := status_of(namespace, name)).get("phase") == "Running" and s,
        timeout=timeout,
    )
    return status["host"]


def test_anti_affinity_places_members_apart_and_leaves_the_extra_one_pending(
    namespace, sim_hosts, pool
):
    hosts = {sim_hosts(f"aa{i}", labels=pool) for i in range(3)}
    apply(_server_group("apart", namespace, "anti-affinity"))
    apply([_instance(f"m{i}", namespace, pool, serverGroup="apart") for i in range(4)])

    def placed_and_pending():
        phases = {f"m{i}": status_of(namespace, f"m{i}").get("phase") for i in range(4)}
        running = [name for name, phase in phases.items() if phase == "Running"]
        pending = [name for name, phase in phases.items() if phase == "Pending"]
        return len(running) == 3 and len(pending) == 1 and (running, pending)

    running, pending = wait_for("3 members Running, 1 Pending", placed_and_pending, timeout=90)
    assert {status_of(namespace, name)["host"] for name in running} == hosts
    # A member that lost the race for the group's last host may first say so; its next
    # attempt sees every member and names the policy.
    scheduled = wait_for(
        "the extra member's condition to name anti-affinity",
        lambda: (
            "3 anti-affinity"
            in (c := condition_of(namespace, pending[0], "Scheduled")).get("message", "")
            and c
        ),
        timeout=30,
    )
    assert scheduled["status"] == "False"
    assert status_of(namespace, pending[0])["phase"] == "Pending"
    # The group's status counts its members, one per host (the pending one has never been
    # claimed into the group, so it is not a member yet).
    group_status = wait_for(
        "the ServerGroup's status to count its members",
        lambda: (
            (s := (get("servergroups", "apart", namespace) or {}).get("status") or {}).get(
                "memberCount"
            )
            == 3
            and s
        ),
        timeout=30,
    )
    assert group_status["hosts"] == dict.fromkeys(hosts, 1)


def test_affinity_keeps_members_on_one_host(namespace, sim_hosts, pool):
    for i in range(3):
        sim_hosts(f"af{i}", labels=pool)
    apply(_server_group("together", namespace, "affinity"))
    apply(_instance("first", namespace, pool, serverGroup="together"))
    first_host = _running_host(namespace, "first")
    apply([_instance(f"next{i}", namespace, pool, serverGroup="together") for i in range(2)])
    assert {_running_host(namespace, f"next{i}") for i in range(2)} == {first_host}


def test_zone_and_node_selector_are_honoured(namespace, sim_hosts, pool):
    zone = uuid.uuid4().hex[:6]
    sim_hosts("z1", labels={**pool, ZONE_LABEL: f"{zone}-1"})
    in_zone_2 = sim_hosts("z2", labels={**pool, ZONE_LABEL: f"{zone}-2"}, memory_mib=4096)
    with_gpu = sim_hosts(
        "gpu", labels={**pool, ZONE_LABEL: f"{zone}-1", "gpu": "yes"}, memory_mib=4096
    )
    apply(_instance("zoned", namespace, pool, availabilityZone=f"{zone}-2"))
    apply(_instance("gpu", namespace, pool, nodeSelector={"gpu": "yes"}))
    assert _running_host(namespace, "zoned") == in_zone_2
    assert _running_host(namespace, "gpu") == with_gpu
    assert status_of(namespace, "zoned")["availabilityZone"] == f"{zone}-2"


def test_disabled_host_gets_nothing_new_and_keeps_what_it_runs(namespace, sim_hosts, pool):
    host = sim_hosts("dis", labels=pool)
    apply(_instance("before", namespace, pool))
    assert _running_host(namespace, "before") == host

    kubectl(
        "patch",
        "hypervisor",
        host,
        "--type=merge",
        "-p",
        '{"spec": {"disabled": true, "disabledReason": "maintenance"}}',
    )
    # The operator says when the disable is in force; from then on nothing new lands here.
    applied = wait_for(
        "the Hypervisor's status to say it is disabled",
        lambda: (s := (get("hypervisors", host) or {}).get("status") or {}).get("disabled") and s,
        timeout=30,
    )
    assert applied["disabledReason"] == "maintenance"
    apply(_instance("after", namespace, pool))
    scheduled = wait_for(
        "the new instance to be refused by the disabled host",
        lambda: (
            "disabled" in (c := condition_of(namespace, "after", "Scheduled")).get("message", "")
            and c
        ),
        timeout=60,
    )
    assert scheduled["status"] == "False"
    assert status_of(namespace, "before")["phase"] == "Running"

    kubectl("patch", "hypervisor", host, "--type=merge", "-p", '{"spec": {"disabled": false}}')
    assert _running_host(namespace, "after") == host


def test_forced_host_wins_over_the_weighers(namespace, sim_hosts, pool):
    sim_hosts("big", labels=pool, memory_mib=65536)
    small = sim_hosts("small", labels=pool, memory_mib=2048)
    apply(_instance("forced", namespace, pool, forcedHost=small))
    assert _running_host(namespace, "forced") == small


def test_failed_builds_go_to_an_alternate(namespace, sim_hosts, pool):
    # The RAM weigher tries the biggest hosts first: both of them are broken.
    sim_hosts("broken1", labels=pool, memory_mib=32768, fail_builds="disk on fire")
    sim_hosts("broken2", labels=pool, memory_mib=16384, fail_builds="disk on fire")
    healthy = sim_hosts("healthy", labels=pool, memory_mib=8192)
    apply(_instance("resilient", namespace, pool))
    assert _running_host(namespace, "resilient") == healthy


def test_build_failing_on_every_attempt_ends_in_error_listing_each_host(namespace, sim_hosts, pool):
    broken = {sim_hosts(f"bad{i}", labels=pool, fail_builds=f"broken {i}") for i in range(3)}
    apply(_instance("doomed", namespace, pool))
    status = wait_for(
        "the instance to be in Error",
        lambda: (s := status_of(namespace, "doomed")).get("phase") == "Error" and s,
        timeout=90,
    )
    message = status["fault"]["message"]
    assert "3 host(s)" in message
    for host in broken:
        assert host in message


def _hypervisor_status(host):
    return (get("hypervisors", host) or {}).get("status") or {}


def _condition(status, type_):
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def test_a_hosts_own_cpu_allocation_ratio_bounds_what_is_placed_on_it(namespace, sim_hosts, pool):
    # One real vCPU: Nova's default ratio of 4.0 would take four 1-vCPU instances.
    host = sim_hosts("ratio", labels=pool, vcpus=1)
    kubectl(
        "patch", "hypervisor", host, "--type=merge",
        "-p", '{"spec": {"allocationRatios": {"cpu": 2}}}',
    )  # fmt: skip
    wait_for(
        "the Hypervisor's status to show the ratio in force",
        lambda: _hypervisor_status(host).get("allocationRatios", {}).get("cpu") == 2,
        timeout=30,
    )
    listed = kubectl("get", "hypervisor", host).stdout
    header, row = listed.splitlines()[:2]
    assert "CPU-RATIO" in header.split()
    assert row.split()[header.split().index("CPU-RATIO")] == "2"

    for name in ("r1", "r2", "r3"):
        apply(_instance(name, namespace, pool))
    assert {_running_host(namespace, "r1"), _running_host(namespace, "r2")} == {host}
    scheduled = wait_for(
        "the third instance to be refused for vCPUs",
        lambda: (
            "vcpu" in (c := condition_of(namespace, "r3", "Scheduled")).get("message", "") and c
        ),
        timeout=60,
    )
    assert scheduled["status"] == "False"

    # A higher ratio makes room at once; the waiting instance is placed on its next try.
    kubectl(
        "patch", "hypervisor", host, "--type=merge",
        "-p", '{"spec": {"allocationRatios": {"cpu": 3}}}',
    )  # fmt: skip
    assert _running_host(namespace, "r3", timeout=90) == host

    # Lowered below what is placed: allowed, as in Nova, and the status says so.
    kubectl(
        "patch", "hypervisor", host, "--type=merge",
        "-p", '{"spec": {"allocationRatios": {"cpu": 1}}}',
    )  # fmt: skip
    over = wait_for(
        "the OverCapacity condition",
        lambda: (
            (c := _condition(_hypervisor_status(host), "OverCapacity")).get("status") == "True"
            and c
        ),
        timeout=60,
    )
    assert "vcpus" in over["message"]
    assert all(status_of(namespace, n)["phase"] == "Running" for n in ("r1", "r2", "r3"))

    # Removing the ratio puts Nova's default back.
    kubectl(
        "patch", "hypervisor", host, "--type=merge", "-p", '{"spec": {"allocationRatios": null}}'
    )
    wait_for(
        "the default ratio back in the status",
        lambda: _hypervisor_status(host).get("allocationRatios", {}).get("cpu") == 4,
        timeout=30,
    )
