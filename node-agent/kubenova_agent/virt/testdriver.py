"""A driver for simulated hosts, on libvirt's in-memory ``test:///default`` hypervisor.

It runs the same domain lifecycle as the libvirt driver (``BaseLibvirtDriver``: the same
idempotent spawn, cleanup on failure, destroy, power states, ``InstanceNotFound``), against real
libvirt API semantics, but nothing runs: domains are of type ``test``, no file is written, no
image is downloaded, no network is touched. Many agents can then simulate a fleet on one
machine. What is simulated, and how:

- Host facts come from the constructor (hostname, vCPUs, memory, disk); versions are the test
  hypervisor's.
- Images: there is no download. The spec is still validated, and when ``known_images`` (URL to
  sha256, a stand-in for the image server) is given, an unknown URL fails as a download answered
  with 404 and a wrong sha256 as a checksum mismatch, both non-reschedulable as on a real host.
- Files: none is written. What a real host would have written is recorded in memory instead
  (:meth:`TestDriver.simulated_files`: the cached image the root disk is an overlay on, what
  the config drive carries, a serial number per disk made), so that spawn and rebuild can be
  checked alike; a TestDriver made again for the same host starts with no record.
- Addresses: a running instance reports one IPv4 address in 10.0.0.0/8 derived from its uuid
  (the same uuid always gives the same address, across a rebuild too). It is not reachable:
  nothing runs.
- No console log (:meth:`console_log_path` returns None).
- Resize, cold and live migration: simulated, see ``virt/testmigration.py``.
- Snapshots: a small JSON file that describes the simulated disk stands for its image.

- Host failures: :meth:`TestDriver.simulate_host_failure` makes domain starts fail, so that
  builds fail the way a broken host's do (reschedulable, after cleanup); power_on, resume and
  reboot fail too then.

Power operations run on the test hypervisor's own implementations, which libvirt provides:
pause and unpause (``suspend``/``resume``), managed save (suspend) and its restore by a start,
and the ACPI power button, which a simulated guest always honours at once: the domain is shut
off before ``shutdown()`` returns, where a real guest takes seconds. Two differences are
evened out by the shared code rather than simulated: a domain saved while paused comes back
running here (QEMU restores it paused, and resume then unpauses it), and a paused domain would
honour the power button here (the driver never presses it for a paused guest). What the test
hypervisor cannot do at all is simulated:

- A guest that ignores the power button: :meth:`TestDriver.simulate_guest_ignores_acpi` makes
  the driver's presses do nothing for that instance, so a soft reboot or a clean stop waits for
  its timeout and then falls back to a hard reboot or a power-off, as with a real guest that has
  no ACPI daemon.
- A guest that powers itself off: a ``shutdown()`` of its domain from another connection (what
  a test does) is seen exactly as a real guest's poweroff is: the domain shuts off and libvirt
  emits the lifecycle event.

Lifecycle events: the test hypervisor emits them (started, suspended, resumed, stopped...)
through libvirt's event loop like libvirtd does, to every connection in the process that
registered for them, so simulated hosts report a change within the event path's latency. They
are dispatched by the process-wide event loop thread, which the driver starts in init_host.

Sharing one hypervisor: every ``libvirt.open("test:///default")`` in a process sees the same
in-memory state, so simulated hosts in one process on the default ``uri`` share it. As every
driver built on ``BaseLibvirtDriver`` does, a TestDriver only sees, lists and acts on domains
whose Kubenova metadata names its own hostname (``<kubenova:host>``), so simulated hosts need
distinct hostnames and then keep out of each other's way. The host is recorded in the domain
rather than in the driver object, so a new TestDriver for the same host (an agent restarted
within the process) finds its instances again, as an agent restarted on a real host would. One
consequence: a uuid is one domain in the whole process, so spawning an instance that another
simulated host still has fails with a RescheduledBuildError, as a uuid clash would on one real
host. A driver given :func:`private_hypervisor_uri` instead has a hypervisor of its own, as a
host in a process of its own has (``kubenova_agent.fleet`` runs many hosts so); it lives as long
as the driver's connection, so a driver made again for that host starts with none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from typing import Any

from kubenova_agent import configdrive, exceptions
from kubenova_agent.virt import driver, testmigration
from kubenova_agent.virt.libvirt import connection, domain_xml
from kubenova_agent.virt.power_state import LibvirtDomainState

DEFAULT_URI = "test:///default"

#: What a private test hypervisor starts with (see :func:`private_hypervisor_uri`): no domain,
#: and the network the drivers' interfaces name. Its CPU and memory are libvirt's to report;
#: the host's capacity is the TestDriver's.
_PRIVATE_NODE_XML = """<node>
  <network>
    <name>default</name>
    <bridge name='virbr0'/>
    <forward/>
    <ip address='192.168.122.1' netmask='255.255.255.0'/>
  </network>
