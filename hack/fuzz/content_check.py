"""Whether hostile values change the domain XML or the config drive an agent makes, checked with
the agent's own builders (``kubenova_agent.virt.libvirt.domain_xml``,
``kubenova_agent.configdrive``) in this process.

Domain XML: the document made for an instance must parse, and must be the document made for the
same instance with benign placeholders instead of its name and its image's name, element for
element (the same tags, attributes, comments and processing instructions, in the same places),
every text and attribute value equal, except where a placeholder stands: there the hostile
value must be, as it was given. "As given" allows one documented change: characters XML 1.0
cannot carry are replaced with U+FFFD (the module docstring of ``domain_xml`` says so).

Config drive: the ISO made for an instance must hold only ``openstack/latest/meta_data.json``
and, when there is user data, ``openstack/latest/user_data``; the user data read back (by its
Rock Ridge and by its Joliet name) must be the bytes given; meta_data.json must parse and hold
the uuid and name given, each key as given with surrounding whitespace trimmed (what
``configdrive`` documents), and a hostname of lower-case letters, digits, dots and dashes, at
most 63, neither first nor last a dot or dash (what ``configdrive.sanitize_hostname``
promises; the given one when it is an RFC 1123 label already).

Each check returns the problems it found, as sentences; none means the content was not changed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

import pycdlib

from kubenova_agent import configdrive
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import domain_xml

#: Builds a domain's XML for an instance (the agent's builder, or one a test breaks).
XmlBuilder = Callable[[driver.InstanceSpec], str]
#: Writes an instance's config drive to a path.
DriveBuilder = Callable[[pathlib.Path, driver.InstanceSpec], None]

HOST = "fuzz-001"
FILES = domain_xml.DomainFiles(
    disk="/fuzz/instances/x/disk",
    config_drive="/fuzz/instances/x/disk.config",
    console_log="/fuzz/instances/x/console.log",
)
BENIGN_NAME = "benign-instance-name"
BENIGN_IMAGE = "benign-image-name"
META_DATA_KEYS = frozenset(
    {"uuid", "hostname", "name", "public_keys", "launch_index", "availability_zone"}
)

# Characters outside XML 1.0's Char production, written here from the XML specification.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_RFC1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SANITIZED_HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")


def agent_xml(spec: driver.InstanceSpec) -> str:
    """The agent's domain XML for ``spec`` on a KVM host."""
    return domain_xml.build(spec, domain_type="kvm", files=FILES, network="default", host=HOST)


def agent_drive(path: pathlib.Path, spec: driver.InstanceSpec) -> None:
    configdrive.build(path, spec)


