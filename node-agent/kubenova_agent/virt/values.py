"""The value types that cross the virt driver boundary (:mod:`kubenova_agent.virt.driver`).

They validate themselves on construction, so a driver never sees an instance uuid that could
escape its instances directory or user-data over the 64 KiB cap.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid as uuid_lib

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
    #: The URI other hosts' agents reach this host's hypervisor by, for migrations
    #: (``KUBENOVA_MIGRATION_URI``); None: this host cannot be a migration's destination.
    migration_uri: str | None = None
    #: The address the console proxy reaches this host's guest consoles at (Nova's
    #: ``vncserver_proxyclient_address``); None: at the host's name.
    console_address: str | None = None


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
class ConsolePorts:
    """The TCP ports a running guest's consoles listen on, as its host's libvirt handed them
    out when QEMU started (they change whenever QEMU starts again). None: no such console
    (SPICE has no plain port when the host serves it over TLS only)."""

    vnc_port: int | None = None
    spice_port: int | None = None
    spice_tls_port: int | None = None


@dataclasses.dataclass(frozen=True)
class InstanceState:
    """What the hypervisor says about one instance: its power state, IPv4 addresses, and
    whether it is suspended.

    What the agent's power-state sync compares with what it last reported; see
    :meth:`~kubenova_agent.virt.driver.ComputeDriver.get_instance_state`.
    """

    power_state: power_state.PowerState
    #: Sorted, as :meth:`~kubenova_agent.virt.driver.ComputeDriver.get_addresses` returns them.
    addresses: tuple[str, ...] = ()
    #: True when the instance is suspended
    #: (:meth:`~kubenova_agent.virt.driver.ComputeDriver.suspend`): shut off, with its memory
    #: saved to disk for the next start to restore. Its power state is then SHUTDOWN, as for a
    #: stopped instance, which is what this tells apart.
    saved: bool = False
    #: Where its consoles are while it runs; None when it is not running (or has none).
    console_ports: ConsolePorts | None = None


class RebootType(enum.StrEnum):
    """How an instance was rebooted; the values are the contract's ``reboot_type``."""

    #: The guest shut down when asked (ACPI power button) and was started again.
    SOFT = "SOFT"
    #: The domain was powered off and started again, whatever the guest was doing.
    HARD = "HARD"
