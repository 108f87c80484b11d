"""The second real host of the local stack (``hack/services.sh libvirt2-up``), as its agent
sees it: the settings ``tests.support.second_host.SecondAgent`` gives an agent process make a
libvirt driver of another hypervisor, with its own host name and files, that other hosts can
migrate to."""

from __future__ import annotations

import os
import shutil
import uuid
import xml.etree.ElementTree as ET

import pytest

from kubenova_agent import cmd
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt.libvirt import connection, migration, storage
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from tests.integration.virt import conftest
from tests.support import second_host

pytestmark = pytest.mark.integration


@pytest.fixture
def agent_env(monkeypatch):
    second_host.require()
    workdir = conftest._traversable_tmpdir()
    agent = second_host.SecondAgent(
        dict(os.environ),
        host=f"second-{uuid.uuid4().hex[:8]}",
        instances_path=str(workdir / "instances"),
        image_cache_path=str(workdir / "_base"),
    )
    for key, value in agent.env.items():
        monkeypatch.setenv(key, value)
    yield agent
    conn = connection.Connection(second_host.uri())
    storage.remove_pool(conn, migration.instances_pool(agent.host))
    conn.close()
    shutil.rmtree(workdir, ignore_errors=True)


def test_the_second_agent_drives_the_second_libvirtd_as_a_host_of_its_own(agent_env):
    settings = AgentSettings.from_env()
    assert settings.host == agent_env.host
    assert settings.migration_uri == second_host.uri()
    driver = cmd.make_driver(cmd.build_parser().parse_args(["--host", settings.host]), settings)
    assert isinstance(driver, libvirt_driver.LibvirtDriver)
    driver.init_host()

    info = driver.get_host_info()
    assert info.hostname == agent_env.host
    assert info.migration_uri == second_host.uri()
    assert str(driver.instances_path) == agent_env.instances_path
    # Another libvirtd than the first host's: libvirt refuses a migration between the two
    # only when they are one and the same.
    first, second = (
        connection.Connection(conftest.LIBVIRT_URI),
        connection.Connection(info.migration_uri),
    )
    try:
        assert _host_uuid(first) != _host_uuid(second)
        # What a source host reads to find where this host keeps its instances.
        assert storage.pool_path(second, migration.instances_pool(agent_env.host)) == (
            agent_env.instances_path
        )
        assert storage.pool_path(first, migration.instances_pool(agent_env.host)) is None
    finally:
        first.close()
        second.close()


def _host_uuid(conn: connection.Connection) -> str:
    capabilities = conn.handle().getCapabilities()
    return ET.fromstring(capabilities).findtext("host/uuid") or ""
