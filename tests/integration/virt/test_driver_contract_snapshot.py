"""The ComputeDriver contract's snapshot, proved against the TestDriver and the LibvirtDriver
alike (see conftest.py).

A snapshot leaves the instance in the power state it found it in (a running guest is paused
only for the copy), refuses a target that exists and an instance it does not have, and leaves
nothing behind when it fails. With the LibvirtDriver the copy is a standalone qcow2 of the
disk's virtual size; with the tiny guest image, a guest writes a marker to its disk, the disk is
snapshotted while the guest runs, and a second instance booted from the snapshot finds the
marker: the snapshot holds the guest's disk state.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import time
import uuid

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState
from tests.integration.virt.conftest import Harness, _traversable_tmpdir
from tests.support.required import missing

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
GUEST_BOOT_TIMEOUT = 180.0
READY = "kubenova-guest: ready"


@pytest.fixture
def workdir():
    path = _traversable_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _qemu_img_info(path: pathlib.Path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(
    ("prepare", "power"),
    [
        (lambda driver, uuid: None, PowerState.RUNNING),
        (lambda driver, uuid: driver.pause(uuid), PowerState.PAUSED),
        (lambda driver, uuid: driver.power_off(uuid, 0), PowerState.SHUTDOWN),
    ],
    ids=["running", "paused", "stopped"],
)
def test_a_snapshot_writes_the_image_and_leaves_the_power_state_as_it_was(
    driver_harness: Harness, workdir: pathlib.Path, prepare, power
) -> None:
    harness = driver_harness
    instance = harness.instance()
    harness.driver.spawn(instance)
    prepare(harness.driver, instance.uuid)
    target = workdir / "snapshot.qcow2"

    harness.driver.snapshot(instance.uuid, str(target))

    assert target.is_file()
    assert target.stat().st_size > 0
    assert harness.driver.get_power_state(instance.uuid) is power
    if harness.kind == "libvirt":
        info = _qemu_img_info(target)
        assert info["format"] == "qcow2"
        assert "backing-filename" not in info
        assert info["virtual-size"] == instance.disk_gib << 30
        # The copy made beside the disk is gone.
        assert harness.instances_path is not None
        names = {p.name for p in (harness.instances_path / instance.uuid).iterdir()}
        # console.sock: the serial console's socket, QEMU's since it started.
        assert names - {"console.sock"} == {"disk", "disk.config", "console.log"}


def test_a_snapshot_of_an_instance_the_driver_does_not_have_leaves_nothing(
    driver_harness: Harness, workdir: pathlib.Path
) -> None:
    target = workdir / "snapshot.qcow2"
    with pytest.raises(exceptions.InstanceNotFound):
        driver_harness.driver.snapshot(UNKNOWN_UUID, str(target))
    assert not target.exists()
    assert driver_harness.leftovers(UNKNOWN_UUID) == []


def test_a_snapshot_never_writes_over_an_existing_file(
    driver_harness: Harness, workdir: pathlib.Path
) -> None:
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    target = workdir / "taken.qcow2"
    target.write_bytes(b"not yours")

    with pytest.raises(exceptions.SnapshotFailed):
        driver_harness.driver.snapshot(instance.uuid, str(target))
    assert target.read_bytes() == b"not yours"
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.RUNNING


# -- a real guest -------------------------------------------------------------------------------


def _console(harness: Harness, instance_uuid: str) -> str:
    path = harness.driver.console_log_path(instance_uuid)
    text = pathlib.Path(path).read_text(errors="replace") if path else ""
    return text.replace("\r", "")


def _wait_for(harness: Harness, instance_uuid: str, line: str) -> str:
    deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
    while True:
        text = _console(harness, instance_uuid)
        if line in text.splitlines():
            return text
        assert "kubenova-guest: dhcp failed" not in text, text[-2000:]
        assert time.monotonic() < deadline, f"no {line!r} in:\n{text[-2000:]}"
        time.sleep(0.5)


def test_an_instance_booted_from_a_snapshot_finds_what_the_guest_wrote_to_its_disk(
    driver_harness: Harness, workdir: pathlib.Path
) -> None:
    harness = driver_harness
    if harness.kind != "libvirt":
        pytest.skip("only the LibvirtDriver runs guests")
    if not harness.served.boots:
        missing("the tiny guest image is not built (hack/guest/build.sh)")
    marker = f"snap-{uuid.uuid4().hex[:12]}"
    source = harness.instance(user_data=f"#kubenova-guest: write-marker={marker}\n".encode())
    harness.driver.spawn(source)
    first = _wait_for(harness, source.uuid, READY)
    if f"kubenova-guest: switch write-marker={marker}" not in first:
        missing("the tiny guest image predates write-marker: rebuild it (hack/guest/build.sh)")
    assert f"kubenova-guest: marker written {marker}" in first.splitlines()
    # A disk fresh from the image has no marker of its own.
    assert not [
        line
        for line in first.splitlines()
        if line.startswith("kubenova-guest: marker ")
        and not line.startswith("kubenova-guest: marker written")
    ]

    target = workdir / "snapshot.qcow2"
    started = time.monotonic()
    harness.driver.snapshot(source.uuid, str(target))
    took = time.monotonic() - started
    print(f"snapshot of a running tiny guest: {took:.2f} s, {target.stat().st_size} bytes")

    # The guest was paused for the copy and runs on, never rebooted.
    assert harness.driver.get_power_state(source.uuid) is PowerState.RUNNING
    time.sleep(2)
    assert _console(harness, source.uuid).count(READY) == 1

    served = harness.server.directory / f"snapshot-{uuid.uuid4().hex[:8]}.qcow2"
    shutil.copyfile(target, served)
    image = virt_driver.ImageRef(
        name="from-snapshot",
        url=harness.server.url(served.name),
        sha256=hashlib.sha256(served.read_bytes()).hexdigest(),
        disk_format="qcow2",
    )
    booted = harness.instance(image=image, user_data=None, hostname="from-snapshot")
    harness.driver.spawn(booted)
    second = _wait_for(harness, booted.uuid, READY)

    assert f"kubenova-guest: marker {marker}" in second.splitlines()
    assert "kubenova-guest: marker written" not in second
