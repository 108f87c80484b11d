"""The console hop's certificates: a host's serves QEMU's VNC/SPICE TLS for its name and
addresses, the proxy's authenticates it as a client, neither can stand in for the other, and
both land in the files libvirt looks for."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import socket
import ssl
import threading

import pytest
from cryptography import exceptions, x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubenova.certs import authority, console, dh_params

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> authority.KeyPair:
    return authority.issue_ca(now=NOW)


@pytest.fixture(scope="module")
def host(ca: authority.KeyPair) -> authority.KeyPair:
    return console.issue_host_cert(ca, "hv-1.lab", ["10.0.0.5", "fd00::5"], now=NOW)


@pytest.fixture(scope="module")
def proxy(ca: authority.KeyPair) -> authority.KeyPair:
    return console.issue_proxy_client_cert(ca, now=NOW)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s public key verifies ``cert``'s signature."""
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    try:
        public_key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except exceptions.InvalidSignature:
        return False
    return True


def verifier(ca: authority.KeyPair) -> verification.PolicyBuilder:
    return verification.PolicyBuilder().store(verification.Store([ca.cert])).time(NOW)


def purposes(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_both_certificates_are_signed_by_the_ca_that_issued_them_and_no_other(
    ca: authority.KeyPair, host: authority.KeyPair, proxy: authority.KeyPair
) -> None:
    other = authority.issue_ca(now=NOW)
    for leaf in (host, proxy):
        assert leaf.cert.issuer == ca.cert.subject
        assert signed_by(leaf.cert, ca.cert)
        assert not signed_by(leaf.cert, other.cert)
        assert not authority.is_ca(leaf.cert)


def test_the_host_certificate_names_the_host_and_each_address(host: authority.KeyPair) -> None:
    names = host.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hv-1.lab"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("fd00::5"),
    ]
    assert host.cert.subject.rfc4514_string() == "CN=hv-1.lab"


