"""A real guest evacuated from a host whose agent died, with ``kubectl nova evacuate``, between
the stack's two real libvirt hosts. Refused while its host is up; once the host is down it is
rebuilt from its image on the other host (a fresh boot: the disk's contents are lost, as in
Nova without shared storage). The dead host's QEMU guest goes on running meanwhile, as a
crashed agent leaves it. When the host's agent comes back, it terminates that stale copy
instead of starting or reporting it, and its claim there is freed; the evacuated guest keeps
running on its new host, undisturbed."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.e2e.conftest import (
    HOST,
    get,
    kubectl,
    status_of,
    wait_for,
)
from tests.e2e.test_live_migration import (
    _counting_above,
    _on_libvirt,
    _used_vcpus,
    boot_counting,
)
from tests.e2e.test_power_operations import INSTANCES_PATH, _actions, _ok, nova
from tests.support import second_host

pytestmark = pytest.mark.e2e


def _hypervisor_state(host: str) -> str | None:
    return ((get("hypervisors", host) or {}).get("status") or {}).get("state")


def test_a_guest_on_a_dead_host_is_rebuilt_elsewhere_and_its_stale_copy_never_returns(
    namespace: str, stack: dict[str, str], second: second_host.SecondAgent
) -> None:
    uuid, counted = boot_counting(
        namespace, "refugee", second.host, pathlib.Path(second.instances_path)
    )
    stale_console = pathlib.Path(second.instances_path) / uuid / "console.log"
    stale_boot = counted[-1][1]

    refused = nova(stack, "evacuate", "refugee", "-n", namespace)
    assert refused.returncode == 1, refused
    assert f"cannot evacuate: its host {second.host} is up" in refused.stderr, refused
    assert status_of(namespace, "refugee")["host"] == second.host

    second.kill()  # a crash: the guest's QEMU, a child of libvirtd, goes on running
    wait_for(f"{second.host} to be down", lambda: _hypervisor_state(second.host) == "down", 90)
    assert _on_libvirt(second_host.uri(), uuid)

    evacuated = _ok(nova(stack, "evacuate", "refugee", "-n", namespace, timeout=300))
    print(evacuated)
    assert f"instance refugee rebuilt on {HOST} (its host {second.host} is down)" in evacuated
    status = status_of(namespace, "refugee")
    assert (status["phase"], status["host"]) == ("Running", HOST)
    assert _on_libvirt("qemu:///system", uuid)
    new_console = INSTANCES_PATH / uuid / "console.log"
    counted = _counting_above(new_console, 1)
    new_boot = counted[-1][1]
    assert new_boot != stale_boot, "a rebuild boots afresh"
    listed = json.loads(kubectl("get", "instancemigrations", "-n", namespace, "-o", "json").stdout)
    # The refused request stays as a Failed InstanceMigration, as a user's record of it.
    assert sorted((m["spec"]["type"], m["status"]["phase"]) for m in listed["items"]) == [
        ("Evacuate", "Failed"),
        ("Evacuate", "Succeeded"),
    ]
    # Both claims are held while the dead host may still hold the guest.
    assert _used_vcpus(HOST) == 1

    second.start()  # the host returns, its stale guest still running
    wait_for(
        f"{second.host}'s stale copy to be terminated",
        lambda: not _on_libvirt(second_host.uri(), uuid) and not stale_console.parent.exists(),
        timeout=120,
    )
    wait_for(f"{second.host} to be up", lambda: _hypervisor_state(second.host) == "up", 90)
    wait_for(
        f"{second.host}'s claim to be freed",
        lambda: _used_vcpus(second.host) == 0,
        timeout=60,
    )
    status = status_of(namespace, "refugee")
    assert (status["phase"], status["host"]) == ("Running", HOST)
    after = _counting_above(new_console, counted[-1][0])
    assert {b for _, b in after} == {new_boot}, f"the evacuated guest was disturbed: {after}"
    wait_for(
        "the history of the evacuation",
        lambda: (
            [(a["action"], a["result"]) for a in _actions(namespace, "refugee")]
            == [("evacuate", "Success")]
        ),
        timeout=60,
    )
