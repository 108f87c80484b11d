"""The migration half of the ComputeDriver contract (``virt.migration``), proved against two
TestDrivers and against two LibvirtDrivers on the machine's two real libvirt daemons
(``host_pair``).

With the real daemons, the tiny guest prints a counter every second (its ``count`` switch):
a live migration there and back keeps one boot id and a counter that never starts again, and
libvirt's own downtime is reported. A resize, on the same host or to the other one, boots the
guest again with the new flavor; a revert boots it again with the old one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt import migration
from kubenova_agent.virt.libvirt import domain_xml
from kubenova_agent.virt.power_state import PowerState
from kubenova_agent.virt.testdriver import TestDriver
from tests.integration.virt.host_pair import READY, Host, HostPair, host_pair

_PAIRS = [
    pytest.param("test", id="TestDriver"),
    pytest.param("libvirt", id="LibvirtDriver", marks=pytest.mark.integration),
]


@pytest.fixture(params=_PAIRS)
def pair(request, image_files) -> Iterator[HostPair]:
    with host_pair(request.param, image_files) as hosts:
        yield hosts


def _booted(pair: HostPair, host: Host, instance_uuid: str, boots: int = 1) -> None:
    if pair.kind == "libvirt":
        host.wait_for_boot(instance_uuid, boots)


def _mac(host: Host, instance_uuid: str) -> str | None:
    domain = host.domain(instance_uuid)
    assert domain is not None
    return domain_xml.interface_mac(domain.xml_desc())


def _live_migrate(
    source: Host, destination: Host, spec, progress: list[migration.MigrationProgress]
) -> migration.MigrationResult:
    destination.driver.pre_live_migration(spec)
    result = source.driver.live_migration(
        spec.uuid,
        destination.target(),
        on_progress=progress.append,
        progress_timeout_s=60.0,
        abort=threading.Event(),
    )
    destination.driver.post_live_migration_at_destination(spec)
    source.driver.post_live_migration_at_source(spec.uuid)
    return result


def _gone_from(host: Host, instance_uuid: str) -> None:
    assert instance_uuid not in host.driver.list_instance_uuids()
    if host.instances_path is not None:
        assert not host.instance_dir(instance_uuid).exists()
        assert not (host.instances_path / f"{instance_uuid}_resize").exists()


# -- live migration ----------------------------------------------------------------------------


def test_live_migration_moves_the_running_guest_there_and_back_without_a_reboot(pair):
    source, destination = pair.source, pair.destination
    spec = pair.instance()
    source.driver.spawn(spec)
    _booted(pair, source, spec.uuid)
    before: list[tuple[int, str]] = []
    if pair.kind == "libvirt":
        source.require_counter(spec.uuid)
        before = source.wait_for_count(spec.uuid, above=2)
    mac = _mac(source, spec.uuid)

    progress: list[migration.MigrationProgress] = []
    there = _live_migrate(source, destination, spec, progress)

    assert destination.driver.list_instance_uuids() == [spec.uuid]
    assert destination.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    _gone_from(source, spec.uuid)
    assert _mac(destination, spec.uuid) == mac
    assert there.total_s > 0
    print(f"live migration there: {there.total_s:.3f} s, downtime {there.downtime_ms} ms")

    if pair.kind == "libvirt":
        assert there.downtime_ms is not None
        assert 0 <= there.downtime_ms < 5000
        after = destination.wait_for_count(spec.uuid, above=before[-1][0])
        # One boot: the same boot id, a counter that went on, and no boot on the destination.
        assert {boot for _, boot in before + after} == {before[0][1]}
        numbers = [n for n, _ in before + after]
        assert numbers == sorted(set(numbers)), numbers
        assert READY not in destination.console(spec.uuid)

    back = _live_migrate(destination, source, spec, progress)
    assert source.driver.list_instance_uuids() == [spec.uuid]
    assert source.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    _gone_from(destination, spec.uuid)
    print(f"live migration back: {back.total_s:.3f} s, downtime {back.downtime_ms} ms")
    if pair.kind == "libvirt":
        again = source.wait_for_count(spec.uuid, above=after[-1][0])
        assert {boot for _, boot in again} == {before[0][1]}
        assert READY not in source.console(spec.uuid)
        assert back.downtime_ms is not None


def test_an_aborted_live_migration_leaves_the_guest_running_on_its_source(pair):
    source, destination = pair.source, pair.destination
    spec = pair.instance()
    source.driver.spawn(spec)
    _booted(pair, source, spec.uuid)
    first: list[tuple[int, str]] = []
    if pair.kind == "libvirt":
        source.require_counter(spec.uuid)
        first = source.wait_for_count(spec.uuid, above=0)
    destination.driver.pre_live_migration(spec)
    abort = threading.Event()
    abort.set()

    with pytest.raises(exceptions.MigrationAborted) as raised:
        source.driver.live_migration(
            spec.uuid,
            destination.target(),
            on_progress=lambda _progress: None,
            progress_timeout_s=60.0,
            abort=abort,
        )
    assert not raised.value.timed_out
    assert source.driver.get_power_state(spec.uuid) == PowerState.RUNNING

    destination.driver.rollback_live_migration_at_destination(spec.uuid)
    destination.driver.rollback_live_migration_at_destination(spec.uuid)
    _gone_from(destination, spec.uuid)
    assert destination.domain(spec.uuid) is None or isinstance(destination.driver, TestDriver)
    assert source.driver.list_instance_uuids() == [spec.uuid]
    if pair.kind == "libvirt":
        # Still the same boot, counting on.
        counts = source.wait_for_count(spec.uuid, above=first[-1][0] + 1)
        assert {boot for _, boot in counts} == {first[0][1]}


def test_a_live_migration_that_makes_no_progress_is_aborted_after_the_timeout(pair):
    if not isinstance(pair.source.driver, TestDriver):
        pytest.skip("a real migration of the tiny guest is over before it could stall")
    source, destination = pair.source, pair.destination
    spec = pair.instance()
    source.driver.spawn(spec)
    source.driver.simulate_migration_stall(spec.uuid)
    destination.driver.pre_live_migration(spec)

    with pytest.raises(exceptions.MigrationAborted) as raised:
        source.driver.live_migration(
            spec.uuid,
            destination.target(),
            on_progress=lambda _progress: None,
            progress_timeout_s=0.2,
            abort=threading.Event(),
        )
    assert raised.value.timed_out
    assert source.driver.get_power_state(spec.uuid) == PowerState.RUNNING


def test_a_live_migration_of_a_stopped_instance_is_refused(pair):
    source, destination = pair.source, pair.destination
    spec = pair.instance()
    source.driver.spawn(spec)
    source.driver.power_off(spec.uuid, 0)
    with pytest.raises(exceptions.InstanceInvalidState):
        source.driver.live_migration(
            spec.uuid,
            destination.target(),
            on_progress=lambda _progress: None,
            progress_timeout_s=60.0,
            abort=threading.Event(),
        )
    assert source.driver.list_instance_uuids() == [spec.uuid]


# -- resize on the same host ------------------------------------------------------------------


def _resized(spec):
    return dataclasses.replace(spec, vcpus=2, memory_mib=256, disk_gib=2)


def _resize_here(pair: HostPair):
    host = pair.source
    spec = pair.instance()
    host.driver.spawn(spec)
    _booted(pair, host, spec.uuid)
    mac = _mac(host, spec.uuid)
    new = _resized(spec)
    for _ in range(2):  # a message delivered twice
        host.driver.migrate_disk_and_power_off(spec.uuid, None, 60.0)
    assert host.driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    for _ in range(2):
        host.driver.finish_migration(new, same_host=True, power_on=True)
    assert host.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert host.flavor(spec.uuid) == (2, 256)
    assert host.disk_gib(spec.uuid) == 2
    assert _mac(host, spec.uuid) == mac
    _booted(pair, host, spec.uuid, boots=2)
    return host, spec, mac


def test_a_resize_on_the_same_host_boots_the_new_flavor_and_confirm_keeps_it(pair):
    host, spec, _mac_before = _resize_here(pair)
    for _ in range(2):
        host.driver.confirm_migration(spec.uuid, same_host=True)
    assert host.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert host.flavor(spec.uuid) == (2, 256)
    if host.instances_path is not None:
        assert not (host.instances_path / f"{spec.uuid}_resize").exists()


def test_a_reverted_resize_on_the_same_host_boots_the_old_flavor_again(pair):
    host, spec, mac = _resize_here(pair)
    for _ in range(2):
        host.driver.revert_migration_at_destination(spec.uuid, same_host=True)
    for _ in range(2):
        host.driver.finish_revert_migration(spec, power_on=True)
    assert host.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert host.flavor(spec.uuid) == (1, 192)
    assert host.disk_gib(spec.uuid) == 1
    assert _mac(host, spec.uuid) == mac
    # The console log set aside with the disk: the first boot, then the one after the revert.
    _booted(pair, host, spec.uuid, boots=2)
    if host.instances_path is not None:
        assert not (host.instances_path / f"{spec.uuid}_resize").exists()


# -- cold migration (resize to another host) --------------------------------------------------


def _resize_there(pair: HostPair):
    source, destination = pair.source, pair.destination
    spec = pair.instance()
    source.driver.spawn(spec)
    _booted(pair, source, spec.uuid)
    mac = _mac(source, spec.uuid)
    new = _resized(spec)
    for _ in range(2):
        source.driver.migrate_disk_and_power_off(spec.uuid, destination.target(), 60.0)
    for _ in range(2):
        destination.driver.finish_migration(new, same_host=False, power_on=True)
    assert destination.driver.list_instance_uuids() == [spec.uuid]
    assert destination.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert destination.flavor(spec.uuid) == (2, 256)
    assert destination.disk_gib(spec.uuid) == 2
    assert _mac(destination, spec.uuid) == mac
    _booted(pair, destination, spec.uuid)
    if pair.kind == "libvirt":
        # Kept, shut off, for a revert; the disk set aside.
        assert source.driver.list_instance_uuids() == [spec.uuid]
        assert source.driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
        assert source.instances_path is not None
        assert (source.instances_path / f"{spec.uuid}_resize" / "disk").exists()
    return source, destination, spec, mac


def test_a_cold_migration_to_another_host_boots_there_and_confirm_clears_the_source(pair):
    source, destination, spec, _mac_before = _resize_there(pair)
    for _ in range(2):
        source.driver.confirm_migration(spec.uuid, same_host=False)
    _gone_from(source, spec.uuid)
    assert destination.driver.get_power_state(spec.uuid) == PowerState.RUNNING


def test_a_reverted_cold_migration_brings_the_guest_back_to_its_source(pair):
    source, destination, spec, mac = _resize_there(pair)
    for _ in range(2):
        destination.driver.revert_migration_at_destination(spec.uuid, same_host=False)
    _gone_from(destination, spec.uuid)
    for _ in range(2):
        source.driver.finish_revert_migration(spec, power_on=True)
    assert source.driver.list_instance_uuids() == [spec.uuid]
    assert source.driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert source.flavor(spec.uuid) == (1, 192)
    assert source.disk_gib(spec.uuid) == 1
    assert _mac(source, spec.uuid) == mac
    _booted(pair, source, spec.uuid, boots=2)
    if source.instances_path is not None:
        assert not (source.instances_path / f"{spec.uuid}_resize").exists()


def test_a_migration_to_this_very_host_is_refused(pair):
    host = pair.source
    spec = pair.instance()
    host.driver.spawn(spec)
    with pytest.raises(exceptions.MigrationFailed):
        host.driver.migrate_disk_and_power_off(spec.uuid, host.target(), 0)
    assert host.driver.list_instance_uuids() == [spec.uuid]
