"""The libvirt drivers remember which domains are theirs, and notice when that changes.

Run on the TestDriver, whose ``test:///default`` hypervisor lives inside this process (no
daemon needed) and is shared by every driver here: each test gives its drivers host names of
their own and a fresh instance uuid, and destroys what it made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt import testdriver
from kubenova_agent.virt.libvirt import connection, domain_xml, ownership
from kubenova_agent.virt.power_state import PowerState
from tests.support import FakeClock

URI = testdriver.DEFAULT_URI
IMAGE = virt_driver.ImageRef(
    name="tiny", url="http://127.0.0.1:8089/tiny.qcow2", sha256="ab" * 32, disk_format="qcow2"
)
FILES = domain_xml.DomainFiles(
    disk="/nowhere/disk", config_drive="/nowhere/cd", console_log="/nowhere/console.log"
)


def make_driver() -> testdriver.TestDriver:
    test_driver = testdriver.TestDriver(
        hostname=f"own-{uuid.uuid4().hex[:10]}", vcpus=4, memory_mib=4096, disk_gib=40
    )
    test_driver.init_host()
    return test_driver


def make_instance() -> virt_driver.InstanceSpec:
    return virt_driver.InstanceSpec(
        uuid=str(uuid.uuid4()),
        name="vm",
        hostname="vm",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        image=IMAGE,
    )


@pytest.fixture
def raw() -> Iterator[connection.Connection]:
    """A connection of its own to the shared hypervisor, as another tool would have."""
    conn = connection.Connection(URI)
    yield conn
    conn.close()


def raw_domain(raw: connection.Connection, instance_uuid: str) -> connection.Domain:
    domain = raw.lookup_by_uuid(instance_uuid)
    assert domain is not None
    return domain


def define_for_another_host(raw: connection.Connection, instance: virt_driver.InstanceSpec) -> None:
    xml = domain_xml.build(
        instance, domain_type="test", files=FILES, network="default", host="someone-else"
    )
    raw.define_domain(xml)


@pytest.fixture
def count_metadata_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = connection.Domain.metadata_element

    def counting(self: connection.Domain, namespace: str) -> str | None:
        reads.append(self.uuid)
        return read(self, namespace)

    monkeypatch.setattr(connection.Domain, "metadata_element", counting)
    return reads


def test_listing_reads_each_domains_metadata_once(count_metadata_reads):
    test_driver = make_driver()
    instance = make_instance()
    test_driver.spawn(instance)
    try:
        count_metadata_reads.clear()
        for _ in range(3):
            assert instance.uuid in test_driver.list_instance_uuids()
            assert instance.uuid in test_driver.list_instance_states()
        # Our domain was remembered when spawn started it; every other domain on the shared
        # hypervisor (the test driver's own "test" domain, other tests' leftovers) is read once.
        assert instance.uuid not in count_metadata_reads
        assert len(count_metadata_reads) == len(set(count_metadata_reads))
    finally:
        test_driver.destroy(instance.uuid)


def test_instance_states_follow_power_changes_made_behind_the_drivers_back(raw):
    test_driver = make_driver()
    instance = make_instance()
    test_driver.spawn(instance)
    try:
        assert test_driver.list_instance_states()[instance.uuid] == virt_driver.InstanceState(
            PowerState.RUNNING, (testdriver.simulated_address(instance.uuid),)
        )
        raw_domain(raw, instance.uuid).destroy()
        stopped = virt_driver.InstanceState(PowerState.SHUTDOWN, ())
        assert test_driver.list_instance_states()[instance.uuid] == stopped
        assert test_driver.get_instance_state(instance.uuid) == stopped
        raw_domain(raw, instance.uuid).start()
        assert test_driver.list_instance_states()[instance.uuid].power_state is PowerState.RUNNING
    finally:
        test_driver.destroy(instance.uuid)


def test_a_uuid_taken_over_by_another_hosts_running_domain_is_no_longer_ours(raw):
    mine, theirs = make_driver(), make_driver()
    instance = make_instance()
    mine.spawn(instance)
    assert instance.uuid in mine.list_instance_uuids()
    # Undefined by hand and built again by another host between two listings.
    domain = raw_domain(raw, instance.uuid)
    domain.destroy()
    domain.undefine(testdriver.TestDriver.undefine_flags)
    theirs.spawn(instance)
    try:
        assert instance.uuid not in mine.list_instance_uuids()
        assert instance.uuid not in mine.list_instance_states()
        assert instance.uuid in theirs.list_instance_uuids()
    finally:
        theirs.destroy(instance.uuid)


def test_a_shut_off_domain_redefined_by_hand_is_noticed_within_max_age(raw):
    clock = FakeClock()
    mine = make_driver()
    mine._ownership = ownership.OwnershipCache(max_age_s=60.0, clock=clock)
    instance = make_instance()
    mine.spawn(instance)
    domain = raw_domain(raw, instance.uuid)
    domain.destroy()
    assert instance.uuid in mine.list_instance_uuids()  # remembered as shut off, id -1
    domain.undefine(testdriver.TestDriver.undefine_flags)
    define_for_another_host(raw, instance)  # shut off too: the runtime id cannot tell
    try:
        clock.advance(60.0)
        assert instance.uuid not in mine.list_instance_uuids()
    finally:
        raw_domain(raw, instance.uuid).undefine(testdriver.TestDriver.undefine_flags)


def test_destroy_reads_the_metadata_again_and_spares_a_domain_that_is_not_ours(raw):
    mine = make_driver()
    instance = make_instance()
    mine.spawn(instance)
    domain = raw_domain(raw, instance.uuid)
    domain.destroy()
    assert instance.uuid in mine.list_instance_uuids()
    domain.undefine(testdriver.TestDriver.undefine_flags)
    define_for_another_host(raw, instance)
    try:
        # The remembered answer still says "ours" (same uuid, shut off both times).
        assert instance.uuid in mine.list_instance_uuids()
        mine.destroy(instance.uuid)
        assert raw.lookup_by_uuid(instance.uuid) is not None
    finally:
        raw_domain(raw, instance.uuid).undefine(testdriver.TestDriver.undefine_flags)


def test_an_instance_built_again_after_destroy_is_listed_again():
    test_driver = make_driver()
    instance = make_instance()
    test_driver.spawn(instance)
    test_driver.destroy(instance.uuid)
    assert instance.uuid not in test_driver.list_instance_states()
    test_driver.spawn(instance)
    try:
        assert test_driver.list_instance_states()[instance.uuid].power_state is PowerState.RUNNING
    finally:
        test_driver.destroy(instance.uuid)
