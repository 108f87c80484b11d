"""A real guest resized with ``kubectl nova resize`` on its host (the one libvirt host of the
e2e stack): it boots again with the new flavor's memory and vCPUs and waits in VerifyResize;
a confirmation keeps it, a revert brings back the old flavor; a smaller disk is refused."""

from __future__ import annotations

import libvirt
import pytest

from tests.e2e.conftest import apply, flavor_manifest, get, status_of, wait_for
from tests.e2e.test_power_operations import FLAVOR, _actions, _boot, _boots, _ok, nova

pytestmark = pytest.mark.e2e

BIG = "e2e-resize-big"
MID = "e2e-resize-mid"


def _domain_size(uuid: str) -> tuple[int, int]:
    """The domain's vCPUs and memory (MiB), as libvirt defines it."""
    connection = libvirt.open("qemu:///system")
    try:
        domain = connection.lookupByUUIDString(uuid)
        return domain.info()[3], domain.maxMemory() // 1024
    finally:
        connection.close()


def test_a_guest_is_resized_where_it_is_confirmed_and_a_second_resize_reverted(
    namespace: str, stack: dict[str, str]
) -> None:
    uuid = _boot(namespace, "grow")
    host = status_of(namespace, "grow")["host"]
    apply(flavor_manifest(BIG, 2, 192, 2))
    apply(flavor_manifest(MID, 1, 160, 2))

    resized = nova(stack, "resize", "grow", BIG, "-n", namespace)
    assert "resize-confirm grow" in _ok(resized)
    status = status_of(namespace, "grow")
    assert (status["phase"], status["host"], status["resize"]["oldFlavor"]) == (
        "VerifyResize",
        host,
        FLAVOR,
    )
    assert _domain_size(uuid) == (2, 192)
    wait_for("the boot with the new flavor", lambda: _boots(uuid) >= 2, timeout=180)

    _ok(nova(stack, "resize-confirm", "grow", "-n", namespace))
    status = status_of(namespace, "grow")
    assert status["phase"] == "Running"
    assert "resize" not in status

    # A second resize, reverted: the old flavor (and its memory) comes back.
    boots = _boots(uuid)
    _ok(nova(stack, "resize", "grow", MID, "-n", namespace))
    assert _domain_size(uuid) == (1, 160)
    wait_for("the boot with the middle flavor", lambda: _boots(uuid) > boots, timeout=180)
    _ok(nova(stack, "resize-revert", "grow", "-n", namespace))
    status = status_of(namespace, "grow")
    assert (status["phase"], get("instances", "grow", namespace)["spec"]["flavor"]) == (
        "Running",
        BIG,
    )
    assert _domain_size(uuid) == (2, 192)

    # The history: each operation an InstanceAction that ended in Success.
    wait_for(
        "the history of the resizes",
        lambda: (
            [(a["action"], a["result"]) for a in _actions(namespace, "grow")]
            == [
                ("resize", "Success"),
                ("confirmResize", "Success"),
                ("resize", "Success"),
                ("revertResize", "Success"),
            ]
        ),
        timeout=60,
    )

    # A flavor with less disk than the instance has is refused, and nothing changes.
    refused = nova(stack, "resize", "grow", FLAVOR, "-n", namespace)
    assert refused.returncode == 1, refused
    assert "a disk never shrinks" in refused.stdout + refused.stderr
    assert status_of(namespace, "grow")["phase"] == "Running"
    assert _domain_size(uuid) == (2, 192)
