"""The ComputeDriver contract's rebuild, proved against the TestDriver and the LibvirtDriver
alike (see conftest.py).

What a rebuild keeps (the domain's uuid and name, its MAC address, the console log) and what
it makes new (the root disk, on the new image's cached file, and the config drive), where a
failure leaves the instance, and that doing it twice ends as doing it once. With the
LibvirtDriver and the tiny guest image, one test boots the guest, rebuilds it and watches it
boot again with the new user-data and the same address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import subprocess
import time
import uuid
from typing import Any

import pycdlib
import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.libvirt import connection, domain_xml
from kubenova_agent.virt.power_state import PowerState
from kubenova_agent.virt.testdriver import TestDriver
from tests.integration.virt.conftest import Harness, ImageServer, ServedImage
from tests.support.required import missing

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
GUEST_BOOT_TIMEOUT = 120.0
READY = "kubenova-guest: ready"


@pytest.fixture(scope="module")
def other_image(image_files: tuple[ImageServer, ServedImage]) -> virt_driver.ImageRef:
    """Another image to rebuild from: the served image converted to a qcow2 with other
    clusters, so the same guest with another sha256 (another file in the image cache)."""
    server, served = image_files
    source = server.directory / served.image.url.rsplit("/", 1)[1]
    copy = server.directory / f"rebuild-{source.name}"
    if not copy.exists():
        if source.read_bytes()[:4] != b"QFI\xfb":
            pytest.skip("no qcow2 to convert (qemu-img is missing)")
        subprocess.run(
            ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2",
             "-o", "cluster_size=32768", str(source), str(copy)],
            check=True,
        )  # fmt: skip
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert digest != served.image.sha256
    return virt_driver.ImageRef(
        name="rebuilt", url=server.url(copy.name), sha256=digest, disk_format="qcow2"
    )


@pytest.fixture
def harness(driver_harness: Harness, other_image: virt_driver.ImageRef) -> Harness:
    """The driver under test, with the other image known to the simulated image server."""
    if isinstance(driver_harness.driver, TestDriver):
        known = driver_harness.driver.known_images
        assert known is not None
        known[other_image.url] = other_image.sha256
    return driver_harness


def _rebuilt(
    harness: Harness, instance: virt_driver.InstanceSpec, image: virt_driver.ImageRef
) -> virt_driver.InstanceSpec:
    """The instance as a rebuild asks for it: the new image, user-data and hostname."""
    return dataclasses.replace(
        instance,
        image=image,
        hostname="rebuilt-guest",
        user_data=f"rebuilt {uuid.uuid4()}\n".encode(),
        ssh_authorized_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRebuilt test@kubenova",),
    )


# -- what the tests look at, on either driver ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Disk:
    backing_file: str
    #: Tells one disk from another made the same way (an inode; a simulated serial).
    identity: object


def disk_of(harness: Harness, instance_uuid: str) -> Disk:
    if isinstance(harness.driver, TestDriver):
        files = harness.driver.simulated_files(instance_uuid)
        assert files is not None
        return Disk(files.backing_file, files.disk_serial)
    path = _instance_dir(harness, instance_uuid) / "disk"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return Disk(info["backing-filename"], path.stat().st_ino)


def cached_image(harness: Harness, image: virt_driver.ImageRef) -> str:
    """Where the driver keeps ``image``: what an instance's disk is backed by."""
    if isinstance(harness.driver, TestDriver):
        return f"/simulated/{harness.driver.hostname}/_base/{image.sha256}"
    assert harness.image_cache_path is not None
    return str(harness.image_cache_path / image.sha256)


def config_drive_of(harness: Harness, instance_uuid: str) -> tuple[dict[str, Any], bytes | None]:
    """meta_data.json's content and the user-data, as the guest would read them."""
    if isinstance(harness.driver, TestDriver):
        files = harness.driver.simulated_files(instance_uuid)
        assert files is not None
        return files.meta_data, files.user_data
    iso = pycdlib.PyCdlib()
    iso.open(str(_instance_dir(harness, instance_uuid) / "disk.config"))
    try:
        found: dict[str, bytes] = {}
        for name in ("meta_data.json", "user_data"):
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, rr_path=f"/openstack/latest/{name}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            found[name] = out.getvalue()
    finally:
        iso.close()
    return json.loads(found["meta_data.json"]), found.get("user_data")


