"""Two hosts for the migration contract tests: two TestDrivers on libvirt's test:///default,
or two LibvirtDrivers on the two real libvirt daemons of this machine (the host's, and the
second one ``hack/services.sh libvirt2-up`` runs; ``tests.support.second_host``).

Each host has its own host name, instances directory and image cache, as two machines would;
the LibvirtDrivers reach each other only through their libvirt URIs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt import migration
from kubenova_agent.virt.libvirt import connection, storage
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from kubenova_agent.virt.libvirt import migration as libvirt_migration
from kubenova_agent.virt.testdriver import TestDriver
from tests.integration.virt import conftest
from tests.support import second_host
from tests.support.required import missing

GUEST_BOOT_TIMEOUT = 150.0
READY = "kubenova-guest: ready"
#: The tiny guest's switch that prints a counter every second (hack/guest/init).
COUNT_SWITCH = b"#kubenova-guest: count\n"
_COUNT = re.compile(r"kubenova-guest: count (\d+) boot=(\S*)")


@dataclasses.dataclass
class Host:
    driver: virt_driver.ComputeDriver
    uri: str
    instances_path: pathlib.Path | None

    @property
    def name(self) -> str:
        return str(getattr(self.driver, "hostname"))  # noqa: B009 - both drivers have it

    def target(self) -> migration.MigrationTarget:
        info = self.driver.get_host_info()
        assert info.migration_uri is not None
        return migration.MigrationTarget(host=info.hostname, uri=info.migration_uri)

    def domain(self, instance_uuid: str) -> connection.Domain | None:
        conn = connection.Connection(self.uri)
        try:
            return conn.lookup_by_uuid(instance_uuid)
        finally:
            conn.close()

    def flavor(self, instance_uuid: str) -> tuple[int, int]:
        """(vCPUs, MiB) of the instance's domain here."""
        domain = self.domain(instance_uuid)
        assert domain is not None
        root = ET.fromstring(domain.xml_desc())
        memory = root.find("memory")
        assert memory is not None
        assert memory.get("unit") == "KiB"
        return int(root.findtext("vcpu", "0")), int(memory.text or 0) // 1024

    def disk_gib(self, instance_uuid: str) -> int:
        if isinstance(self.driver, TestDriver):
            files = self.driver.simulated_files(instance_uuid)
            assert files is not None
            return int(files.disk_gib)
        info = _qemu_img_info(self.instance_dir(instance_uuid) / "disk")
        return int(info["virtual-size"]) >> 30

    def instance_dir(self, instance_uuid: str) -> pathlib.Path:
        assert self.instances_path is not None
        return self.instances_path / instance_uuid

    def console(self, instance_uuid: str) -> str:
        path = self.driver.console_log_path(instance_uuid)
        return pathlib.Path(path).read_text(errors="replace").replace("\r", "") if path else ""

    def wait_for_boot(self, instance_uuid: str, boots: int = 1) -> str:
        """The console once it says ``ready`` ``boots`` times."""
        deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
        while True:
            text = self.console(instance_uuid)
            if text.count(READY) >= boots:
                return text
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.5)

    def require_counter(self, instance_uuid: str) -> None:
        """Skip (fail under ``make test``) when the guest booted here has no count switch:
        an image built before it existed."""
        if "kubenova-guest: switch count" not in self.wait_for_boot(instance_uuid):
            missing("the tiny guest image has no count switch: rebuild it (hack/guest/build.sh)")

    def counts(self, instance_uuid: str) -> list[tuple[int, str]]:
        """The guest's counter lines on this host's console: (count, boot id)."""
        return [(int(n), boot) for n, boot in _COUNT.findall(self.console(instance_uuid))]

    def wait_for_count(self, instance_uuid: str, above: int) -> list[tuple[int, str]]:
        deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
        while True:
            counts = self.counts(instance_uuid)
            if counts and counts[-1][0] > above:
                return counts
            assert time.monotonic() < deadline, self.console(instance_uuid)[-2000:]
            time.sleep(0.5)


@dataclasses.dataclass
class HostPair:
    kind: str
    source: Host
    destination: Host
    served: conftest.ServedImage
    created: set[str] = dataclasses.field(default_factory=set)

    def instance(self, **overrides: Any) -> virt_driver.InstanceSpec:
        fields: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "name": "migration contract",
            "hostname": "migrating-guest",
            "vcpus": 1,
            "memory_mib": 192,
            "disk_gib": 1,
            "image": self.served.image,
            "user_data": COUNT_SWITCH,
        }
        fields.update(overrides)
        spec = virt_driver.InstanceSpec(**fields)
        self.created.add(spec.uuid)
        return spec


def _qemu_img_info(path: pathlib.Path) -> dict[str, Any]:
    result = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def _test_pair(served: conftest.ServedImage) -> HostPair:
    run = uuid.uuid4().hex[:8]
    known = {served.image.url: served.image.sha256}

    def host(name: str) -> Host:
        test_driver = TestDriver(
            hostname=f"sim-{name}-{run}", vcpus=8, memory_mib=16384, disk_gib=200,
            known_images=known,
        )  # fmt: skip
        return Host(test_driver, "test:///default", None)

    return HostPair("test", host("a"), host("b"), served)


def _libvirt_pair(served: conftest.ServedImage, workdir: pathlib.Path) -> HostPair:
    run = uuid.uuid4().hex[:8]

    def host(name: str, uri: str) -> Host:
        instances = workdir / name / "instances"
        libvirt = libvirt_driver.LibvirtDriver(
            uri=uri,
            instances_path=str(instances),
            image_cache_path=str(workdir / name / "_base"),
            hostname=f"migration-{name}-{run}",
            migration_uri=uri,
        )
        return Host(libvirt, uri, instances)

    first = host("a", conftest.LIBVIRT_URI)
    second = host("b", second_host.uri())
    return HostPair("libvirt", first, second, served)


@contextlib.contextmanager
def host_pair(
    kind: str, image_files: tuple[conftest.ImageServer, conftest.ServedImage]
) -> Iterator[HostPair]:
    """Two hosts of ``kind`` ("test" or "libvirt"), torn down afterwards."""
    _server, served = image_files
    workdir: pathlib.Path | None = None
    if kind == "test":
        pair = _test_pair(served)
    else:
        reason = conftest._libvirt_reachable() or second_host.reachable()
        if reason is not None:
            missing(reason)
        if not served.boots:
            missing("the tiny guest image is not built (hack/guest/build.sh)")
        workdir = conftest._traversable_tmpdir()
        pair = _libvirt_pair(served, workdir)
    try:
        for host in (pair.source, pair.destination):
            host.driver.init_host()
        yield pair
    finally:
        for host in (pair.source, pair.destination):
            for instance_uuid in sorted(pair.created):
                with contextlib.suppress(Exception):
                    host.driver.destroy(instance_uuid)
            if isinstance(host.driver, libvirt_driver.LibvirtDriver):
                conn = connection.Connection(host.uri)
                storage.remove_pool(conn, libvirt_migration.instances_pool(host.name))
                conn.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
