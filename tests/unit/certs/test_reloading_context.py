"""A server's TLS context follows its certificate files: a renewed certificate is served from
the next connection on, and a pair that does not load yet keeps the previous one."""

from __future__ import annotations

import os
import pathlib
import socket
import ssl
import threading

from cryptography import x509

from kubenova.certs import authority, reloading


def _write_pair(directory: pathlib.Path, pair: authority.KeyPair) -> None:
    # As the kubelet updates a Secret volume: new files, then one rename.
    for name, content in (("tls.crt", pair.cert_pem()), ("tls.key", pair.key_pem())):
        staged = directory / f".{name}.new"
        staged.write_bytes(content)
        os.replace(staged, directory / name)


def _context(directory: pathlib.Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    return context


def _served_serial(server_context: ssl.SSLContext, ca: authority.KeyPair) -> int:
    """The serial of the certificate a TLS handshake with ``server_context`` presents."""
    client = ssl.create_default_context(cadata=ca.cert_pem().decode())
    left, right = socket.socketpair()
    with left, right:
        thread = threading.Thread(
            target=lambda: server_context.wrap_socket(left, server_side=True).close()
        )
        thread.start()
        with client.wrap_socket(right, server_hostname="kubenova-console") as tls:
            der = tls.getpeercert(binary_form=True)
        thread.join(5)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_certificate_is_served_from_the_next_connection(tmp_path: pathlib.Path) -> None:
    ca = authority.issue_ca()
    first = authority.issue_server_cert(ca, ["kubenova-console"])
    _write_pair(tmp_path, first)
    contexts = reloading.ReloadingContext(
        lambda: _context(tmp_path), (tmp_path / "tls.crt", tmp_path / "tls.key")
    )
    assert _served_serial(contexts.current(), ca) == first.cert.serial_number
    assert contexts.current() is contexts.current()

    renewed = authority.issue_server_cert(ca, ["kubenova-console"])
    _write_pair(tmp_path, renewed)
    assert _served_serial(contexts.current(), ca) == renewed.cert.serial_number


def test_a_pair_that_does_not_load_keeps_the_previous_context_until_it_does(
    tmp_path: pathlib.Path,
) -> None:
    ca = authority.issue_ca()
    first = authority.issue_server_cert(ca, ["kubenova-console"])
    _write_pair(tmp_path, first)
    contexts = reloading.ReloadingContext(
        lambda: _context(tmp_path), (tmp_path / "tls.crt", tmp_path / "tls.key")
    )
    before = contexts.current()
    renewed = authority.issue_server_cert(ca, ["kubenova-console"])
    # Half done: the new certificate beside the old key.
    (tmp_path / "tls.crt").write_bytes(renewed.cert_pem())
    assert contexts.current() is before
    _write_pair(tmp_path, renewed)
    assert _served_serial(contexts.current(), ca) == renewed.cert.serial_number
