"""The domain XML a live migration hands the destination (``VIR_MIGRATE_PARAM_DEST_XML``).

The source's migratable XML names the source's files; the destination keeps the instance's
files in its own instances directory (hosts share no storage), so every path under the
source's instance directory is rewritten to the same name under the destination's. The
Kubenova metadata names the destination's host, which is what makes the domain its driver's.
The root disk's backing chain is dropped: the destination's disk is a standalone qcow2 that
the migration fills (``pre_live_migration``), and libvirt would otherwise believe the XML and
look on the destination for the source's cached image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kubenova_agent.virt.libvirt import domain_xml

#: Elements whose ``file`` or ``path`` attribute names a file of the instance: ``<source>``
#: (disks, the serial console's unix socket) and ``<log>`` (the serial console's log file).
_PATH_ELEMENTS = ("source", "log")
_PATH_ATTRIBUTES = ("file", "path")


def rewrite_path(path: str, source_dir: str, destination_dir: str) -> str:
    """``path`` moved from under ``source_dir`` to under ``destination_dir``; any other path
    as it is."""
    prefix = source_dir.rstrip("/") + "/"
    if path.startswith(prefix):
        return destination_dir.rstrip("/") + "/" + path[len(prefix) :]
    return path


def destination_xml(xml: str, *, source_dir: str, destination_dir: str, host: str) -> str:
    """The domain XML ``xml`` as the destination should define it; see the module docstring.

    Raises ``ValueError`` when the XML has no Kubenova metadata (the domain is not an
    instance's).
    """
    root = ET.fromstring(xml)
    host_element = root.find(
        f"metadata/{{{domain_xml.NAMESPACE}}}instance/{{{domain_xml.NAMESPACE}}}host"
    )
    if host_element is None:
        raise ValueError("the domain XML has no Kubenova instance metadata")
    host_element.text = domain_xml.xml_text(host)
    for element in (e for tag in _PATH_ELEMENTS for e in root.iter(tag)):
        for attribute in _PATH_ATTRIBUTES:
            value = element.get(attribute)
            if value is not None:
                element.set(attribute, rewrite_path(value, source_dir, destination_dir))
    for disk in root.iterfind("devices/disk"):
        disk_source = disk.find("source")
        moved = disk_source is not None and (disk_source.get("file") or "").startswith(
            destination_dir.rstrip("/") + "/"
        )
        if moved and disk.find("readonly") is None:
            for backing in disk.findall("backingStore"):
                disk.remove(backing)
            # An empty element: "no backing file", rather than "probe for one".
            ET.SubElement(disk, "backingStore")
    return ET.tostring(root, encoding="unicode")
