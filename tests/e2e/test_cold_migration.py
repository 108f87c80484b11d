"""A real guest moved cold with ``kubectl nova migrate`` between the stack's two real libvirt
hosts: shut down, its disk copied to the second host, booted there. What the guest wrote on its
disk before the move is found on the disk it boots from after it (its ``write-marker``), so the
disk moved, not a fresh one from the image; the source keeps no domain, no files and no
claim."""

from __future__ import annotations

import pathlib
import uuid as uuidlib

import pytest

from tests.e2e.conftest import (
    HOST,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    status_of,
    wait_for,
)
from tests.e2e.test_live_migration import _on_libvirt, _used_vcpus
from tests.e2e.test_power_operations import INSTANCES_PATH, _actions, _ok, nova
from tests.support import second_host

pytestmark = pytest.mark.e2e

FLAVOR = "e2e-cold"


def test_a_guest_moves_cold_to_the_second_host_with_what_it_wrote_on_its_disk(
    namespace: str, stack: dict[str, str], second: second_host.SecondAgent
) -> None:
    marker = f"e2e-{uuidlib.uuid4().hex[:10]}"
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    apply(
        instance_manifest(
            "traveller", namespace, FLAVOR, forcedHost=HOST,
            userData=f"#kubenova-guest: write-marker={marker}\n",
        )
    )  # fmt: skip
    wait_for(
        "traveller to be Running",
        lambda: status_of(namespace, "traveller").get("phase") == "Running",
        timeout=180,
    )
    uuid = get("instances", "traveller", namespace)["metadata"]["uid"]
    first_console = INSTANCES_PATH / uuid / "console.log"
    wait_for(
        "the marker to be written on the first host",
        lambda: (
            first_console.exists()
            and f"kubenova-guest: marker written {marker}"
            in first_console.read_text(errors="replace")
        ),
        timeout=180,
    )

    moved = _ok(nova(stack, "migrate", "traveller", "-n", namespace))
    assert f"moved from {HOST} to {second.host}" in moved
    status = status_of(namespace, "traveller")
    assert (status["phase"], status["host"]) == ("Running", second.host)
    assert not _on_libvirt("qemu:///system", uuid)
    assert not (INSTANCES_PATH / uuid).exists()

    # The disk it boots from there is the one it wrote to: the marker is found at boot.
    second_console = pathlib.Path(second.instances_path) / uuid / "console.log"
    wait_for(
        "the guest to find its marker on the second host",
        lambda: (
            second_console.exists()
            and f"kubenova-guest: marker {marker}"
            in second_console.read_text(errors="replace").replace("\r", "").splitlines()
        ),
        timeout=240,
    )
    wait_for(
        "the claims to follow the guest",
        lambda: _used_vcpus(HOST) == 0 and _used_vcpus(second.host) == 1,
        timeout=60,
    )
    wait_for(
        "the migrate action to end in success",
        lambda: (
            [(a["action"], a["result"]) for a in _actions(namespace, "traveller")]
            == [("migrate", "Success")]
        ),
        timeout=60,
    )
