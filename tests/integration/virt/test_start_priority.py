"""Starting guests first, on the real libvirtd (hack/services.sh libvirt-up): a guest the
LibvirtDriver starts runs at the least CPU weight, in libvirt's live XML and in its QEMU's
cgroup, every time it is started; with the setting off it keeps libvirt's default weight."""

from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.integration.virt import conftest

pytestmark = pytest.mark.integration

#: libvirt's weight for a domain whose XML names none (cgroup v1's default cpu.shares).
LIBVIRT_DEFAULT_SHARES = "1024"
#: Where cgroup v1's CPU controller is mounted, when it is.
CGROUP_V1_CPU = pathlib.Path("/sys/fs/cgroup/cpu")


@pytest.fixture
def harness(image_files) -> Iterator[conftest.Harness]:
    with conftest._harness("libvirt", image_files) as made:
        yield made


def live_shares(harness: conftest.Harness, instance_uuid: str) -> str | None:
    domain = harness.raw_domain(instance_uuid)
    assert domain is not None
    assert domain.is_active()
    return ET.fromstring(domain.xml_desc()).findtext("cputune/shares")


def cgroup_cpu_shares(instance_uuid: str) -> str | None:
    """The cpu.shares of the guest's QEMU cgroup, found through /proc; None when this machine
    has no cgroup v1 CPU controller to read it from."""
    if not (CGROUP_V1_CPU / "cpu.shares").exists():
        return None
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            groups = (entry / "cgroup").read_text().splitlines()
        except OSError:
            continue
        if instance_uuid.encode() not in argv:
            continue
        for line in groups:
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                # The emulator's group is a child of the domain's, which carries the weight.
                domain_group = pathlib.PurePosixPath(path).parent
                return (
                    (CGROUP_V1_CPU / domain_group.relative_to("/") / "cpu.shares")
                    .read_text()
                    .strip()
                )
    raise AssertionError(f"no QEMU process with {instance_uuid} in its arguments")


def test_a_started_guest_runs_at_the_least_weight_after_each_start(harness):
    instance = harness.instance()
    harness.driver.spawn(instance)
    assert live_shares(harness, instance.uuid) == "2"
    # A start after a stop: libvirt starts it at the default weight again, then it is lowered.
    harness.driver.power_off(instance.uuid, timeout_s=0)
    harness.driver.power_on(instance.uuid)
    assert live_shares(harness, instance.uuid) == "2"


def test_with_the_setting_off_a_guest_keeps_libvirts_default_weight(harness):
    harness.driver._start_priority.enabled = False  # type: ignore[attr-defined]
    instance = harness.instance()
    harness.driver.spawn(instance)
    assert live_shares(harness, instance.uuid) in (None, LIBVIRT_DEFAULT_SHARES)
    assert cgroup_cpu_shares(instance.uuid) in (LIBVIRT_DEFAULT_SHARES, None)


def test_this_machine_shows_the_weight_in_the_guests_cgroup(harness):
    # Where the CPU controller is mounted (cgroup v1, as here), the weight libvirt reports is
    # the one the kernel applies.
    if not (CGROUP_V1_CPU / "cpu.shares").exists():
        pytest.skip("no cgroup v1 CPU controller on this machine")
    instance = harness.instance()
    harness.driver.spawn(instance)
    assert cgroup_cpu_shares(instance.uuid) == "2"