</node>
"""


def private_hypervisor_uri(directory: str) -> str:
    """A URI whose every connection is a test hypervisor of its own, starting empty.

    libvirt shares ``test:///default`` among a process's connections, but makes a new
    hypervisor from the file for each connection to ``test:///<file>``: simulated hosts in one
    process then list and hear of only their own domains. Writes the file into
    ``directory`` (an absolute path) if it is not there.
    """
    path = os.path.join(os.path.abspath(directory), "kubenova-test-node.xml")
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(_PRIVATE_NODE_XML)
        os.replace(temporary, path)
    return f"test://{path}"


@dataclasses.dataclass(frozen=True)
class SimulatedFiles:
    """What a real host would have written for an instance's root disk and config drive."""

    #: The cached image the root disk would be an overlay on:
    #: ``/simulated/<host>/_base/<sha256>``, as the image cache names it.
    backing_file: str
    #: What the config drive would carry (``meta_data.json``'s content, and the user-data).
    meta_data: dict[str, Any]
    user_data: bytes | None
    #: Different for every disk the driver makes: a rebuild's disk is new even from the same
    #: image.
    disk_serial: int
    #: The root disk's size: the flavor's, or more after a resize to a smaller disk.
    disk_gib: int = 0


def simulated_address(instance_uuid: str) -> str:
    """The address a simulated instance reports: 10.a.b.c from its uuid's sha256."""
    digest = hashlib.sha256(instance_uuid.encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2] % 254 + 1}"


