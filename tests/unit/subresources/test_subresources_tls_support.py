"""The serving certificate the end-to-end tests give their ``kubenova-subresources``
(tests.support.subresources_tls): the kube-apiserver, trusting only the APIService's caBundle,
must reach the server by the Service's DNS name, and one module's CA must not vouch for
another's server."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from kubenova.certs import authority
from kubenova.subresources import manifests
from tests.support.subresources_tls import SubresourcesTLS, write_subresources_tls


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext, name: str) -> None:
    """A TLS handshake over a socket pair; raises what the client's side raises."""
    server_end, client_end = socket.socketpair()

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_end, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client's side tells the test what went wrong

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client_context.wrap_socket(client_end, server_hostname=name):
            pass
    finally:
        client_end.close()
        thread.join(timeout=10)


def _server_context(tls: SubresourcesTLS) -> ssl.SSLContext:
    """The server's context as the support module makes it, asking no client certificate:
    the front proxy's client certificate is not what these tests are about."""
    context = tls.context(authority.issue_ca("front-proxy-ca").cert_pem().decode())
    context.verify_mode = ssl.CERT_NONE
    return context


def test_the_apiserver_reaches_the_server_by_the_services_name(tmp_path):
    tls = write_subresources_tls(tmp_path, "kn-test")
    client = ssl.create_default_context(cadata=tls.ca.cert_pem().decode())

    _handshake(_server_context(tls), client, f"{manifests.SERVICE}.{tls.system}.svc")

    assert tls.system.startswith("kn-test-")
    assert (tls.cert_file.parent, tls.key_file.parent) == (tmp_path, tmp_path)


def test_another_name_is_refused(tmp_path):
    tls = write_subresources_tls(tmp_path, "kn-test")
    client = ssl.create_default_context(cadata=tls.ca.cert_pem().decode())

    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(_server_context(tls), client, f"{manifests.SERVICE}.elsewhere.svc")


def test_each_call_has_its_own_system_and_ca(tmp_path):
    first = write_subresources_tls(tmp_path / "a", "kn-test")
    second = write_subresources_tls(tmp_path / "b", "kn-test")
    trusts_first = ssl.create_default_context(cadata=first.ca.cert_pem().decode())

    assert first.system != second.system
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(
            _server_context(second), trusts_first, f"{manifests.SERVICE}.{second.system}.svc"
        )
