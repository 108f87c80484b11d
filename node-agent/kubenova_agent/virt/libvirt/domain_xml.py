"""Builds an instance's libvirt domain XML with ElementTree.

User-controlled values (the instance's name, the image's name) reach the XML only as element
text or attribute values set through ElementTree, which escapes them; characters XML 1.0 cannot
carry at all (most control characters) are replaced, so a hostile name can neither change the
document's structure nor make libvirt reject it.

The device layout, for every instance:

- ``vda``: the root disk, a qcow2 overlay on the cached image (virtio);
- ``vdb``: the config drive, a read-only raw ISO (virtio);
- one virtio NIC on a libvirt network (``default``: NAT with DHCP), with a MAC address given
  here rather than left to libvirt (see :func:`derived_mac`);
- the first serial port, which is also the console: a unix socket QEMU listens on
  (``console.sock``, what the agent's serial console server relays to an interactive client,
  :mod:`kubenova_agent.serial_console`), everything the guest prints also logged to
  ``console.log`` by virtlogd, as when the port was a plain file (KubeVirt's layout: a socket
  per guest needs no TCP port handed out per host, nor again after a live migration);
- VNC and SPICE graphics (:class:`Graphics`) listening on the host's console address, on
  ports libvirt hands out from its daemon's display range (``remote_display_port_min`` and
  ``_max`` in qemu.conf), never chosen here: each host's libvirtd knows which of its ports are
  free, and the ports a started guest got are read back from its live XML
  (:func:`console_ports`). Whether they speak TLS is the daemon's setting (``vnc_tls`` and
  ``spice_tls`` in qemu.conf, which also name the certificates); with TLS on, SPICE is told
  ``defaultMode='secure'``, so libvirt gives it only a TLS port and no plain channel exists.
  Given a ticket key, SPICE also gets its password (:mod:`spice_ticket`), which libvirt shows
  only in XML asked for with ``VIR_DOMAIN_XML_SECURE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import pathlib
import re
import xml.etree.ElementTree as ET

from kubenova.console import spice_ticket
from kubenova_agent.virt import driver

#: Namespace of Kubenova's ``<metadata>`` element in a domain's XML; a domain carrying it was
#: made by Kubenova.
NAMESPACE = "https://kubenova.io/xmlns/instance/1.0"
NAMESPACE_PREFIX = "kubenova"

# libvirt keeps the prefix it is given; registering it makes ElementTree write "kubenova:"
# instead of "ns0:" (the registry is process-wide, and this prefix is ours alone).
ET.register_namespace(NAMESPACE_PREFIX, NAMESPACE)

#: Domain types: "kvm" (hardware virtualisation), "qemu" (TCG software emulation), "test"
#: (libvirt's test driver).
DOMAIN_TYPES = frozenset({"kvm", "qemu", "test"})

#: The guests' architecture (``<os><type arch=...>``); the KVM probe's domain has it too.
GUEST_ARCH = "x86_64"

#: The first three bytes of every MAC address derived here: the prefix libvirt draws its own
#: random addresses from (QEMU's), locally administered and unicast.
MAC_PREFIX = "52:54:00"
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

# What XML 1.0 allows in a document (its "Char" production), negated.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: The serial console's unix socket in an instance's directory (``DomainFiles.console_socket``).
CONSOLE_SOCKET = "console.sock"


@dataclasses.dataclass(frozen=True)
class DomainFiles:
    """Where an instance's files are (or, for the test driver, would be)."""

    disk: str
    config_drive: str
    console_log: str

    @property
    def console_socket(self) -> str:
        """The serial console's unix socket, beside the console log (QEMU makes it)."""
        return str(pathlib.PurePosixPath(self.console_log).with_name(CONSOLE_SOCKET))


@dataclasses.dataclass(frozen=True)
class Graphics:
    """The consoles a domain gets: where they listen, and whether the host's QEMU serves them
    over TLS (which must match the daemon's qemu.conf, see the module docstring)."""

    listen: str = "127.0.0.1"
    tls: bool = True
    # SPICE's own address, when it must differ: SPICE cannot require a client certificate as
    # VNC does (vnc_tls_x509_verify), so where the node's address is reachable by others
    # SPICE stays on loopback. None: ``listen``.
    spice_listen: str | None = None
    # The key each guest's SPICE password is derived from (``spice_ticket``); None: SPICE
    # without a password, for loopback only.
    spice_ticket_key: bytes | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        # An address, not a name: libvirt would resolve a name once, at start, on its own.
        for address in (self.listen, self.spice_listen):
            if address is None:
                continue
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"a console listen address must be an IP address, not {address!r}"
                ) from None