def test_the_host_certificate_serves_only(host: authority.KeyPair) -> None:
    assert purposes(host.cert) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_the_proxy_certificate_authenticates_a_client_only(proxy: authority.KeyPair) -> None:
    assert purposes(proxy.cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert proxy.cert.subject.rfc4514_string() == "CN=kubenova-console-proxy"
    names = proxy.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kubenova-console-proxy"]


def test_key_usage_is_what_libvirt_and_qemu_require_of_a_critical_one(
    host: authority.KeyPair, proxy: authority.KeyPair
) -> None:
    for leaf in (host, proxy):
        extension = leaf.cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert extension.critical
        usage = extension.value
        assert (usage.digital_signature, usage.key_encipherment) == (True, True)
        assert (usage.key_cert_sign, usage.crl_sign, usage.key_agreement) == (False, False, False)


def test_a_verifier_accepts_the_host_by_name_and_by_address(
    ca: authority.KeyPair, host: authority.KeyPair
) -> None:
    for subject in (x509.DNSName("hv-1.lab"), x509.IPAddress(ipaddress.ip_address("fd00::5"))):
        chain = verifier(ca).build_server_verifier(subject).verify(host.cert, [])
        assert chain == [host.cert, ca.cert]
    with pytest.raises(verification.VerificationError):
        verifier(ca).build_server_verifier(x509.DNSName("hv-2.lab")).verify(host.cert, [])


def test_a_client_certificate_is_refused_as_a_server_and_a_host_one_as_a_client(
    ca: authority.KeyPair, host: authority.KeyPair, proxy: authority.KeyPair
) -> None:
    verified = verifier(ca).build_client_verifier().verify(proxy.cert, [])
    assert verified.chain == [proxy.cert, ca.cert]
    as_server = verifier(ca).build_server_verifier(x509.DNSName("kubenova-console-proxy"))
    with pytest.raises(verification.VerificationError, match="required EKU not found"):
        as_server.verify(proxy.cert, [])
    with pytest.raises(verification.VerificationError, match="required EKU not found"):
        verifier(ca).build_client_verifier().verify(host.cert, [])


def test_console_certificates_live_thirty_days_from_their_backdated_start(
    host: authority.KeyPair, proxy: authority.KeyPair
) -> None:
    for leaf in (host, proxy):
        assert leaf.not_before == datetime.datetime(2031, 4, 30, 23, 55, tzinfo=datetime.UTC)
        assert leaf.not_after == datetime.datetime(2031, 5, 31, tzinfo=datetime.UTC)


def test_the_lifetime_is_a_parameter_capped_by_the_longest_a_rotation_allows(
    ca: authority.KeyPair,
) -> None:
    week = console.issue_proxy_client_cert(ca, validity=datetime.timedelta(days=7), now=NOW)
    assert week.not_after == datetime.datetime(2031, 5, 8, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="at most"):
        console.issue_host_cert(ca, "hv-1.lab", [], validity=datetime.timedelta(days=91), now=NOW)


def test_a_host_address_that_is_not_an_address_is_refused(ca: authority.KeyPair) -> None:
    with pytest.raises(
        ValueError, match=r"'hv-1\.lab' does not appear to be an IPv4 or IPv6 address"
    ):
        console.issue_host_cert(ca, "hv-1.lab", ["hv-1.lab"], now=NOW)


def test_the_hosts_files_are_those_libvirt_reads_for_x509_vnc(host: authority.KeyPair) -> None:
    files = console.host_files(host, b"BUNDLE")
    assert files == {
        "ca-cert.pem": b"BUNDLE",
        "server-cert.pem": host.cert_pem(),
        "server-key.pem": host.key_pem(),
        "dh-params.pem": dh_params.FFDHE2048_PEM,
    }
    assert authority.KeyPair.from_pem(files["server-cert.pem"], files["server-key.pem"])


def test_the_proxys_files_are_the_client_side_of_the_same_directory(
    proxy: authority.KeyPair,
) -> None:
    files = console.proxy_files(proxy, b"BUNDLE")
    assert files == {
        "ca-cert.pem": b"BUNDLE",
        "client-cert.pem": proxy.cert_pem(),
        "client-key.pem": proxy.key_pem(),
    }


def test_across_a_rotation_proxy_and_host_complete_a_mutual_tls_handshake(
    tmp_path: pathlib.Path,
) -> None:
    # OpenSSL checks validity against the system clock, so these certificates start now.
    now = datetime.datetime.now(datetime.UTC)
    old, new = authority.issue_ca(now=now), authority.issue_ca(now=now)
    trust = new.cert_pem() + old.cert_pem()
    host_dir, proxy_dir = tmp_path / "host", tmp_path / "proxy"
    # The host's certificate is from before the rotation, the proxy's from after it.
    files = {
        host_dir: console.host_files(
            console.issue_host_cert(old, "hv-1.lab", ["127.0.0.1"], now=now), trust
        ),
        proxy_dir: console.proxy_files(console.issue_proxy_client_cert(new, now=now), trust),
    }
    for directory, contents in files.items():
        directory.mkdir()
        for name, data in contents.items():
            (directory / name).write_bytes(data)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(host_dir / "server-cert.pem", host_dir / "server-key.pem")
    server.load_verify_locations(host_dir / "ca-cert.pem")
    server.verify_mode = ssl.CERT_REQUIRED  # libvirt's vnc_tls_x509_verify = 1
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(proxy_dir / "ca-cert.pem")
    client.load_cert_chain(proxy_dir / "client-cert.pem", proxy_dir / "client-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    peer: list[object] = []

    def accept() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            peer.append(tls.getpeercert())
            tls.sendall(b"RFB")

    thread = threading.Thread(target=accept)
    thread.start()
    with (
        socket.create_connection(listener.getsockname()) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(3) == b"RFB"
    thread.join(5)
    listener.close()
    [seen] = peer
    assert isinstance(seen, dict)
    assert seen["subject"] == ((("commonName", "kubenova-console-proxy"),),)
