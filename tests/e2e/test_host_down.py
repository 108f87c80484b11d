"""A host that stops heartbeating goes down, its instances say Unknown, and deleting
one of them does not wait for the host."""

from __future__ import annotations

import os
import signal

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import (
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _hypervisor_state(host: str) -> str | None:
    return ((get("hypervisors", host) or {}).get("status") or {}).get("state")


def test_instance_on_a_dead_host_is_unknown_and_deletes_without_it(namespace, stack, sim_hosts):
    # Far more memory than the real host, so the RAM weigher places the instance here.
    host = sim_hosts("dead", vcpus=64, memory_mib=4000000, disk_gib=10000)
    agent = sim_hosts.process(host)
    apply(flavor_manifest("e2e-nano", 1, 128, 1))
    apply(instance_manifest("onsim", namespace, "e2e-nano"))
    status = wait_for(
        "the instance to run on the simulated host",
        lambda: (
            (s := (get("instances", "onsim", namespace) or {}).get("status") or {}).get("phase")
            == "Running"
            and s
        ),
        timeout=60,
    )
    assert status["host"] == host
    instance_uuid = get("instances", "onsim", namespace)["metadata"]["uid"]

    os.killpg(agent.pid, signal.SIGKILL)  # a crash: no goodbye, no more heartbeats
    agent.wait()
    wait_for(f"{host} to be marked down", lambda: _hypervisor_state(host) == "down", 90)
    wait_for(
        "the instance to be Unknown",
        lambda: (
            (get("instances", "onsim", namespace) or {}).get("status", {}).get("phase") == "Unknown"
        ),
        timeout=30,
    )

    kubectl("delete", "instance", "onsim", "-n", namespace, "--timeout=30s")
    engine = sa.create_engine(stack["KUBENOVA_DB_URL"])
    with engine.connect() as connection:
        held = connection.execute(
            sa.text("SELECT COUNT(*) FROM allocations WHERE instance_uuid = :u"),
            {"u": instance_uuid},
        ).scalar_one()
        deleted = connection.execute(
            sa.text("SELECT deleted FROM instances WHERE uuid = :u"), {"u": instance_uuid}
        ).scalar_one()
    assert held == 0
    assert deleted != 0

    # An administrator forgets the dead, empty host by deleting its Hypervisor.
    kubectl("delete", "hypervisor", host)

    def forgotten():
        with engine.connect() as connection:
            return not connection.execute(
                sa.text("SELECT COUNT(*) FROM compute_nodes WHERE host = :h AND deleted = 0"),
                {"h": host},
            ).scalar_one()

    wait_for(f"{host} to be forgotten", forgotten, timeout=30)
    engine.dispose()
