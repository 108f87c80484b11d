"""A real guest live-migrated with ``kubectl nova migrate --live`` between the stack's two real
libvirt hosts (the second libvirtd in a mount namespace of its own, with its own agent), there
and back. The guest never stops: the counter it prints on its serial console every second keeps
one boot id and goes on counting across both moves. The InstanceMigration carries libvirt's
total time and downtime, which the test prints; the source keeps no domain and no claim."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import libvirt
import pytest

from tests.e2e.conftest import (
    AGENT,
    HOST,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    status_of,
    wait_for,
)
from tests.e2e.test_power_operations import INSTANCES_PATH, _actions, _ok, nova
from tests.support import second_host

pytestmark = pytest.mark.e2e

FLAVOR = "e2e-live"
COUNT = re.compile(r"kubenova-guest: count (\d+) boot=(\S*)")


def _counts(console: pathlib.Path) -> list[tuple[int, str]]:
    text = console.read_text(errors="replace") if console.exists() else ""
    return [(int(n), boot) for n, boot in COUNT.findall(text)]


def _counting_above(console: pathlib.Path, above: int) -> list[tuple[int, str]]:
    return wait_for(
        f"the guest's counter above {above} in {console}",
        lambda: (found := _counts(console)) and found[-1][0] > above and found,
        timeout=180,
    )


def _on_libvirt(uri: str, uuid: str) -> bool:
    connection = libvirt.open(uri)
    try:
        connection.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return False
    finally:
        connection.close()
    return True


def _used_vcpus(host: str) -> int:
    status = (get("hypervisors", host) or {}).get("status") or {}
    return int((status.get("vcpus") or {}).get("used") or 0)


def boot_counting(
    namespace: str, name: str, host: str, instances: pathlib.Path
) -> tuple[str, list[tuple[int, str]]]:
    """A guest on ``host`` that prints a counter, Running and counting: its uuid and the counts
    its console shows so far."""
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    apply(
        instance_manifest(
            name, namespace, FLAVOR, userData="#kubenova-guest: count\n", forcedHost=host
        )
    )
    wait_for(
        f"{name} to be Running",
        lambda: status_of(namespace, name).get("phase") == "Running",
        timeout=180,
    )
    uuid: str = get("instances", name, namespace)["metadata"]["uid"]
    return uuid, _counting_above(instances / uuid / "console.log", 2)


def test_a_running_guest_moves_live_between_two_real_hosts_and_back_without_a_reboot(
    namespace: str, stack: dict[str, str], second: second_host.SecondAgent
) -> None:
    uuid, before = boot_counting(namespace, "mover", HOST, INSTANCES_PATH)
    first_console = INSTANCES_PATH / uuid / "console.log"
    boot = before[-1][1]

    # There: the scheduler's pick, the only other host.
    moved = _ok(nova(stack, "migrate", "mover", "--live", "-n", namespace))
    print(moved)
    assert f"moved from {HOST} to {second.host}" in moved
    assert status_of(namespace, "mover")["host"] == second.host
    assert not _on_libvirt("qemu:///system", uuid)
    assert _on_libvirt(second_host.uri(), uuid)
    second_console = pathlib.Path(second.instances_path) / uuid / "console.log"
    there = _counting_above(second_console, before[-1][0])
    assert {b for _, b in there} == {boot}, f"the guest rebooted: {there}"

    listed = kubectl("get", "instancemigrations", "-n", namespace, "-o", "json").stdout
    (migration,) = json.loads(listed)["items"]
    status = migration["status"]
    assert (status["phase"], status["sourceHost"], status["targetHost"]) == (
        "Succeeded",
        HOST,
        second.host,
    )
    assert status["totalSeconds"] > 0
    print(
        f"live migration {HOST} -> {second.host}: {status['totalSeconds']} s "
        f"(libvirt), downtime {status.get('downtimeMilliseconds')} ms"
    )
    wait_for(
        "the source's claim to be freed",
        lambda: _used_vcpus(HOST) == 0 and _used_vcpus(second.host) == 1,
        timeout=60,
    )

    # And back, to the host asked for.
    back = _ok(nova(stack, "migrate", "mover", "--live", "--host", HOST, "-n", namespace))
    assert f"moved from {second.host} to {HOST}" in back
    assert status_of(namespace, "mover")["host"] == HOST
    assert not _on_libvirt(second_host.uri(), uuid)
    again = _counting_above(first_console, there[-1][0])
    assert {b for _, b in again} == {boot}, f"the guest rebooted: {again}"

    wait_for(
        "the history of the moves",
        lambda: (
            [(a["action"], a["result"]) for a in _actions(namespace, "mover")]
            == [("live-migration", "Success"), ("live-migration", "Success")]
        ),
        timeout=60,
    )


def test_killing_the_source_agent_in_the_middle_of_a_live_migration_leaves_nothing_stuck(
    namespace: str, stack: dict[str, str], second: second_host.SecondAgent
) -> None:
    """The source's agent is killed (SIGKILL) while libvirt moves the guest, and started again.
    Whatever the moment: its ``live_migration`` message comes back from the broker and runs
    again (libvirt ends a move whose driving client died, and the guest stays at the source),
    or, the guest having already moved, that step fails at the source and the rollback finds
    it on the destination. Either way the move ends, the instance is in no task state, the
    guest runs on exactly one host and never rebooted, and each host's claim is right."""
    uuid, before = boot_counting(namespace, "survivor", HOST, INSTANCES_PATH)
    boot = before[-1][1]

    _ok(nova(stack, "migrate", "survivor", "--live", "-n", namespace, "--no-wait"))

    def migrating() -> bool:
        items = json.loads(
            kubectl("get", "instancemigrations", "-n", namespace, "-o", "json").stdout
        )["items"]
        return any((m.get("status") or {}).get("phase") == "Running" for m in items)

    wait_for("the live migration to be under way", migrating, timeout=60, interval=0.05)
    AGENT.kill()
    AGENT.restart()

    def ended() -> dict[str, Any] | None:
        (migration,) = json.loads(
            kubectl("get", "instancemigrations", "-n", namespace, "-o", "json").stdout
        )["items"]
        status: dict[str, Any] = migration.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    outcome = wait_for("the live migration to end", ended, timeout=240)
    print(f"after the kill: {outcome['phase']}: {outcome.get('message')}")
    status = wait_for(
        "survivor to be in no task state",
        lambda: (s := status_of(namespace, "survivor")).get("taskState") is None and s,
        timeout=120,
    )
    assert status["phase"] == "Running"
    where = {
        host: _on_libvirt(uri, uuid)
        for host, uri in ((HOST, "qemu:///system"), (second.host, second_host.uri()))
    }
    assert list(where.values()).count(True) == 1, where
    assert where[status["host"]], (status["host"], where)
    # The source is the only other host: a Succeeded move ends on the second one.
    assert (outcome["phase"] == "Succeeded") == (status["host"] == second.host), outcome
    console_dir = INSTANCES_PATH if status["host"] == HOST else pathlib.Path(second.instances_path)
    after = _counting_above(console_dir / uuid / "console.log", before[-1][0])
    assert {b for _, b in after} == {boot}, f"the guest rebooted: {after}"
    other = second.host if status["host"] == HOST else HOST
    wait_for(
        "the claims to follow the guest",
        lambda: _used_vcpus(status["host"]) == 1 and _used_vcpus(other) == 0,
        timeout=60,
    )