def mac_of(harness: Harness, instance_uuid: str) -> str | None:
    domain = harness.raw_domain(instance_uuid)
    assert domain is not None
    return domain_xml.interface_mac(domain.xml_desc())


def metadata_image(harness: Harness, instance_uuid: str) -> str:
    domain = harness.raw_domain(instance_uuid)
    assert domain is not None
    element = domain.metadata_element(domain_xml.NAMESPACE)
    assert element is not None
    metadata = domain_xml.parse_metadata(element)
    assert metadata is not None
    return metadata.image_name


def _instance_dir(harness: Harness, instance_uuid: str) -> pathlib.Path:
    assert harness.instances_path is not None
    return harness.instances_path / instance_uuid


def instance_files(harness: Harness, instance_uuid: str) -> set[str]:
    """The files in the instance's directory (nothing staged left over), but for the serial
    console's socket, which QEMU makes when it starts and may leave when it stops; TestDriver:
    none."""
    if harness.instances_path is None:
        return {"disk", "disk.config", "console.log"}
    return set(os.listdir(_instance_dir(harness, instance_uuid))) - {"console.sock"}


def power(harness: Harness, instance_uuid: str) -> tuple[PowerState, bool]:
    state = harness.driver.get_instance_state(instance_uuid)
    return state.power_state, state.saved


# -- the contract -------------------------------------------------------------------------------


def test_a_new_instance_gets_the_mac_derived_from_its_uuid(harness):
    instance = harness.instance()
    harness.driver.spawn(instance)
    assert mac_of(harness, instance.uuid) == domain_xml.derived_mac(instance.uuid)


def test_rebuild_keeps_the_domain_and_its_mac_and_gives_a_new_disk_and_config_drive(
    harness, other_image
):
    instance = harness.instance()
    harness.driver.spawn(instance)
    harness.driver.power_off(instance.uuid, 0)
    marked = harness.kind == "libvirt"
    if marked:
        # Something the old guest wrote, which the new disk must not have.
        _qemu_io(harness, instance.uuid, "write -P 0xab 0 64k")
    old_disk, old_mac = disk_of(harness, instance.uuid), mac_of(harness, instance.uuid)
    assert old_disk.backing_file == cached_image(harness, instance.image)

    new = _rebuilt(harness, instance, other_image)
    harness.driver.rebuild(new, power_on=False)

    domain = harness.raw_domain(instance.uuid)
    assert domain is not None
    assert (domain.uuid, domain.name) == (instance.uuid, f"instance-{instance.uuid}")
    assert mac_of(harness, instance.uuid) == old_mac
    assert harness.driver.list_instance_uuids().count(instance.uuid) == 1
    disk = disk_of(harness, instance.uuid)
    assert disk.backing_file == cached_image(harness, other_image)
    assert disk.identity != old_disk.identity
    if marked:
        assert "Pattern verification failed" in _qemu_io(
            harness, instance.uuid, "read -P 0xab 0 64k"
        )
    meta_data, user_data = config_drive_of(harness, instance.uuid)
    assert user_data == new.user_data
    assert (meta_data["uuid"], meta_data["hostname"]) == (instance.uuid, "rebuilt-guest")
    assert list(meta_data["public_keys"].values()) == list(new.ssh_authorized_keys)
    assert metadata_image(harness, instance.uuid) == "rebuilt"
    assert instance_files(harness, instance.uuid) == {"disk", "disk.config", "console.log"}
    # power_on False: left shut off.
    assert power(harness, instance.uuid) == (PowerState.SHUTDOWN, False)
    assert harness.driver.get_addresses(instance.uuid) == []

    harness.driver.power_on(instance.uuid)
    assert power(harness, instance.uuid) == (PowerState.RUNNING, False)


@pytest.mark.parametrize("start", ["running", "paused", "stopped", "suspended"])
def test_rebuild_runs_the_instance_afresh_from_any_state(harness, other_image, start):
    instance = harness.instance()
    harness.driver.spawn(instance)
    if start == "paused":
        harness.driver.pause(instance.uuid)
    elif start == "stopped":
        harness.driver.power_off(instance.uuid, 0)
    elif start == "suspended":
        harness.driver.suspend(instance.uuid)
    harness.driver.rebuild(_rebuilt(harness, instance, other_image), power_on=True)
    # Running, with no saved memory left to restore.
    assert power(harness, instance.uuid) == (PowerState.RUNNING, False)
    assert disk_of(harness, instance.uuid).backing_file == cached_image(harness, other_image)


