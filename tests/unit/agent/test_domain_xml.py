"""The domain XML builder: what a domain gets, and that hostile names stay text."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import pytest

from kubenova.console import spice_ticket
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import domain_xml

UUID = "6f1c2a9e-8d3b-4c5e-9f7a-0b1c2d3e4f50"
OTHER_UUID = "6f1c2a9e-8d3b-4c5e-9f7a-0b1c2d3e4f51"
NS = {"kn": domain_xml.NAMESPACE}
FILES = domain_xml.DomainFiles(
    disk=f"/var/lib/kubenova/instances/{UUID}/disk",
    config_drive=f"/var/lib/kubenova/instances/{UUID}/disk.config",
    console_log=f"/var/lib/kubenova/instances/{UUID}/console.log",
)


def make_instance(name: str = "web-1", image_name: str = "tiny") -> driver.InstanceSpec:
    return driver.InstanceSpec(
        uuid=UUID,
        name=name,
        hostname="web-1",
        vcpus=2,
        memory_mib=512,
        disk_gib=3,
        image=driver.ImageRef(
            name=image_name, url="http://127.0.0.1:8089/tiny.qcow2", sha256="ab" * 32,
            disk_format="qcow2",
        ),
    )  # fmt: skip


def build(
    instance: driver.InstanceSpec | None = None,
    domain_type: str = "qemu",
    graphics: domain_xml.Graphics | None = domain_xml.DEFAULT_GRAPHICS,
) -> ET.Element:
    xml = domain_xml.build(
        instance or make_instance(),
        domain_type=domain_type,
        files=FILES,
        network="default",
        host="node-a",
        graphics=graphics,
    )
    return ET.fromstring(xml)


def test_domain_has_type_name_uuid_memory_and_vcpus():
    domain = build()
    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == f"instance-{UUID}"
    assert domain.findtext("uuid") == UUID
    memory = domain.find("memory")
    assert memory is not None
    assert (memory.text, memory.get("unit")) == ("512", "MiB")
    assert domain.findtext("vcpu") == "2"


def test_domain_boots_hvm_from_disk_with_acpi_and_apic():
    domain = build()
    assert domain.findtext("os/type") == "hvm"
    boot = domain.find("os/boot")
    assert boot is not None
    assert boot.get("dev") == "hd"
    assert domain.find("features/acpi") is not None
    assert domain.find("features/apic") is not None
    assert domain.findtext("on_poweroff") == "destroy"


@pytest.mark.parametrize("domain_type", ["qemu", "kvm"])
def test_cpu_is_a_named_model_never_host_passthrough(domain_type):
    cpu = build(domain_type=domain_type).find("cpu")
    assert cpu is not None
    assert cpu.get("mode") == "custom"
    assert cpu.findtext("model") == "qemu64"


def test_root_disk_is_a_virtio_qcow2_on_vda():
    disks = build().findall("devices/disk")
    root = disks[0]
    source, target, drv = root.find("source"), root.find("target"), root.find("driver")
    assert source is not None
    assert source.get("file") == FILES.disk
    assert target is not None
    assert (target.get("dev"), target.get("bus")) == ("vda", "virtio")
    assert drv is not None
    assert drv.get("type") == "qcow2"
    assert root.find("readonly") is None


def test_config_drive_is_a_readonly_raw_virtio_disk_on_vdb():
    config = build().findall("devices/disk")[1]
    source, target, drv = config.find("source"), config.find("target"), config.find("driver")
    assert source is not None
    assert source.get("file") == FILES.config_drive
    assert target is not None
    assert (target.get("dev"), target.get("bus")) == ("vdb", "virtio")
    assert drv is not None
    assert drv.get("type") == "raw"
    assert config.find("readonly") is not None


def test_nic_is_virtio_on_the_given_network():
    interface = build().find("devices/interface")
    assert interface is not None
    assert interface.get("type") == "network"
    source, model = interface.find("source"), interface.find("model")
    assert source is not None
    assert source.get("network") == "default"
    assert model is not None
    assert model.get("type") == "virtio"


def test_nic_mac_is_derived_from_the_uuid_locally_administered_and_unicast():
    mac = build().find("devices/interface/mac")
    assert mac is not None
    address = mac.get("address", "")
    assert address == domain_xml.derived_mac(UUID)
    digest = hashlib.sha256(UUID.encode()).hexdigest()
    assert address == f"52:54:00:{digest[0:2]}:{digest[2:4]}:{digest[4:6]}"
    first = int(address[:2], 16)
    assert first & 0b10, "locally administered"
    assert not first & 0b01, "unicast"
    # Stable: the same uuid always gives the same address, another uuid another one.
    assert domain_xml.derived_mac(UUID) == address
    assert domain_xml.derived_mac(OTHER_UUID) != address


def test_a_given_mac_is_used_and_reads_back():
    xml = domain_xml.build(
        make_instance(),
        domain_type="qemu",
        files=FILES,
        network="default",
        host="node-a",
        mac="52:54:00:12:34:56",
    )
    assert domain_xml.interface_mac(xml) == "52:54:00:12:34:56"


def test_the_mac_reads_back_from_libvirts_xml_in_lower_case():
    libvirt_xml = (
        "<domain type='qemu'><name>x</name><devices>"
        "<interface type='network'><mac address='52:54:00:AB:CD:EF'/>"
        "<source network='default'/></interface></devices></domain>"
    )
    assert domain_xml.interface_mac(libvirt_xml) == "52:54:00:ab:cd:ef"
    assert domain_xml.interface_mac("<domain><devices/></domain>") is None


@pytest.mark.parametrize("mac", ["53:54:00:12:34:56", "52:54:00:12:34", "52-54-00-12-34-56"])
def test_a_multicast_or_malformed_mac_is_refused(mac):
    with pytest.raises(ValueError, match="MAC"):
        domain_xml.build(
            make_instance(),
            domain_type="qemu",
            files=FILES,
            network="default",
            host="node-a",
            mac=mac,
        )


def test_serial_console_is_a_unix_socket_logged_to_the_console_log_file():
    devices = build().find("devices")
    assert devices is not None
    socket_path = f"/var/lib/kubenova/instances/{UUID}/console.sock"
    for tag, target_type in (("serial", None), ("console", "serial")):
        device = devices.find(tag)
        assert device is not None
        assert device.get("type") == "unix"
        source = device.find("source")
        assert source is not None
        assert (source.get("mode"), source.get("path")) == ("bind", socket_path)
        log = device.find("log")
        assert log is not None
        assert (log.get("file"), log.get("append")) == (FILES.console_log, "on")
        target = device.find("target")
        assert target is not None
        assert target.get("port") == "0"
        assert target.get("type") == target_type
    assert len(devices.findall("serial")) == 1
    assert FILES.console_socket == socket_path


def _graphics(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("type", ""): g for g in root.iterfind("devices/graphics")}


def test_vnc_and_spice_listen_on_loopback_by_default_with_ports_left_to_libvirt():
    graphics = _graphics(build())
    assert sorted(graphics) == ["spice", "vnc"]
    for element in graphics.values():
        assert element.get("autoport") == "yes"
        assert element.get("port") is None
        assert element.get("tlsPort") is None
        listens = element.findall("listen")
        assert [(x.get("type"), x.get("address")) for x in listens] == [("address", "127.0.0.1")]


def test_spice_has_no_plain_channel_when_tls_is_on():
    assert _graphics(build())["spice"].get("defaultMode") == "secure"


def test_spice_without_tls_leaves_the_mode_to_libvirt():
    root = build(graphics=domain_xml.Graphics(listen="10.0.0.7", tls=False))
    spice = _graphics(root)["spice"]
    assert spice.get("defaultMode") is None
    assert spice.find("listen").get("address") == "10.0.0.7"  # type: ignore[union-attr]


def test_spice_may_stay_on_loopback_while_vnc_listens_on_the_nodes_address():
    root = build(graphics=domain_xml.Graphics(listen="10.0.0.7", spice_listen="127.0.0.1"))
    graphics = _graphics(root)
    assert graphics["vnc"].find("listen").get("address") == "10.0.0.7"  # type: ignore[union-attr]
    assert graphics["spice"].find("listen").get("address") == "127.0.0.1"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="must be an IP address"):
        domain_xml.Graphics(spice_listen="localhost")


def test_spice_gets_the_password_derived_for_its_instance_when_given_a_key():
    key = b"k" * 32
    root = build(graphics=domain_xml.Graphics(listen="10.0.0.7", spice_ticket_key=key))
    graphics = _graphics(root)
    uuid = root.findtext("uuid")
    assert uuid
    assert graphics["spice"].get("passwd") == spice_ticket.ticket(key, uuid)
    # VNC is kept by the client certificate QEMU asks for, not by a password.
    assert graphics["vnc"].get("passwd") is None


def test_spice_has_no_password_without_a_key():
    assert _graphics(build())["spice"].get("passwd") is None


def test_no_graphics_makes_a_headless_domain():
    root = build(graphics=None)
    assert root.findall("devices/graphics") == []


@pytest.mark.parametrize("listen", ["localhost", "", "300.1.1.1", "127.0.0.1 --x"])
def test_a_listen_address_must_be_an_ip_address(listen):
    with pytest.raises(ValueError, match="must be an IP address"):
        domain_xml.Graphics(listen=listen)


# As libvirt writes a running guest's graphics in its live XML (qemu.conf with TLS on).
LIVE_XML = """<domain type='qemu'><devices>
  <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>
    <listen type='address' address='127.0.0.1'/>
  </graphics>
  <graphics type='spice' tlsPort='5902' autoport='yes' listen='127.0.0.1' defaultMode='secure'>
    <listen type='address' address='127.0.0.1'/>
  </graphics>
