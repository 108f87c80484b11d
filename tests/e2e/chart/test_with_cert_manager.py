"""The release upgraded with ``certificates.certManager.enabled`` against a real cert-manager
(v1.11.5, hack/certmanager/up.sh): cert-manager issues the servers' and the console proxy's
certificates from the chart's own CA chain, the operator publishes that CA as the trust bundle
(ConfigMap and the APIService's caBundle), the node's agent gets its console certificate through
a CertificateRequest, and a VNC session crosses every hop (kube-apiserver, aggregated API server,
QEMU) on cert-manager's certificates alone. Afterwards the release goes back to the operator's
own certificates.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.e2e.chart.conftest import NAMESPACE, helm_install, instance, running
from tests.e2e.chart.test_host_console_tls import (
    X509_DIR,
    _drain,
    _node_address,
    _plugin_proxy,
    _request_update,
    _sans,
    _vnc_session,
)
from tests.e2e.conftest import HOST, ROOT, apply, get, kubectl, wait_for
from tests.e2e.test_cert_manager import _controller_running

pytestmark = [pytest.mark.e2e, pytest.mark.chart]

CHAIN_CA_SECRET = "kubenova-cm-ca"
ISSUER = "kubenova-ca-issuer"
#: The Secrets of the console hop, the operator's before the switch and cert-manager's after.
ISSUED = ("kubenova-console-tls", "kubenova-console-x509", "kubenova-subresources-tls")
APISERVICE = "v1.subresources.compute.kubenova.io"


def _script(name: str) -> None:
    done = subprocess.run(
        [str(ROOT / "hack/certmanager" / name)], capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, f"hack/certmanager/{name}: {done.stdout}{done.stderr}"


def _secret(name: str, key: str) -> bytes | None:
    secret = get("secret", name, NAMESPACE) or {}
    value = (secret.get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


def _issued_by(pem: bytes | None, ca: x509.Certificate) -> bool:
    if not pem:
        return False
    try:
        x509.load_pem_x509_certificate(pem).verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _certificates_ready() -> bool:
    listed = kubectl("get", "certificates.cert-manager.io", "-n", NAMESPACE, "-o", "json")
    items = json.loads(listed.stdout)["items"]
    ready = {
        item["metadata"]["name"]
        for item in items
        for condition in (item.get("status") or {}).get("conditions") or []
        if condition["type"] == "Ready" and condition["status"] == "True"
    }
    return len(items) >= len(ISSUED) + 1 and ready == {i["metadata"]["name"] for i in items}


def _bundle() -> list[x509.Certificate]:
    """The trust bundle the operator published (ConfigMap kubenova-ca)."""
    pem = ((get("configmap", "kubenova-ca", NAMESPACE) or {}).get("data") or {}).get("ca.crt")
    return x509.load_pem_x509_certificates(pem.encode()) if pem else []


def _delete_issued(*extra: str) -> None:
    kubectl("delete", "secret", "-n", NAMESPACE, "--ignore-not-found", *ISSUED, *extra)


@pytest.fixture(scope="module")
def chain_ca(release: str) -> Iterator[x509.Certificate]:
    """The release with cert-manager issuing; yields the chart's CA. Afterwards the release is
    put back as `make up` installs it, with the operator's own certificates."""
    was_running = _controller_running()
    _script("up.sh")
    try:
        helm_install("--set", "certificates.certManager.enabled=true")
        # The operator's Secrets stand where cert-manager writes its own (docs/certificates.md).
        _delete_issued()
        wait_for("cert-manager's Certificates to be Ready", _certificates_ready, timeout=240)
        pem = _secret(CHAIN_CA_SECRET, "tls.crt")
        assert pem is not None
        yield x509.load_pem_x509_certificate(pem)
    finally:
        # Back to the operator's own certificates: cert-manager stops issuing, its Secrets go,
        # and the operator's start pass issues them again.
        kubectl("delete", "certificates.cert-manager.io", "--all", "-n", NAMESPACE)
        _delete_issued(CHAIN_CA_SECRET)
        helm_install()
        operator_ca = wait_for(
            "the operator's own CA", lambda: _secret("kubenova-ca", "tls.crt"), timeout=240
        )
        wait_for(
            "the operator to issue the console hop's certificates again",
            lambda: all(
                _issued_by(
                    _secret(name, "client-cert.pem" if name.endswith("x509") else "tls.crt"),
                    x509.load_pem_x509_certificate(operator_ca),
                )
                for name in ISSUED
            ),
            timeout=240,
        )
        if not was_running:
            _script("down.sh")


def test_cert_manager_issues_the_certificates_and_the_bundle_follows_its_ca(
    chain_ca: x509.Certificate,
) -> None:
    for name in ISSUED:
        secret = get("secret", name, NAMESPACE) or {}
        assert secret["metadata"]["annotations"]["cert-manager.io/issuer-name"] == ISSUER, name
        assert _issued_by(_secret(name, "tls.crt"), chain_ca), name
    # The operator publishes the issuer's CA where the trust bundle goes.
    wait_for(
        "the trust bundle to be cert-manager's CA", lambda: _bundle() == [chain_ca], timeout=240
    )
    apiservice = get("apiservice", APISERVICE) or {}
    assert x509.load_pem_x509_certificates(base64.b64decode(apiservice["spec"]["caBundle"])) == [
        chain_ca
    ]


def test_the_nodes_certificate_comes_through_cert_manager_and_a_vnc_session_crosses_every_hop(
    chain_ca: x509.Certificate, user_namespace: str
) -> None:
    # The agent asks again once its projected bundle changed; cert-manager signs its request.
    host_cert: Any = wait_for(
        "the node's console certificate from cert-manager's CA",
        lambda: (
            _issued_by(pem := (X509_DIR / "server-cert.pem").read_bytes(), chain_ca)
            and x509.load_pem_x509_certificate(pem)
        ),
        timeout=300,
        interval=5,
    )
    assert host_cert.subject.rfc4514_string() == f"CN={HOST}"
    assert set(_sans(host_cert)) <= {HOST, _node_address()}
    assert HOST in _sans(host_cert)
    # The operator deleted its CertificateRequests once answered.
    leftover = kubectl(
        "get", "certificaterequests.cert-manager.io", "-n", NAMESPACE, "-o", "name"
    ).stdout.split()
    assert not [name for name in leftover if "/host-" in name]

    # A guest started now serves that certificate; a session through the kube-apiserver and
    # the aggregated API server (client certificate kubenova-console-x509, cert-manager's)
    # reaches it.
    apply(instance("cm-vm", user_namespace))
    running("cm-vm", user_namespace)
    # The kube-apiserver reaches the aggregated API server on cert-manager's certificate once
    # it has the new caBundle (its availability check and discovery follow within a minute).
    consolelog = (
        f"/apis/subresources.compute.kubenova.io/v1/namespaces/{user_namespace}"
        "/instances/cm-vm/consolelog?tailLines=5"
    )
    wait_for(
        "the aggregated API to answer through the kube-apiserver",
        lambda: kubectl("get", "--raw", consolelog, check=False).returncode == 0,
        timeout=180,
        interval=5,
    )
    with (
        _plugin_proxy("cm-vm", user_namespace) as local_port,
        _vnc_session(local_port) as (session, size),
    ):
        assert _request_update(session, size) == 0
        _drain(session)
