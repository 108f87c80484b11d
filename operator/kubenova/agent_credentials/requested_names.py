"""The names a host's signing request may ask for, when the request's names are what the
certificate says (cert-manager signs what it is given).

The operator-as-CA path ignores the request's names and writes its own
(:mod:`kubenova.agent_credentials.host_certificates`); a signer that copies them must first
check them: the common name is the node the caller's token is bound to, the DNS SANs name that
node and nothing else, the IP SANs are among the Node's addresses as the apiserver reports
them. Anything else is refused, naming what is not allowed, so an agent cannot pose as another
host or claim an address its node does not have.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID


class NameNotAllowed(ValueError):
    """The request asks for a name its node may not have; the message says which."""


def check(request: x509.CertificateSigningRequest, node: str, addresses: Sequence[str]) -> None:
    """Raise :class:`NameNotAllowed` unless ``request`` names ``node`` (as its common name)
    and at most ``node`` as a DNS name and ``addresses`` as IP addresses."""
    common_names = [
        str(attr.value) for attr in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    if common_names != [node]:
        shown = ", ".join(common_names) or "none"
        raise NameNotAllowed(f"the request's common name must be the node {node}, not {shown}")
    other = [attr for attr in request.subject if attr.oid != NameOID.COMMON_NAME]
    if other:
        raise NameNotAllowed(
            "the request's subject may hold the common name only, not "
            + ", ".join(attr.rfc4514_string() for attr in other)
        )
    try:
        san: x509.SubjectAlternativeName = request.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return
    dns_names = san.get_values_for_type(x509.DNSName)
    wrong_dns = [name for name in dns_names if name != node]
    if wrong_dns:
        raise NameNotAllowed(
            f"DNS names other than the node's ({node}) are not allowed: {', '.join(wrong_dns)}"
        )
    allowed_ips = set()
    for address in addresses:
        try:
            allowed_ips.add(ipaddress.ip_address(address))
        except ValueError:
            continue  # a Node's hostname entry: no IP SAN can be it
    wrong_ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if ip not in allowed_ips]
    if wrong_ips:
        raise NameNotAllowed(
            f"IP addresses that are not node {node}'s are not allowed:"
            f" {', '.join(str(ip) for ip in wrong_ips)}"
            f" (its addresses: {', '.join(addresses) or 'none'})"
        )
    known = (x509.DNSName, x509.IPAddress)
    others = [name for name in san if not isinstance(name, known)]
    if others:
        raise NameNotAllowed(
            "only DNS names and IP addresses may be asked for, not "
            + ", ".join(type(name).__name__ for name in others)
        )