#: Consoles on loopback, over TLS: the agent's defaults (``kubenova_agent.settings``).
DEFAULT_GRAPHICS = Graphics()


@dataclasses.dataclass(frozen=True)
class InstanceMetadata:
    """What a domain's Kubenova metadata element records."""

    name: str
    host: str
    image_name: str


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot represent replaced by U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def derived_mac(instance_uuid: str) -> str:
    """The MAC address of a new instance's NIC: :data:`MAC_PREFIX` and the first three bytes of
    the sha256 of its uuid.

    Why not libvirt's random one: libvirt's DHCP hands out addresses by MAC, so an instance
    whose domain is defined again (a rebuild, a build after a failed one) keeps its address
    only if it keeps its MAC. A rebuild reuses the MAC the domain has (:func:`interface_mac`),
    which also keeps the random MAC of a domain defined before this existed; deriving it makes
    a domain defined afresh for the same uuid get the same one too.

    Collisions: 24 bits, as libvirt's own random addresses have, so the odds are the same:
    among n guests on one host's network about n²/2²⁵, 0.03 % for 100 guests and 0.2 % for
    250 (a /24's worth). Only guests on the same network can clash.
    """
    digest = hashlib.sha256(driver.validate_uuid(instance_uuid).encode()).digest()
    return ":".join([MAC_PREFIX, *(f"{byte:02x}" for byte in digest[:3])])


def interface_mac(domain_xml: str) -> str | None:
    """The MAC address of the first NIC in a domain's XML (``virDomainGetXMLDesc``), in lower
    case; None when it has no NIC with one."""
    address = ET.fromstring(domain_xml).find("devices/interface/mac")
    mac = address.get("address", "").lower() if address is not None else ""
    return mac if _MAC.fullmatch(mac) else None