</devices></domain>"""


def test_console_ports_read_back_from_the_live_xml():
    assert domain_xml.console_ports(LIVE_XML) == driver.ConsolePorts(
        vnc_port=5901, spice_port=None, spice_tls_port=5902
    )


def test_a_domain_that_is_not_running_has_no_console_ports():
    shut_off = LIVE_XML.replace("port='5901'", "port='-1'").replace(" tlsPort='5902'", "")
    assert domain_xml.console_ports(shut_off) is None
    assert domain_xml.console_ports("<domain><devices/></domain>") is None


def test_metadata_records_name_host_flavor_and_image():
    instance = build().find("metadata/kn:instance", NS)
    assert instance is not None
    assert instance.findtext("kn:name", namespaces=NS) == "web-1"
    assert instance.findtext("kn:host", namespaces=NS) == "node-a"
    flavor = instance.find("kn:flavor", NS)
    assert flavor is not None
    assert dict(flavor.attrib) == {"vcpus": "2", "memory_mib": "512", "disk_gib": "3"}
    image = instance.find("kn:image", NS)
    assert image is not None
    assert (image.get("name"), image.get("sha256")) == ("tiny", "ab" * 32)


@pytest.mark.parametrize(
    "hostile",
    [
        '<x>&"',
        "</name></kubenova:instance></metadata><devices><disk/>",
        "]]><!-- '\" -->",
        "a\rreboot\r\n",
    ],
)
def test_hostile_names_stay_text(hostile):
    xml = domain_xml.build(
        make_instance(name=hostile, image_name=hostile),
        domain_type="qemu",
        files=FILES,
        network="default",
        host="node-a",
    )
    domain = ET.fromstring(xml)
    assert domain.findtext("metadata/kn:instance/kn:name", namespaces=NS) == hostile
    image = domain.find("metadata/kn:instance/kn:image", NS)
    assert image is not None
    assert image.get("name") == hostile
    # The document's shape is unchanged: still exactly two disks and one devices element.
    assert len(domain.findall("devices")) == 1
    assert len(domain.findall("devices/disk")) == 2
    assert '<x>&"' not in xml


def test_characters_xml_cannot_carry_are_replaced():
    xml = domain_xml.build(
        make_instance(name="a\x00b\x1bc"),
        domain_type="qemu",
        files=FILES,
        network="default",
        host="node-a",
    )
    name = ET.fromstring(xml).findtext("metadata/kn:instance/kn:name", namespaces=NS)
    assert name == "a\ufffdb\ufffdc"


def test_unknown_domain_type_is_refused():
    with pytest.raises(ValueError, match="domain type"):
        build(domain_type="xen")


def test_metadata_reads_back_as_libvirt_returns_it_without_namespace():
    returned = (
        "<instance><name>&lt;x&gt;</name><host>node-a</host>"
        '<image name="tiny" sha256="ab" disk_format="qcow2"/></instance>'
    )
    metadata = domain_xml.parse_metadata(returned)
    assert metadata == domain_xml.InstanceMetadata(name="<x>", host="node-a", image_name="tiny")


def test_metadata_reads_back_from_the_built_document():
    element = build().find("metadata/kn:instance", NS)
    assert element is not None
    metadata = domain_xml.parse_metadata(ET.tostring(element, encoding="unicode"))
    assert metadata is not None
    assert metadata.host == "node-a"


@pytest.mark.parametrize("text", ["not xml", "<other/>"])
def test_foreign_metadata_is_not_ours(text):
    assert domain_xml.parse_metadata(text) is None
