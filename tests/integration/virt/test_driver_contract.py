"""The ComputeDriver contract, proved against the TestDriver and the LibvirtDriver alike.

Each test runs once per driver (see conftest.py): the TestDriver on libvirt's
``test:///default`` always, the LibvirtDriver on qemu:///system as an ``integration`` test
that boots a real (TCG) guest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import pathlib
import subprocess
import time
import uuid

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt import driver
from kubenova_agent.virt.power_state import PowerState
from tests.support.required import missing

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
GUEST_BOOT_TIMEOUT = 120.0


def test_host_info_reports_capacity_and_versions(driver_harness):
    info = driver_harness.driver.get_host_info()
    assert info.vcpus > 0
    assert info.memory_mib > 0
    assert info.disk_gib > 0
    assert info.cpu_arch == "x86_64"
    assert info.hypervisor_type == "QEMU"
    assert info.virt_type in {"kvm", "qemu", "test"}
    assert info.libvirt_version.count(".") == 2
    assert info.qemu_version.count(".") == 2


def test_spawn_runs_the_instance(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.RUNNING
    assert instance.uuid in driver_harness.driver.list_instance_uuids()


def test_domain_is_named_after_the_instance_and_has_its_uuid(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    domain = driver_harness.raw_domain(instance.uuid)
    assert domain is not None
    assert domain.name == f"instance-{instance.uuid}"
    assert domain.uuid == instance.uuid


def test_spawn_twice_makes_one_domain(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    driver_harness.driver.spawn(instance)
    assert driver_harness.driver.list_instance_uuids().count(instance.uuid) == 1
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.RUNNING


def test_spawn_starts_an_instance_that_is_defined_but_shut_off(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    domain = driver_harness.raw_domain(instance.uuid)
    assert domain is not None
    domain.destroy()  # libvirt's "destroy" powers off and keeps the definition
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.SHUTDOWN
    assert driver_harness.driver.get_addresses(instance.uuid) == []
    driver_harness.driver.spawn(instance)
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.RUNNING


def test_destroy_removes_the_domain_and_its_files(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    if driver_harness.instances_path is not None:
        files = driver_harness.instances_path / instance.uuid
        # console.sock: the running QEMU's serial console socket.
        assert {path.name for path in files.iterdir()} == {
            "disk",
            "disk.config",
            "console.log",
            "console.sock",
        }
    driver_harness.driver.destroy(instance.uuid)
    assert instance.uuid not in driver_harness.driver.list_instance_uuids()
    assert driver_harness.leftovers(instance.uuid) == []
    with pytest.raises(exceptions.InstanceNotFound):
        driver_harness.driver.get_power_state(instance.uuid)


def test_destroy_twice_is_fine(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    driver_harness.driver.destroy(instance.uuid)
    driver_harness.driver.destroy(instance.uuid)
    assert driver_harness.leftovers(instance.uuid) == []


def test_destroy_of_an_unknown_instance_is_fine(driver_harness):
    driver_harness.driver.destroy(UNKNOWN_UUID)


def test_instance_can_be_built_again_after_destroy(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    driver_harness.driver.destroy(instance.uuid)
    driver_harness.driver.spawn(instance)
    assert driver_harness.driver.get_power_state(instance.uuid) is PowerState.RUNNING


@pytest.mark.parametrize(
    "method", ["get_power_state", "get_addresses", "get_instance_state", "console_log_path"]
)
def test_unknown_instance_raises_instance_not_found(driver_harness, method: str):
    with pytest.raises(exceptions.InstanceNotFound) as raised:
        getattr(driver_harness.driver, method)(UNKNOWN_UUID)
    assert raised.value.instance_uuid == UNKNOWN_UUID


@pytest.mark.parametrize(
    "method",
    ["destroy", "get_power_state", "get_addresses", "get_instance_state", "console_log_path"],
)
def test_a_malformed_uuid_is_refused(driver_harness, method: str):
    with pytest.raises(ValueError, match="uuid"):
        getattr(driver_harness.driver, method)("../../etc")


def test_bad_checksum_aborts_the_build_and_leaves_nothing(driver_harness):
    wrong = hashlib.sha256(b"some other image").hexdigest()
    image = dataclasses.replace(driver_harness.served.image, sha256=wrong)
    instance = driver_harness.instance(image=image)
    with pytest.raises(exceptions.BuildAbortedError) as raised:
        driver_harness.driver.spawn(instance)
    assert isinstance(raised.value.__cause__, exceptions.ImageChecksumMismatch)
    assert wrong in str(raised.value)
    assert instance.uuid not in driver_harness.driver.list_instance_uuids()
    assert driver_harness.leftovers(instance.uuid, digest=wrong) == []


def test_missing_image_aborts_the_build(driver_harness):
    image = dataclasses.replace(
        driver_harness.served.image, url=driver_harness.server.url("no-such-image.qcow2")
    )
    instance = driver_harness.instance(image=image)
    with pytest.raises(exceptions.BuildAbortedError, match="404"):
        driver_harness.driver.spawn(instance)
    assert driver_harness.leftovers(instance.uuid) == []


def test_host_failure_reschedules_the_build_and_leaves_nothing(driver_harness):
    driver_harness.break_host()
    instance = driver_harness.instance()
    with pytest.raises(exceptions.RescheduledBuildError):
        driver_harness.driver.spawn(instance)
    assert instance.uuid not in driver_harness.driver.list_instance_uuids()
    assert driver_harness.leftovers(instance.uuid) == []


def test_domains_the_driver_did_not_make_are_not_listed(driver_harness):
    mine = driver_harness.instance()
    driver_harness.driver.spawn(mine)
    listed = driver_harness.driver.list_instance_uuids()
    assert mine.uuid in listed
    # test:///default ships a domain called "test"; qemu:///system may hold anything, including
    # a real agent's instances, which carry another host name.
    for instance_uuid in listed:
        assert instance_uuid in driver_harness.created


def test_instance_states_agree_with_the_instance_by_instance_answers(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    states = driver_harness.driver.list_instance_states()
    assert list(states) == driver_harness.driver.list_instance_uuids()
    state = driver_harness.driver.get_instance_state(instance.uuid)
    assert state.power_state is PowerState.RUNNING
    assert states[instance.uuid].power_state is PowerState.RUNNING
    if driver_harness.kind == "test":
        # A real guest may get its DHCP lease between two calls; a simulated one cannot.
        addresses = tuple(driver_harness.driver.get_addresses(instance.uuid))
        assert state.addresses == states[instance.uuid].addresses == addresses


def test_instance_states_notice_a_domain_stopped_and_started_by_someone_else(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    assert driver_harness.driver.list_instance_states()[instance.uuid].power_state is (
        PowerState.RUNNING
    )
    domain = driver_harness.raw_domain(instance.uuid)
    assert domain is not None
    domain.destroy()
    stopped = driver.InstanceState(PowerState.SHUTDOWN, ())
    assert driver_harness.driver.list_instance_states()[instance.uuid] == stopped
    assert driver_harness.driver.get_instance_state(instance.uuid) == stopped
    domain.start()
    assert driver_harness.driver.list_instance_states()[instance.uuid].power_state is (
        PowerState.RUNNING
    )


def test_running_instance_addresses_are_ipv4(driver_harness):
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    for address in driver_harness.driver.get_addresses(instance.uuid):
        assert ipaddress.ip_address(address).version == 4


# -- what only one of the drivers can show -----------------------------------------------------


def test_simulated_address_is_stable_and_in_ten_slash_eight(driver_harness):
    if driver_harness.kind != "test":
        pytest.skip("addresses are simulated by the TestDriver only")
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    first = driver_harness.driver.get_addresses(instance.uuid)
    assert len(first) == 1
    assert ipaddress.ip_address(first[0]) in ipaddress.ip_network("10.0.0.0/8")
    assert driver_harness.driver.get_addresses(instance.uuid) == first


def test_image_larger_than_the_flavor_disk_aborts_the_build(driver_harness, make_qcow2):
    if driver_harness.kind != "libvirt":
        pytest.skip("the TestDriver does not inspect images")
    big = make_qcow2(driver_harness.server.directory / f"big-{uuid.uuid4().hex[:8]}.qcow2", "2G")
    image = driver.ImageRef(
        name="big",
        url=driver_harness.server.url(big.name),
        sha256=hashlib.sha256(big.read_bytes()).hexdigest(),
        disk_format="qcow2",
    )
    instance = driver_harness.instance(image=image, disk_gib=1)
    with pytest.raises(exceptions.BuildAbortedError) as raised:
        driver_harness.driver.spawn(instance)
    assert isinstance(raised.value.__cause__, exceptions.ImageTooLarge)
    assert driver_harness.leftovers(instance.uuid) == []


def test_image_with_a_backing_file_of_its_own_aborts_the_build(driver_harness):
    if driver_harness.kind != "libvirt":
        pytest.skip("the TestDriver does not inspect images")
    directory = driver_harness.server.directory
    name = f"sneaky-{uuid.uuid4().hex[:8]}.qcow2"
    # An image pointing at a host file: it must never be opened as a backing file.
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw",
         str(directory / name), "64M"],
        check=True,
    )  # fmt: skip
    image = driver.ImageRef(
        name="sneaky",
        url=driver_harness.server.url(name),
        sha256=hashlib.sha256((directory / name).read_bytes()).hexdigest(),
        disk_format="qcow2",
    )
    instance = driver_harness.instance(image=image)
    with pytest.raises(exceptions.BuildAbortedError, match="backing file"):
        driver_harness.driver.spawn(instance)
    assert driver_harness.leftovers(instance.uuid) == []


def test_instance_files_are_private_to_root(driver_harness):
    if driver_harness.instances_path is None:
        pytest.skip("the TestDriver keeps no files")
    instance = driver_harness.instance()
    driver_harness.driver.spawn(instance)
    directory = driver_harness.instances_path / instance.uuid
    assert directory.stat().st_mode & 0o777 == 0o711
    # The config drive holds the user-data: nobody but root (and QEMU, while it runs the
    # guest) may read it.
    assert (directory / "disk.config").stat().st_mode & 0o077 == 0


def test_guest_boots_and_reports_address_uuid_and_user_data(driver_harness):
    if driver_harness.kind != "libvirt":
        pytest.skip("only the LibvirtDriver runs guests")
    if not driver_harness.served.boots:
        missing("the tiny guest image is not built (hack/guest/build.sh)")
    user_data = f"contract-user-data {uuid.uuid4()}\n".encode()
    instance = driver_harness.instance(user_data=user_data)
    driver_harness.driver.spawn(instance)
    log_path = driver_harness.driver.console_log_path(instance.uuid)
    assert log_path is not None

    deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
    console, addresses = "", []
    while time.monotonic() < deadline:
        console = pathlib.Path(log_path).read_text(errors="replace")
        addresses = driver_harness.driver.get_addresses(instance.uuid)
        if "kubenova-guest: ready" in console and addresses:
            break
        time.sleep(2)
    assert "kubenova-guest: ready" in console, console[-2000:]
    assert f"kubenova-guest: instance-uuid={instance.uuid}" in console
    assert user_data.decode() in console
    assert addresses, "no DHCP lease reported"
    assert f"kubenova-guest: address={addresses[0]}" in console
