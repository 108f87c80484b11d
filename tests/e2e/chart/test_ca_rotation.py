"""An administrator rotates Kubenova's CA under a running console session
(``kubenova-manage ca rotate`` then ``promote``, in the operator's pod): the new CA is trusted
everywhere before it signs anything, then the hosts' and servers' certificates are issued
again from it, QEMU serves the new one, and the open VNC session through ``kubectl nova vnc``
never notices. A new session after the rotation works end to end."""

from __future__ import annotations

import base64
import pathlib
import ssl
import subprocess

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.e2e.chart.conftest import NAMESPACE, instance, running
from tests.e2e.chart.test_host_console_tls import (
    X509_DIR,
    _drain,
    _graphics,
    _node_address,
    _plugin_proxy,
    _request_update,
    _served,
    _vnc_session,
)
from tests.e2e.conftest import KUBECONFIG, KUBECTL, apply, get, wait_for

pytestmark = pytest.mark.chart


def _manage_ca(*args: str) -> str:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", NAMESPACE, "exec",
         "deploy/kubenova-operator", "-c", "operator", "--", "kubenova-manage", "ca", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _secret(name: str, key: str) -> bytes:
    secret = get("secret", name, NAMESPACE)
    assert secret is not None, f"no Secret {name}"
    return base64.b64decode(secret["data"][key])


def _host_cert() -> x509.Certificate:
    return x509.load_pem_x509_certificate((X509_DIR / "server-cert.pem").read_bytes())


def _trusting(bundle: bytes, directory: pathlib.Path) -> ssl.SSLContext:
    """The console proxy's side of TLS to QEMU, from its Secret as it is now, trusting
    ``bundle``."""
    for key in ("client-cert.pem", "client-key.pem"):
        (directory / key).write_bytes(_secret("kubenova-console-x509", key))
    context = ssl.create_default_context(cadata=bundle.decode())
    context.load_cert_chain(directory / "client-cert.pem", directory / "client-key.pem")
    return context


def test_a_rotation_asked_for_reaches_every_console_hop_under_an_open_session(
    user_namespace: str, tmp_path: pathlib.Path
) -> None:
    apply(instance("rotate-vm", user_namespace))
    instance_uuid = running("rotate-vm", user_namespace)["metadata"]["uid"]
    address = _node_address()
    old_ca = x509.load_pem_x509_certificate(_secret("kubenova-ca", "tls.crt"))
    vnc_port = wait_for("the guest's VNC", lambda: _graphics(instance_uuid)["vnc"][1], timeout=60)

    with _plugin_proxy("rotate-vm", user_namespace) as local_port:
        with _vnc_session(local_port) as (session, size):
            assert _request_update(session, size) == 0
            _drain(session)

            # Trust first: the next CA is published, signing nothing yet.
            said = _manage_ca("rotate", "--signs-in", "3600")
            assert "trusted now, signs from" in said
            new_ca = x509.load_pem_x509_certificate(_secret("kubenova-ca", "next.crt"))
            published = get("configmap", "kubenova-ca", NAMESPACE)
            assert published is not None
            assert [c.serial_number for c in _certs(published["data"]["ca.crt"].encode())] == [
                old_ca.serial_number,
                new_ca.serial_number,
            ]
            # The agent sees the bundle its pod projects change and takes a certificate that
            # the new CA's holders trust too (still signed by the old one).
            wait_for(
                "the host's trust bundle to hold the next CA",
                lambda: new_ca in _certs((X509_DIR / "ca-cert.pem").read_bytes()),
                timeout=240,
                interval=5,
            )
            _host_cert().verify_directly_issued_by(old_ca)
            assert _request_update(session, size) == 0

            # Then signing: the announced CA signs, the old one retires, everything is
            # issued again.
            said = _manage_ca("promote")
            assert "it signs from now on" in said
            assert "certificate pass done" in said
            assert x509.load_pem_x509_certificate(_secret("kubenova-ca", "tls.crt")) == new_ca
            client = x509.load_pem_x509_certificate(
                _secret("kubenova-console-x509", "client-cert.pem")
            )
            client.verify_directly_issued_by(new_ca)
            renewed: x509.Certificate = wait_for(
                "the host's certificate from the new CA",
                lambda: _issued_by(_host_cert(), new_ca),
                timeout=240,
                interval=5,
            )
            # QEMU serves it to the proxy's new client certificate.
            bundle = (X509_DIR / "ca-cert.pem").read_bytes()
            wait_for(
                "QEMU to serve the host's new certificate",
                lambda: (
                    _served(address, vnc_port, _trusting(bundle, tmp_path)).serial_number
                    == renewed.serial_number
                ),
                timeout=60,
            )
            # The open session went on through all of it.
            assert _request_update(session, size) == 0

        # A new session: the aggregated server's new client certificate (its Secret as the
        # kubelet brings it) to the host's new one.
        def new_session_works() -> bool:
            try:
                with _vnc_session(local_port) as (again, again_size):
                    return _request_update(again, again_size) == 0
            except (OSError, AssertionError):
                return False

        wait_for(
            "a new VNC session after the rotation", new_session_works, timeout=240, interval=10
        )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> x509.Certificate | None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return None
    return cert
