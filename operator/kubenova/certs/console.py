"""Certificates for the console hop between Kubenova's console proxy and a host's QEMU.

A console is VNC or SPICE served by QEMU on its hypervisor host. With TLS on that hop, QEMU
proves it is the host the proxy meant (a **host certificate**: serverAuth, the host's name and
IP addresses as SANs, since the proxy may reach it by either), and the proxy proves it is the
proxy (a **client certificate**: clientAuth only, so that a proxy's key can never pose as a
host, nor a host's key as the proxy). Both are signed by the newest CA and trust the whole
bundle, so either side still accepts a peer whose certificate an older CA signed during a
rotation's overlap.

libvirt points QEMU at a directory (``vnc_tls_x509_cert_dir``, ``spice_tls_x509_cert_dir``)
with fixed file names; :func:`host_files` and :func:`proxy_files` return those names with
their contents, ready to become a Secret mounted there. QEMU loads them when a VM starts (and
again on QMP ``display-reload``), so a renewed host certificate reaches running VMs only when
one of those happens; the 30 days of ``CONSOLE_VALIDITY`` leave room for that.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubenova.certs import authority, dh_params

# The names libvirt and QEMU look for in their x509 directory.
CA_FILE = "ca-cert.pem"
SERVER_CERT_FILE = "server-cert.pem"
SERVER_KEY_FILE = "server-key.pem"
CLIENT_CERT_FILE = "client-cert.pem"
CLIENT_KEY_FILE = "client-key.pem"

PROXY_COMMON_NAME = "kubenova-console-proxy"


def issue_host_cert(
    ca: authority.KeyPair,
    host: str,
    addresses: Sequence[str],
    *,
    validity: datetime.timedelta = authority.CONSOLE_VALIDITY,
    now: datetime.datetime | None = None,
) -> authority.KeyPair:
    """A serving certificate for QEMU's VNC/SPICE TLS on ``host``: its common name and first
    SAN are ``host``, then each of ``addresses`` as an IP address SAN (ValueError for one that
    is not an address)."""
    return authority.issue_leaf(
        ca,
        host,
        host_names(host, addresses),
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        validity=validity,
        now=now,
        key_encipherment=True,
    )


def sign_host_cert(
    ca: authority.KeyPair,
    host: str,
    addresses: Sequence[str],
    public_key: authority.PublicKey,
    *,
    validity: datetime.timedelta = authority.CONSOLE_VALIDITY,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """As :func:`issue_host_cert`, for a key the host made and keeps (its signing request's)."""
    return authority.sign_leaf(
        ca,
        public_key,
        host,
        host_names(host, addresses),
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        validity=validity,
        now=now,
        key_encipherment=True,
    )


def host_names(host: str, addresses: Sequence[str]) -> list[x509.GeneralName]:
    """A host certificate's SANs: ``host`` as a DNS name, then each address as an IP address
    (ValueError for an empty name or a string that is not an address)."""
    if not host:
        raise ValueError("a host certificate needs the host's name")
    ips = [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    return [x509.DNSName(host), *ips]


def issue_proxy_client_cert(
    ca: authority.KeyPair,
    *,
    common_name: str = PROXY_COMMON_NAME,
    validity: datetime.timedelta = authority.CONSOLE_VALIDITY,
    now: datetime.datetime | None = None,
) -> authority.KeyPair:
    """The console proxy's client certificate, which QEMU checks with ``vnc_tls_x509_verify``.
    QEMU authorizes a client by its CA (and, where configured, by its distinguished name in a
    ``tls-authz`` list); ``common_name`` is also its one DNS SAN, because verifiers that follow
    RFC 5280's profile strictly (``cryptography``'s among them) refuse a leaf without SANs."""
    return authority.issue_leaf(
        ca,
        common_name,
        [x509.DNSName(common_name)],
        purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
        validity=validity,
        now=now,
        key_encipherment=True,
    )


def host_files(host_cert: authority.KeyPair, trust_bundle: bytes) -> dict[str, bytes]:
    """A host's x509 directory: the CAs it trusts for proxies' client certificates, its own
    certificate and key, and the Diffie-Hellman group QEMU is to use (:mod:`dh_params`)."""
    return {
        CA_FILE: trust_bundle,
        SERVER_CERT_FILE: host_cert.cert_pem(),
        SERVER_KEY_FILE: host_cert.key_pem(),
        dh_params.DH_PARAMS_FILE: dh_params.FFDHE2048_PEM,
    }


def proxy_files(client_cert: authority.KeyPair, trust_bundle: bytes) -> dict[str, bytes]:
    """The proxy's side: the CAs it trusts for hosts' certificates, and its client
    certificate and key."""
    return {
        CA_FILE: trust_bundle,
        CLIENT_CERT_FILE: client_cert.cert_pem(),
        CLIENT_KEY_FILE: client_cert.key_pem(),
    }