def test_rebuild_with_power_on_false_leaves_a_running_instance_shut_off(harness, other_image):
    instance = harness.instance()
    harness.driver.spawn(instance)
    harness.driver.rebuild(_rebuilt(harness, instance, other_image), power_on=False)
    assert power(harness, instance.uuid) == (PowerState.SHUTDOWN, False)


def test_rebuild_twice_ends_as_rebuilding_once(harness, other_image):
    instance = harness.instance()
    harness.driver.spawn(instance)
    mac = mac_of(harness, instance.uuid)
    new = _rebuilt(harness, instance, other_image)
    harness.driver.rebuild(new, power_on=True)
    once = disk_of(harness, instance.uuid)
    harness.driver.rebuild(new, power_on=True)  # a redelivered message
    twice = disk_of(harness, instance.uuid)
    # A second full rebuild, to the same end.
    assert twice.backing_file == once.backing_file == cached_image(harness, other_image)
    assert config_drive_of(harness, instance.uuid)[1] == new.user_data
    assert mac_of(harness, instance.uuid) == mac
    assert power(harness, instance.uuid) == (PowerState.RUNNING, False)
    assert harness.driver.list_instance_uuids().count(instance.uuid) == 1
    assert instance_files(harness, instance.uuid) == {"disk", "disk.config", "console.log"}


def test_rebuild_keeps_the_mac_a_domain_already_has(harness, other_image):
    """A domain defined before MACs were derived has the random one libvirt gave it: a
    rebuild keeps that one, not the derived one, so the guest keeps its address."""
    instance = harness.instance()
    harness.driver.spawn(instance)
    harness.driver.power_off(instance.uuid, 0)
    domain = harness.raw_domain(instance.uuid)
    assert domain is not None
    legacy = "52:54:00:fe:ed:01"
    derived = domain_xml.derived_mac(instance.uuid)
    conn = connection.Connection(harness.uri)
    try:
        conn.define_domain(domain.xml_desc().replace(derived, legacy))
    finally:
        conn.close()
    assert mac_of(harness, instance.uuid) == legacy
    harness.driver.rebuild(_rebuilt(harness, instance, other_image), power_on=True)
    assert mac_of(harness, instance.uuid) == legacy


@pytest.mark.parametrize("failure", ["checksum", "missing"])
def test_a_bad_image_fails_the_rebuild_and_leaves_the_instance_as_it_was(
    harness, other_image, failure
):
    instance = harness.instance()
    harness.driver.spawn(instance)
    before = disk_of(harness, instance.uuid), config_drive_of(harness, instance.uuid)
    mac = mac_of(harness, instance.uuid)
    if failure == "checksum":
        wrong = hashlib.sha256(b"some other image").hexdigest()
        image = dataclasses.replace(other_image, sha256=wrong)
        expected = wrong
    else:
        image = dataclasses.replace(other_image, url=harness.server.url("no-such-image.qcow2"))
        expected = "404"
    with pytest.raises(exceptions.RebuildFailed, match=expected) as raised:
        harness.driver.rebuild(_rebuilt(harness, instance, image), power_on=True)
    assert raised.value.intact is True
    assert str(raised.value).endswith("the instance is unchanged")
    # Still running, on its old disk, with its old config drive and nothing staged left over.
    assert power(harness, instance.uuid) == (PowerState.RUNNING, False)
    assert (disk_of(harness, instance.uuid), config_drive_of(harness, instance.uuid)) == before
    assert mac_of(harness, instance.uuid) == mac
    assert metadata_image(harness, instance.uuid) == instance.image.name
    assert instance_files(harness, instance.uuid) == {"disk", "disk.config", "console.log"}
    if failure == "checksum" and harness.image_cache_path is not None:
        # Nothing of the image that did not match was kept.
        assert list(harness.image_cache_path.glob(f"*{expected}*")) == []