class TestDriver(testmigration.SimulatedMigration):
    """A simulated hypervisor host; see the module docstring."""

    # Not a test case, whatever pytest thinks of the name.
    __test__ = False

    # libvirt's test driver refuses the NVRAM and checkpoint-metadata undefine flags.
    undefine_flags = connection.UNDEFINE_MANAGED_SAVE | connection.UNDEFINE_SNAPSHOTS_METADATA

    def __init__(
        self,
        hostname: str,
        vcpus: int,
        memory_mib: int,
        disk_gib: int,
        *,
        uri: str = DEFAULT_URI,
        network: str = "default",
        known_images: Mapping[str, str] | None = None,
        migration_uri: str | None = None,
    ) -> None:
        """``known_images`` maps image URLs to their sha256; None accepts any image.
        ``migration_uri`` is what the host reports for migrations (default: ``uri``)."""
        super().__init__(uri=uri, hostname=hostname, network=network)
        self.migration_uri = migration_uri or uri
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.disk_gib = disk_gib
        #: When set, every domain start fails with this message, as a broken host's would
        #: (see :meth:`simulate_host_failure`).
        self.host_failure: str | None = None
        #: Instances whose simulated guest ignores the power button.
        self.acpi_ignored: set[str] = set()
        self.known_images = (
            {url: digest.lower() for url, digest in known_images.items()}
            if known_images is not None
            else None
        )
        # The simulated files, by instance uuid: in place, and staged by a rebuild.
        self._files: dict[str, Any] = {}
        self._staged: dict[str, SimulatedFiles] = {}
        self._disk_serials = itertools.count(1)

    def simulated_files(self, instance_uuid: str) -> SimulatedFiles | None:
        """The instance's simulated root disk and config drive; None when this driver made
        none for it."""
        return self._files.get(driver.validate_uuid(instance_uuid))

    def simulate_host_failure(self, reason: str | None) -> None:
        """Make every following domain start fail with ``reason`` (None: work again).

        The failure strikes after the domain is defined, so a spawn goes through its cleanup
        and raises a RescheduledBuildError, as when QEMU fails on a real host; it lets tests
        exercise rescheduling with simulated hosts.
        """
        self.host_failure = reason

    def simulate_guest_ignores_acpi(self, instance_uuid: str, ignores: bool = True) -> None:
        """Make the instance's simulated guest ignore (or, with ``ignores`` False, honour
        again) the ACPI power button, as a real guest without an ACPI daemon does."""
        driver.validate_uuid(instance_uuid)
        if ignores:
            self.acpi_ignored.add(instance_uuid)
        else:
            self.acpi_ignored.discard(instance_uuid)

    def get_host_info(self) -> driver.HostInfo:
        return driver.HostInfo(
            hostname=self.hostname,
            vcpus=self.vcpus,
            memory_mib=self.memory_mib,
            disk_gib=self.disk_gib,
            cpu_arch="x86_64",
            # What the simulated host stands for; virt_type says it is a simulation.
            hypervisor_type="QEMU",
            virt_type="test",
            libvirt_version=self._connection.library_version(),
            qemu_version=self._connection.hypervisor_version(),
            migration_uri=self.migration_uri,
        )

    def snapshot(self, instance_uuid: str, target: str) -> None:
        """What stands for the root disk's image: a small JSON file describing the simulated
        disk (its base image and serial), not a qcow2, since no disk exists. Two snapshots of
        one disk are alike; a rebuilt disk's differs."""
        with self._changing(instance_uuid) as domain:
            if domain.state() == LibvirtDomainState.CRASHED:
                raise exceptions.InstanceInvalidState(instance_uuid, "snapshot", "crashed")
            files = self._files.get(instance_uuid)
            if files is None:
                raise exceptions.SnapshotFailed(f"instance {instance_uuid} has no simulated disk")
            content = json.dumps(
                {
                    "simulated-snapshot-of": instance_uuid,
                    "backing_file": files.backing_file,
                    "disk_serial": files.disk_serial,
                },
                sort_keys=True,
            ).encode()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise exceptions.SnapshotFailed(f"cannot write {target}: {exc}") from exc
        with open(fd, "wb") as out:
            out.write(content)

    # -- hooks -----------------------------------------------------------------------------

    def _domain_type(self) -> str:
        return "test"

    def _ports(self, domain: connection.Domain, instance_uuid: str) -> driver.ConsolePorts | None:
        # libvirt's test driver starts no QEMU and hands out no display ports (its live XML
        # says port='-1'): nothing to read.
        del domain, instance_uuid
        return None

    def _start(self, domain: connection.Domain) -> None:
        if self.host_failure is not None:
            raise exceptions.HypervisorError(f"{self.host_failure} (simulated)", code=-1)
        domain.start()

    def _request_shutdown(self, domain: connection.Domain) -> None:
        if domain.uuid in self.acpi_ignored:
            return  # the simulated guest has no ACPI daemon: nothing happens
        domain.shutdown()

    def _prepare_files(self, instance: driver.InstanceSpec) -> domain_xml.DomainFiles:
        self._files[instance.uuid] = self._simulate(instance)
        return self._paths(instance.uuid)

    def _stage_rebuild(self, instance: driver.InstanceSpec) -> None:
        self._staged[instance.uuid] = self._simulate(instance)

    def _commit_rebuild(self, instance_uuid: str) -> domain_xml.DomainFiles:
        self._files[instance_uuid] = self._staged.pop(instance_uuid)
        return self._paths(instance_uuid)

    def _discard_rebuild(self, instance_uuid: str) -> None:
        self._staged.pop(instance_uuid, None)

    def _simulate(self, instance: driver.InstanceSpec) -> SimulatedFiles:
        """The files a real host would make, after the checks of the image it would make."""
        image = instance.image
        if self.known_images is not None:
            served = self.known_images.get(image.url)
            if served is None:
                raise exceptions.ImageDownloadError(
                    image.url, "HTTP 404 Not Found (simulated)", permanent=True
                )
            if served != image.sha256:
                raise exceptions.ImageChecksumMismatch(
                    image.url, expected=image.sha256, actual=served
                )
        return SimulatedFiles(
            backing_file=f"/simulated/{self.hostname}/_base/{image.sha256}",
            meta_data=configdrive.meta_data(instance),
            user_data=instance.user_data,
            disk_serial=next(self._disk_serials),
            disk_gib=instance.disk_gib,
        )

    def _paths(self, instance_uuid: str) -> domain_xml.DomainFiles:
        # Paths that exist nowhere: the test hypervisor records them and opens nothing.
        directory = f"/simulated/{self.hostname}/instances/{instance_uuid}"
        return domain_xml.DomainFiles(
            disk=f"{directory}/disk",
            config_drive=f"{directory}/disk.config",
            console_log=f"{directory}/console.log",
        )

    def _remove_files(self, instance_uuid: str) -> None:
        self._files.pop(instance_uuid, None)
        self._staged.pop(instance_uuid, None)
        self.forget_migration(instance_uuid)

    def _console_log(self, instance_uuid: str) -> str | None:
        del instance_uuid
        return None

    def _addresses(self, domain: connection.Domain, instance_uuid: str) -> list[str]:
        return [simulated_address(instance_uuid)] if domain.is_active() else []
