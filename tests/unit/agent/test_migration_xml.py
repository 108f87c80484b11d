"""The XML a live migration hands the destination: the destination's paths and host, and no
backing chain for the copied root disk."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import domain_xml, migration_xml

UUID = "6f1c2a9e-8d3b-4c5e-9f7a-0b1c2d3e4f50"
SOURCE = f"/var/lib/kubenova/instances/{UUID}"
DESTINATION = f"/srv/host-b/instances/{UUID}"
NS = {"kn": domain_xml.NAMESPACE}


def source_xml(host: str = "host-a") -> str:
    """A domain as ``domain_xml.build`` makes it, with the backing chain libvirt adds to a
    running domain's XML."""
    instance = driver.InstanceSpec(
        uuid=UUID, name="web <1>", hostname="web-1", vcpus=1, memory_mib=256, disk_gib=1,
        image=driver.ImageRef(name="tiny", url="http://x/tiny", sha256="ab" * 32,
                              disk_format="qcow2"),
    )  # fmt: skip
    xml = domain_xml.build(
        instance,
        domain_type="qemu",
        files=domain_xml.DomainFiles(
            disk=f"{SOURCE}/disk",
            config_drive=f"{SOURCE}/disk.config",
            console_log=f"{SOURCE}/console.log",
        ),
        network="default",
        host=host,
    )
    root = ET.fromstring(xml)
    vda = disk(root, "vda")
    assert vda is not None
    backing = ET.SubElement(vda, "backingStore", type="file")
    ET.SubElement(backing, "format", type="qcow2")
    ET.SubElement(backing, "source", file="/var/lib/kubenova/_base/" + "ab" * 32)
    return ET.tostring(root, encoding="unicode")


def disk(root: ET.Element, dev: str) -> ET.Element | None:
    for element in root.iterfind("devices/disk"):
        target = element.find("target")
        if target is not None and target.get("dev") == dev:
            return element
    return None


def rewritten(**kwargs: str) -> ET.Element:
    arguments = {"source_dir": SOURCE, "destination_dir": DESTINATION, "host": "host-b"}
    arguments.update(kwargs)
    return ET.fromstring(migration_xml.destination_xml(source_xml(), **arguments))


def test_every_instance_file_moves_to_the_destinations_directory():
    root = rewritten()
    sources = {element.get("file") or element.get("path") for element in root.iter("source")} - {
        None
    }
    assert sources == {
        f"{DESTINATION}/disk",
        f"{DESTINATION}/disk.config",
        f"{DESTINATION}/console.sock",
    }


def test_the_serial_consoles_socket_and_log_move_to_the_destinations_directory():
    root = rewritten()
    for tag in ("serial", "console"):
        device = root.find(f"devices/{tag}")
        assert device is not None
        assert device.get("type") == "unix"
        assert device.find("source").get("path") == f"{DESTINATION}/console.sock"  # type: ignore[union-attr]
        assert device.find("log").get("file") == f"{DESTINATION}/console.log"  # type: ignore[union-attr]
        assert device.find("log").get("append") == "on"  # type: ignore[union-attr]


def test_the_domain_names_the_destination_host_and_keeps_the_rest_of_its_metadata():
    root = rewritten()
    assert root.findtext("metadata/kn:instance/kn:host", namespaces=NS) == "host-b"
    assert root.findtext("metadata/kn:instance/kn:name", namespaces=NS) == "web <1>"
    assert root.findtext("uuid") == UUID


def test_the_root_disk_has_no_backing_chain_and_the_config_drive_keeps_its_own():
    root = rewritten()
    vda = disk(root, "vda")
    vdb = disk(root, "vdb")
    assert vda is not None
    assert vdb is not None
    backing = vda.findall("backingStore")
    assert len(backing) == 1
    assert list(backing[0]) == []
    assert vdb.findall("backingStore") == []


def test_paths_outside_the_instance_directory_are_left_alone():
    assert migration_xml.rewrite_path("/var/lib/kubenova/_base/x", SOURCE, DESTINATION) == (
        "/var/lib/kubenova/_base/x"
    )
    # A sibling whose name only begins like the directory's is not inside it.
    assert migration_xml.rewrite_path(f"{SOURCE}_resize/disk", SOURCE, DESTINATION) == (
        f"{SOURCE}_resize/disk"
    )
    assert migration_xml.rewrite_path(f"{SOURCE}/disk", SOURCE + "/", DESTINATION) == (
        f"{DESTINATION}/disk"
    )


def test_the_same_directory_on_both_hosts_still_drops_the_backing_chain():
    root = rewritten(destination_dir=SOURCE)
    vda = disk(root, "vda")
    assert vda is not None
    assert [list(element) for element in vda.findall("backingStore")] == [[]]
    assert vda.find("source") is not None


def test_a_hostile_host_name_stays_text():
    root = rewritten(host="b</kubenova:host><evil/>")
    assert root.findtext("metadata/kn:instance/kn:host", namespaces=NS) == (
        "b</kubenova:host><evil/>"
    )
    assert root.find(".//evil") is None


def test_a_domain_without_kubenova_metadata_is_refused():
    with pytest.raises(ValueError, match="metadata"):
        migration_xml.destination_xml(
            "<domain type='qemu'><name>x</name></domain>",
            source_dir=SOURCE,
            destination_dir=DESTINATION,
            host="host-b",
        )