def test_a_host_failure_after_the_power_off_leaves_the_instance_shut_off_until_rebuilt(
    harness, other_image
):
    instance = harness.instance()
    harness.driver.spawn(instance)
    mac = mac_of(harness, instance.uuid)
    new = _rebuilt(harness, instance, other_image)
    harness.break_host()
    with pytest.raises(exceptions.RebuildFailed) as raised:
        harness.driver.rebuild(new, power_on=True)
    assert raised.value.intact is False
    assert "left shut off, in error" in str(raised.value)
    assert power(harness, instance.uuid) == (PowerState.SHUTDOWN, False)

    harness.repair_host()
    harness.driver.rebuild(new, power_on=True)  # the same rebuild again completes it
    assert power(harness, instance.uuid) == (PowerState.RUNNING, False)
    assert mac_of(harness, instance.uuid) == mac
    assert disk_of(harness, instance.uuid).backing_file == cached_image(harness, other_image)
    assert instance_files(harness, instance.uuid) == {"disk", "disk.config", "console.log"}


def test_rebuilding_an_unknown_instance_raises_instance_not_found(harness, other_image):
    spec = dataclasses.replace(harness.instance(), uuid=UNKNOWN_UUID, image=other_image)
    with pytest.raises(exceptions.InstanceNotFound) as raised:
        harness.driver.rebuild(spec, power_on=True)
    assert raised.value.instance_uuid == UNKNOWN_UUID
    assert harness.leftovers(UNKNOWN_UUID) == []


# -- a real guest -------------------------------------------------------------------------------


def test_the_rebuilt_guest_boots_again_with_the_new_user_data_and_the_same_address(
    harness, other_image
):
    if harness.kind != "libvirt":
        pytest.skip("only the LibvirtDriver runs guests")
    if not harness.served.boots:
        missing("the tiny guest image is not built (hack/guest/build.sh)")
    instance = harness.instance(user_data=f"first boot {uuid.uuid4()}\n".encode())
    harness.driver.spawn(instance)
    first = _wait_for_boot(harness, instance.uuid, 0)
    mac = mac_of(harness, instance.uuid)
    address = _protocol_value(first, "address")

    new = _rebuilt(harness, instance, other_image)
    offset = len(_console(harness, instance.uuid))
    started = time.monotonic()
    harness.driver.rebuild(new, power_on=True)
    rebuilt_in = time.monotonic() - started
    second = _wait_for_boot(harness, instance.uuid, offset)
    booted_in = time.monotonic() - started
    print(f"rebuild: {rebuilt_in:.2f} s in the driver, {booted_in:.1f} s until the guest's ready")

    whole = _console(harness, instance.uuid)
    # The console log was kept: both boots are in it, one after the other.
    assert whole.count(READY) == 2
    assert instance.user_data is not None
    assert new.user_data is not None
    assert instance.user_data.decode() in whole[:offset]
    assert _user_data(second) == new.user_data.decode()
    assert _protocol_value(second, "hostname") == "rebuilt-guest"
    assert _protocol_value(second, "instance-uuid") == instance.uuid
    # The same MAC, so libvirt's DHCP gave the guest the same address.
    assert mac_of(harness, instance.uuid) == mac
    assert _protocol_value(second, "address") == address
    assert harness.driver.get_addresses(instance.uuid) == [address]


def _console(harness: Harness, instance_uuid: str) -> str:
    path = harness.driver.console_log_path(instance_uuid)
    return pathlib.Path(path).read_text(errors="replace") if path else ""


def _wait_for_boot(harness: Harness, instance_uuid: str, offset: int) -> str:
    """The console from ``offset`` once the boot there has said it is ready."""
    deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
    while True:
        text = _console(harness, instance_uuid)[offset:]
        if READY in text:
            return text.replace("\r", "")
        assert "kubenova-guest: dhcp failed" not in text, text[-2000:]
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.5)


def _protocol_value(console: str, key: str) -> str:
    prefix = f"kubenova-guest: {key}="
    values = [line[len(prefix) :] for line in console.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, console[-2000:]
    return values[0]


def _user_data(console: str) -> str:
    lines = console.splitlines()
    begin = lines.index("kubenova-guest: user-data begin")
    end = lines.index("kubenova-guest: user-data end")
    return "".join(f"{line}\n" for line in lines[begin + 1 : end])


def _qemu_io(harness: Harness, instance_uuid: str, command: str) -> str:
    path = _instance_dir(harness, instance_uuid) / "disk"
    result = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    return result.stdout + result.stderr