def _q(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {key: xml_text(val) for key, val in attrs.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def _metadata(parent: ET.Element, instance: driver.InstanceSpec, host: str) -> None:
    root = _sub(_sub(parent, "metadata"), _q("instance"))
    _sub(root, _q("name"), instance.name)
    _sub(root, _q("host"), host)
    _sub(
        root,
        _q("flavor"),
        vcpus=str(instance.vcpus),
        memory_mib=str(instance.memory_mib),
        disk_gib=str(instance.disk_gib),
    )
    _sub(
        root,
        _q("image"),
        name=instance.image.name,
        sha256=instance.image.sha256,
        disk_format=instance.image.disk_format,
    )


def _disk(devices: ET.Element, path: str, fmt: str, target: str, *, readonly: bool) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus="virtio")
    if readonly:
        _sub(disk, "readonly")


def _graphics(devices: ET.Element, graphics: Graphics, instance_uuid: str) -> None:
    vnc = _sub(devices, "graphics", type="vnc", autoport="yes")
    _sub(vnc, "listen", type="address", address=graphics.listen)
    spice = _sub(devices, "graphics", type="spice", autoport="yes")
    if graphics.tls:
        spice.set("defaultMode", "secure")
    if graphics.spice_ticket_key is not None:
        spice.set("passwd", spice_ticket.ticket(graphics.spice_ticket_key, instance_uuid))
    _sub(spice, "listen", type="address", address=graphics.spice_listen or graphics.listen)


def console_ports(domain_xml: str) -> driver.ConsolePorts | None:
    """The console ports of a running domain, from its live XML (``virDomainGetXMLDesc``);
    None when it has no graphics with a port (a domain that is not running has none: libvirt
    writes ``port='-1'`` or nothing until it starts QEMU)."""
    found: dict[str, int | None] = {"vnc": None, "spice": None, "spice_tls": None}
    for element in ET.fromstring(domain_xml).iterfind("devices/graphics"):
        kind = element.get("type")
        if kind == "vnc":
            found["vnc"] = _port(element.get("port"))
        elif kind == "spice":
            found["spice"] = _port(element.get("port"))
            found["spice_tls"] = _port(element.get("tlsPort"))
    if all(port is None for port in found.values()):
        return None
    return driver.ConsolePorts(
        vnc_port=found["vnc"], spice_port=found["spice"], spice_tls_port=found["spice_tls"]
    )


def _port(value: str | None) -> int | None:
    """A TCP port from a graphics element's attribute; None for none (absent, or -1)."""
    try:
        port = int(value or "")
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def build(
    instance: driver.InstanceSpec,
    *,
    domain_type: str,
    files: DomainFiles,
    network: str,
    host: str,
    mac: str | None = None,
    graphics: Graphics | None = DEFAULT_GRAPHICS,
) -> str:
    """Return the domain XML for ``instance``.

    ``host`` is recorded in the metadata: it names the agent host that made the domain, which
    lets simulated hosts sharing one libvirt tell their domains apart. ``mac`` is the NIC's
    address (lower-case colon-separated hex), :func:`derived_mac` when None. ``graphics``
    None gives the domain no VNC or SPICE (a headless guest).
    """
    if domain_type not in DOMAIN_TYPES:
        raise ValueError(f"domain type {domain_type!r} is not one of {sorted(DOMAIN_TYPES)}")
    mac = derived_mac(instance.uuid) if mac is None else mac
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise ValueError(f"not a unicast MAC address in lower case: {mac!r}")
    domain = ET.Element("domain", type=domain_type)
    _sub(domain, "name", driver.domain_name(instance.uuid))
    _sub(domain, "uuid", instance.uuid)
    _metadata(domain, instance, host)
    _sub(domain, "memory", str(instance.memory_mib), unit="MiB")
    _sub(domain, "currentMemory", str(instance.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(instance.vcpus), placement="static")

    os_element = _sub(domain, "os")
    _sub(os_element, "type", "hvm", arch=GUEST_ARCH)
    _sub(os_element, "boot", dev="hd")
    features = _sub(domain, "features")
    # Without ACPI a guest's poweroff halts the CPU instead of ending the domain.
    _sub(features, "acpi")
    _sub(features, "apic")
    if domain_type in ("kvm", "qemu"):
        # A named model rather than host-passthrough or host-model: on the hosts we run on,
        # "-cpu host" aborts on an MSR, and a fixed model keeps guests movable between hosts.
        # check='none' because libvirt's host-feature check compares against a host CPU that
        # may itself be virtual and incomplete (a nested hypervisor).
        cpu = _sub(domain, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", "qemu64", fallback="forbid")

    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    _disk(devices, files.disk, "qcow2", "vda", readonly=False)
    _disk(devices, files.config_drive, "raw", "vdb", readonly=True)

    interface = _sub(devices, "interface", type="network")
    _sub(interface, "mac", address=mac)
    _sub(interface, "source", network=network)
    _sub(interface, "model", type="virtio")

    # A unix socket QEMU listens on (mode='bind'); <log> has virtlogd write what the guest
    # prints to console.log whether or not a client is connected. append='on': a guest started
    # again after a shutdown (spawn's idempotent path, or a restart) adds to its console log
    # instead of erasing what the last boot printed.
    serial = _sub(devices, "serial", type="unix")
    _sub(serial, "source", mode="bind", path=files.console_socket)
    _sub(serial, "log", file=files.console_log, append="on")
    _sub(serial, "target", port="0")
    # The console is the first serial port, the same device: libvirt pairs them.
    console = _sub(devices, "console", type="unix")
    _sub(console, "source", mode="bind", path=files.console_socket)
    _sub(console, "log", file=files.console_log, append="on")
    _sub(console, "target", type="serial", port="0")

    if graphics is not None:
        _graphics(devices, graphics, instance.uuid)

    ET.indent(domain)
    # ElementTree writes a carriage return in text as it is, and every XML parser (libvirt's
    # too) reads a raw one back as a line feed; as a character reference it stays itself. The
    # markup has none of its own, so every one is a value's.
    return ET.tostring(domain, encoding="unicode").replace("\r", "&#13;")


def parse_metadata(element_xml: str) -> InstanceMetadata | None:
    """Read the metadata element libvirt hands back (``virDomainGetMetadata``).

    libvirt returns the element without its namespace (it was the lookup key), so names are
    matched with or without it. Returns None when the text is not an instance element.
    """
    try:
        root = ET.fromstring(element_xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    if root.tag != "instance":
        return None
    image = root.find("image")
    return InstanceMetadata(
        name=root.findtext("name", ""),
        host=root.findtext("host", ""),
        image_name=image.get("name", "") if image is not None else "",
    )