def xml_chars(value: str) -> str:
    """``value`` as an XML document can carry it: what XML 1.0 excludes made U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def benign_twin(spec: driver.InstanceSpec) -> driver.InstanceSpec:
    """``spec`` with placeholders for the values that reach the domain XML from the user."""
    return dataclasses.replace(
        spec, name=BENIGN_NAME, image=dataclasses.replace(spec.image, name=BENIGN_IMAGE)
    )


# -- domain XML ------------------------------------------------------------------------------

#: One slot of a document: (where: the child indexes from the root, what: "tag", "text",
#: "tail" or "@attribute", its value).
Slot = tuple[tuple[int, ...], str, str]


def _parse(xml: str) -> ET.Element:
    # Comments and processing instructions are kept: an injected one must show.
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    parser.feed(xml)
    root: ET.Element = parser.close()
    return root


def _slots(element: ET.Element, where: tuple[int, ...] = ()) -> Iterable[Slot]:
    tag = element.tag if isinstance(element.tag, str) else f"<{element.tag.__name__}>"
    yield where, "tag", tag
    yield where, "text", element.text or ""
    for name in sorted(element.attrib):
        yield where, f"@{name}", element.attrib[name]
    for index, child in enumerate(element):
        yield from _slots(child, (*where, index))
        yield (*where, index), "tail", child.tail or ""


def check_domain_xml(spec: driver.InstanceSpec, build: XmlBuilder = agent_xml) -> list[str]:
    """The ways the domain XML of ``spec`` differs from its benign twin's beyond the hostile
    values standing, as given, where the placeholders stand."""
    try:
        hostile = list(_slots(_parse(build(spec))))
    except ET.ParseError as exc:
        return [f"the domain XML does not parse: {exc}"]
    benign = list(_slots(_parse(build(benign_twin(spec)))))
    if [(where, what) for where, what, _ in hostile] != [
        (where, what) for where, what, _ in benign
    ]:
        return ["the domain XML's elements or attributes are not those of the benign document"]
    given = {BENIGN_NAME: spec.name, BENIGN_IMAGE: spec.image.name}
    tags = {where: value for where, what, value in benign if what == "tag"}
    problems = []
    for (where, what, value), (_, _, placeholder) in zip(hostile, benign, strict=True):
        wanted = xml_chars(given[placeholder]) if placeholder in given else placeholder
        if value != wanted:
            place = "/".join(
                tags[where[:depth]].rpartition("}")[2] for depth in range(len(where) + 1)
            )
            problems.append(f"domain XML {place} {what} {_difference(value, wanted)}")
    return problems


def _difference(found: str, wanted: str) -> str:
    """Where ``found`` first differs from ``wanted``, with a little of each around it."""
    at = next(
        (i for i, (a, b) in enumerate(zip(found, wanted, strict=False)) if a != b),
        min(len(found), len(wanted)),
    )
    start = max(0, at - 10)
    return f"differs at character {at}: {found[start : at + 20]!r}, not {wanted[start : at + 20]!r}"


# -- config drive ----------------------------------------------------------------------------


def _children(iso: Any, rr_path: str) -> set[str]:
    return {
        child.rock_ridge.name().decode()
        for child in iso.list_children(rr_path=rr_path)
        if child.rock_ridge is not None and not (child.is_dot() or child.is_dotdot())
    }


def _read(iso: Any, **path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


def check_config_drive(spec: driver.InstanceSpec, build: DriveBuilder = agent_drive) -> list[str]:
    """The ways the config drive of ``spec`` does not carry what it was given."""
    with tempfile.TemporaryDirectory(prefix="fuzz-drive-") as directory:
        path = pathlib.Path(directory) / "disk.config"
        build(path, spec)
        iso = pycdlib.PyCdlib()
        iso.open(str(path))
        try:
            return _drive_problems(iso, spec)
        finally:
            iso.close()


def _drive_problems(iso: Any, spec: driver.InstanceSpec) -> list[str]:
    problems = []
    files = {"meta_data.json"} | ({"user_data"} if spec.user_data is not None else set())
    layout = (
        _children(iso, "/"),
        _children(iso, "/openstack"),
        _children(iso, "/openstack/latest"),
    )
    if layout != ({"openstack"}, {"latest"}, files):
        problems.append(f"the config drive holds {layout}, not openstack/latest/{sorted(files)}")
        return problems
    if spec.user_data is not None:
        for path in ({"rr_path": "/openstack/latest/user_data"},
                     {"joliet_path": "/openstack/latest/user_data"}):  # fmt: skip
            if _read(iso, **path) != spec.user_data:
                problems.append(f"user_data read by {next(iter(path))} is not the bytes given")
    try:
        meta = json.loads(_read(iso, rr_path="/openstack/latest/meta_data.json"))
    except ValueError as exc:
        return [*problems, f"meta_data.json does not parse: {exc}"]
    if not isinstance(meta, dict) or set(meta) != META_DATA_KEYS:
        return [*problems, f"meta_data.json holds {sorted(meta)}, not {sorted(META_DATA_KEYS)}"]
    keys = {f"key-{index}": key.strip() for index, key in enumerate(spec.ssh_authorized_keys)}
    for key, wanted in (("uuid", spec.uuid), ("name", spec.name), ("public_keys", keys)):
        if meta[key] != wanted:
            problems.append(f"meta_data.json {key} is {str(meta[key])[:80]!r}, not as given")
    hostname = meta["hostname"]
    if not isinstance(hostname, str) or not _SANITIZED_HOSTNAME.fullmatch(hostname):
        problems.append(f"meta_data.json hostname {hostname!r} is not a sanitised hostname")
    elif _RFC1123_LABEL.fullmatch(spec.hostname) and hostname != spec.hostname:
        problems.append(f"meta_data.json hostname {hostname!r} is not {spec.hostname!r}")
    return problems


# -- what is checked -------------------------------------------------------------------------

PROBE_UUID = "6f757a7a-0000-4000-8000-000000000001"


def spec_of(
    instance: dict[str, Any], flavor: dict[str, Any], image: dict[str, Any]
) -> driver.InstanceSpec:
    """What an agent is handed to build this Instance object (as the apiserver stored it) of
    this Flavor and Image spec: the values ``kubenova.conductor.compute_tasks`` puts into the
    build message (the name, the hostname or else the name, the user data's UTF-8 bytes, the
    keys, the image by the name the Instance gives). Raises ``ValueError`` for what the
    agent's value types refuse (user data over 64 KiB: the operator keeps such an instance
    Pending instead) and for values of the wrong type."""
    spec, metadata = instance["spec"], instance["metadata"]
    user_data, keys = spec.get("userData"), tuple(spec.get("sshAuthorizedKeys") or ())
    if not isinstance(user_data, str | None) or not all(isinstance(key, str) for key in keys):
        # The operator's message contract refuses these; the CRD should not let them in.
        raise ValueError("spec.userData or spec.sshAuthorizedKeys of a type but string")
    return driver.InstanceSpec(
        uuid=metadata["uid"],
        name=metadata["name"],
        hostname=spec.get("hostname") or metadata["name"],
        vcpus=int(flavor["vcpus"]),
        memory_mib=int(flavor["memoryMiB"]),
        disk_gib=int(flavor["diskGiB"]),
        image=driver.ImageRef(
            name=spec["image"],
            url=image["source"]["url"],
            sha256=image["sha256"],
            disk_format=image["diskFormat"],
        ),
        user_data=user_data.encode() if user_data is not None else None,
        ssh_authorized_keys=keys,
    )


def probe_spec(value: str, ssh_key: str) -> driver.InstanceSpec:
    """An instance carrying ``value`` everywhere an agent writes a user's text: its name (which
    a manifest cannot make hostile: metadata.name is a DNS name), hostname, image name, user
    data and the comment of an SSH key."""
    return driver.InstanceSpec(
        uuid=PROBE_UUID,
        name=value,
        hostname=value,
        vcpus=1,
        memory_mib=64,
        disk_gib=1,
        image=driver.ImageRef(
            name=value, url="http://127.0.0.1:8089/x.qcow2", sha256="0" * 64, disk_format="qcow2"
        ),
        user_data=value.encode(),
        ssh_authorized_keys=(f"{ssh_key} {value}",),
    )


def check(spec: driver.InstanceSpec) -> list[str]:
    """Both checks of ``spec`` with the agent's builders."""
    return check_domain_xml(spec) + check_config_drive(spec)
