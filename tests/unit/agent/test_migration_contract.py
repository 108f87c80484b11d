"""The migration half of the driver contract: both drivers implement every method, and a host
reports the URI it can be migrated to."""

from __future__ import annotations

import inspect

import pytest

from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt import driver, migration
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from kubenova_agent.virt.testdriver import TestDriver

METHODS = sorted(
    name
    for name, member in vars(migration.MigrationDriver).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


def test_the_contract_has_the_ten_steps_of_resize_cold_and_live_migration():
    assert METHODS == [
        "confirm_migration",
        "finish_migration",
        "finish_revert_migration",
        "live_migration",
        "migrate_disk_and_power_off",
        "post_live_migration_at_destination",
        "post_live_migration_at_source",
        "pre_live_migration",
        "revert_migration_at_destination",
        "rollback_live_migration_at_destination",
    ]
    assert issubclass(driver.ComputeDriver, migration.MigrationDriver)


@pytest.mark.parametrize("implementation", [libvirt_driver.LibvirtDriver, TestDriver])
def test_each_driver_implements_every_migration_method(implementation):
    inherited = [
        name
        for name in METHODS
        if getattr(implementation, name) is getattr(migration.MigrationDriver, name)
    ]
    assert inherited == []


def test_the_migration_uri_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("KUBENOVA_MIGRATION_URI", raising=False)
    assert AgentSettings.from_env(host="node-a").migration_uri is None
    monkeypatch.setenv("KUBENOVA_MIGRATION_URI", "qemu+tls://node-a/system")
    assert AgentSettings.from_env(host="node-a").migration_uri == "qemu+tls://node-a/system"


def test_the_libvirt_driver_reports_its_migration_uri(monkeypatch):
    monkeypatch.setenv("KUBENOVA_MIGRATION_URI", "qemu+tls://node-a/system")
    assert libvirt_driver.LibvirtDriver(hostname="node-a").migration_uri == (
        "qemu+tls://node-a/system"
    )
    assert (
        libvirt_driver.LibvirtDriver(
            hostname="node-a", migration_uri="qemu+tcp://node-a/system"
        ).migration_uri
        == "qemu+tcp://node-a/system"
    )
    monkeypatch.delenv("KUBENOVA_MIGRATION_URI")
    assert libvirt_driver.LibvirtDriver(hostname="node-a").migration_uri is None


def test_a_simulated_host_can_be_a_destination():
    host = TestDriver(hostname="sim-a", vcpus=1, memory_mib=1024, disk_gib=10)
    host.init_host()
    assert host.get_host_info().migration_uri == "test:///default"
