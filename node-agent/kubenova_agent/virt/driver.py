"""The virt driver boundary: what the node-agent's manager asks of a hypervisor.

This is Kubenova's ``nova/virt/driver.py``. :class:`ComputeDriver` states the contract every
driver honours; ``kubenova_agent.virt.libvirt.driver.LibvirtDriver`` drives libvirt/QEMU, and
``kubenova_agent.virt.testdriver.TestDriver`` runs the same logic on libvirt's in-memory
``test:///default`` hypervisor for simulated hosts. One contract test suite
(tests/integration/virt/test_driver_contract.py) runs against both.

The value types below are what crosses the boundary. They validate themselves on construction,
so a driver never sees an instance uuid that could escape its instances directory or user-data
over the 64 KiB cap.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import uuid as uuid_lib

from kubenova_agent import exceptions
from kubenova_agent.virt import power_state

#: The cap Kubenova puts on an instance's user-data, in bytes (as Nova's API does).
USER_DATA_MAX_BYTES = 64 * 1024

#: Image formats a driver can boot from.
DISK_FORMATS = frozenset({"qcow2", "raw"})

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def validate_uuid(value: str) -> str:
    """Return ``value`` if it is a uuid in canonical form (lower case, dashed), else raise.

    Instance uuids become file names and domain names, so anything but the canonical form is
    refused rather than normalised: two spellings of one uuid must not name two directories.
    """
    try:
        canonical = str(uuid_lib.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"not a uuid: {value!r}") from None
    if canonical != value:
        raise ValueError(f"uuid not in canonical form: {value!r} (expected {canonical!r})")
    return value


def domain_name(instance_uuid: str) -> str:
    """The libvirt domain name of an instance: ``instance-<uuid>``."""
    return f"instance-{validate_uuid(instance_uuid)}"


@dataclasses.dataclass(frozen=True)
class HostInfo:
    """What a hypervisor host offers, reported to the control plane as its compute node."""

    hostname: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    #: The host's CPU architecture, e.g. ``"x86_64"``.
    cpu_arch: str
    #: ``"QEMU"`` for the libvirt driver and for the TestDriver, which simulates one.
    hypervisor_type: str
    #: ``"kvm"`` or ``"qemu"`` (software emulation, TCG), as configured or as the probe decided;
    #: ``"test"`` for the TestDriver, whose guests run nowhere.
    virt_type: str
    #: Dotted versions, e.g. ``"9.0.0"`` and ``"7.2.22"``.
    libvirt_version: str
    qemu_version: str


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """The image an instance boots from, as the Image object declares it."""

    name: str
    #: ``http://`` or ``https://`` location of the image file.
    url: str
    #: Hex sha256 of the file at ``url``; stored in lower case.
    sha256: str
    #: ``"qcow2"`` or ``"raw"``: the format of the file at ``url``.
    disk_format: str

    def __post_init__(self) -> None:
        digest = self.sha256.lower()
        if not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"image {self.name!r}: sha256 must be 64 hex digits")
        object.__setattr__(self, "sha256", digest)
        if self.disk_format not in DISK_FORMATS:
            raise ValueError(
                f"image {self.name!r}: disk_format {self.disk_format!r} is not one of "
                f"{sorted(DISK_FORMATS)}"
            )


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """Everything a driver needs to build one instance.

    ``name`` is the user's name for the instance (any text: it is only ever written through XML
    and JSON libraries); ``hostname`` is the guest's hostname, validated by the CRD and
    sanitised again by the config drive. ``user_data`` is already decoded and at most
    :data:`USER_DATA_MAX_BYTES` long.
    """

    uuid: str
    name: str
    hostname: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    image: ImageRef
    user_data: bytes | None = None
    ssh_authorized_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_uuid(self.uuid)
        for field in ("vcpus", "memory_mib", "disk_gib"):
            value = getattr(self, field)
            # bool is an int; a flavor of True vCPUs is a bug upstream, not one vCPU.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"instance {self.uuid}: {field} must be a positive integer")
        if self.user_data is not None and len(self.user_data) > USER_DATA_MAX_BYTES:
            raise ValueError(
                f"instance {self.uuid}: user_data is {len(self.user_data)} bytes, "
                f"the limit is {USER_DATA_MAX_BYTES}"
            )
        if not isinstance(self.ssh_authorized_keys, tuple):
            raise ValueError(f"instance {self.uuid}: ssh_authorized_keys must be a tuple")


@dataclasses.dataclass(frozen=True)
class InstanceState:
    """What the hypervisor says about one instance: its power state and IPv4 addresses.

    The two things the agent's power-state sync compares with what it last reported; see
    :meth:`ComputeDriver.get_instance_state`.
    """

    power_state: power_state.PowerState
    #: Sorted, as :meth:`ComputeDriver.get_addresses` returns them.
    addresses: tuple[str, ...] = ()


class ComputeDriver(abc.ABC):
    """The contract between the node-agent's manager and a hypervisor.

    Every method may be called from any thread; a driver serialises the calls that concern one
    instance. Methods that take an instance uuid raise ``ValueError`` when it is not a uuid in
    canonical form. Only instances whose domain a driver for this host name created are
    visible through it: other domains on the same libvirt (made by hand, or by a driver for
    another host name) are neither listed nor touched.
    """

    @abc.abstractmethod
    def init_host(self) -> None:
        """Prepare the host; called once before any other method.

        Connects to the hypervisor, creates the directories the driver keeps files in and
        decides how guests will run. The libvirt driver uses the virt type it was given
        ("kvm" or "qemu"); for "auto" it probes whether KVM really executes a guest, with a
        QEMU of its own if it has one, else by asking libvirtd whether it can run KVM guests,
        and otherwise uses software emulation. Raises
        :class:`~kubenova_agent.exceptions.HypervisorError` when the hypervisor cannot be
        reached; the agent should not start serving then.
        """

    @abc.abstractmethod
    def get_host_info(self) -> HostInfo:
        """Return the host's capacity and hypervisor versions (see :class:`HostInfo`).

        Capacity is the whole host's, not what is free: the scheduler subtracts its claims.
        """

    @abc.abstractmethod
    def spawn(self, instance: InstanceSpec) -> None:
        """Build and start ``instance``; return once its domain is running.

        Steps: fetch the image into the image cache (used only after its sha256 matches), make
        the root disk as a qcow2 overlay on the cached image sized to ``disk_gib``, write a
        config drive (uuid, hostname, name, SSH keys, user-data), define the domain (domain
        uuid = ``instance.uuid``, name ``instance-<uuid>``) and start it.

        Idempotent: when the domain already exists and runs, nothing is done; when it exists but
        is shut off, it is started. This is what makes a redelivered build message harmless.
        (Should that start fail, the domain and its files are removed as below: only a spawn
        of this instance can have made them.)

        A failed spawn removes everything it made (the domain, the instance's files) before it
        raises:

        - :class:`~kubenova_agent.exceptions.BuildAbortedError` when the request itself is bad
          and no host could do better: the image's checksum does not match, the image cannot be
          found (HTTP 4xx), is not in its declared format, has a backing file of its own, or is
          bigger than the flavor's disk.
        - :class:`~kubenova_agent.exceptions.RescheduledBuildError` for host-side failures: a
          libvirt or qemu error, a full disk, an image server that does not answer. Another
          host may succeed.
        """

    @abc.abstractmethod
    def destroy(self, instance_uuid: str) -> None:
        """Power off and delete the instance: the domain (with any managed save image, NVRAM,
        snapshot and checkpoint metadata) and all of its files on this host.

        Idempotent: destroying an unknown or already destroyed instance succeeds. Raises
        :class:`~kubenova_agent.exceptions.HypervisorError` when libvirt refuses (the instance
        may then be half deleted; calling again finishes the job).
        """

    @abc.abstractmethod
    def get_power_state(self, instance_uuid: str) -> power_state.PowerState:
        """Return what the hypervisor says the instance is doing right now.

        Raises :class:`~kubenova_agent.exceptions.InstanceNotFound` when there is no such
        domain.
        """

    @abc.abstractmethod
    def get_addresses(self, instance_uuid: str) -> list[str]:
        """Return the instance's IPv4 addresses from its DHCP leases, sorted.

        ``[]`` while the guest has no lease yet or is not running. Raises
        :class:`~kubenova_agent.exceptions.InstanceNotFound` when there is no such domain.
        """

    @abc.abstractmethod
    def list_instance_uuids(self) -> list[str]:
        """Return the uuids of the instances this driver manages on this host, sorted.

        Running or not. The agent's audit compares this list with the control plane's records
        to find leftovers (a domain with no record) and lost instances.
        """

    @abc.abstractmethod
    def console_log_path(self, instance_uuid: str) -> str | None:
        """Return the path of the file holding the instance's serial console output.

        ``None`` when the driver keeps no such file (the TestDriver) or the guest has not
        written one yet. Raises :class:`~kubenova_agent.exceptions.InstanceNotFound` when there
        is no such domain.
        """

    # -- derived from the methods above; drivers may override them to ask less often --------

    def get_instance_state(self, instance_uuid: str) -> InstanceState:
        """Return the instance's power state and addresses together.

        The same answers as :meth:`get_power_state` and :meth:`get_addresses`, and the same
        errors (``InstanceNotFound``, ``ValueError``). A driver overrides it when it can find
        the domain once for both.
        """
        return InstanceState(
            power_state=self.get_power_state(instance_uuid),
            addresses=tuple(self.get_addresses(instance_uuid)),
        )

    def list_instance_states(self) -> dict[str, InstanceState]:
        """Return :meth:`get_instance_state` of every instance :meth:`list_instance_uuids`
        lists, keyed by uuid in sorted order.

        An instance that disappears while the host is being listed is left out. This is what
        the agent's periodic power-state sync calls, every few seconds for every instance, so
        a driver overrides it when one listing of the hypervisor can answer for all of them.
        """
        states: dict[str, InstanceState] = {}
        for instance_uuid in self.list_instance_uuids():
            try:
                states[instance_uuid] = self.get_instance_state(instance_uuid)
            except exceptions.InstanceNotFound:
                continue
        return states
