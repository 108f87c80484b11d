"""The XML a live migration hands the destination carries the guest's secrets: libvirt leaves
SPICE's password out of a domain's XML unless asked with VIR_DOMAIN_XML_SECURE, and a guest
defined from XML without it would arrive on the destination with a SPICE that asks nothing."""

from __future__ import annotations

import libvirt

from kubenova_agent.virt.libvirt import connection


class _Handle:
    def __init__(self) -> None:
        self.flags: list[int] = []

    def XMLDesc(self, flags: int) -> str:  # noqa: N802 (libvirt's name)
        self.flags.append(flags)
        return "<domain/>"


def test_the_migratable_xml_is_asked_with_its_secrets() -> None:
    handle = _Handle()
    connection.Domain(handle).xml_desc(migratable=True)
    (flags,) = handle.flags
    assert flags & libvirt.VIR_DOMAIN_XML_MIGRATABLE
    assert flags & libvirt.VIR_DOMAIN_XML_SECURE


def test_the_plain_xml_leaves_secrets_out() -> None:
    handle = _Handle()
    connection.Domain(handle).xml_desc()
    assert handle.flags == [0]
