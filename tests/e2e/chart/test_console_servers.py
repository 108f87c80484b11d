"""The chart's console servers: the aggregated API server answers through its APIService, and
the console proxy serves its page over TLS, both with certificates the operator issued from
Kubenova's CA, which it issues again (and the proxy serves, with no restart) when one goes."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
from typing import Any
from urllib import parse

import pytest
from cryptography import x509

from tests.e2e.chart.conftest import NAMESPACE, instance, running
from tests.e2e.conftest import KUBECONFIG, KUBECTL, ROOT, apply, get, kubectl, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chart]

APISERVICE = "v1.subresources.compute.kubenova.io"
GROUP_PATH = "/apis/subresources.compute.kubenova.io/v1"
CONSOLE = "kubenova-console"
SECRETS = ("kubenova-console-tls", "kubenova-console-x509", "kubenova-subresources-tls")


def _available() -> bool:
    conditions = ((get("apiservice", APISERVICE) or {}).get("status") or {}).get("conditions")
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions or [])


def _secret(name: str) -> dict[str, Any] | None:
    return get("secret", name, NAMESPACE)


def _cert_of(secret: dict[str, Any], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def _trust_bundle() -> str:
    configmap = get("configmap", "kubenova-ca", NAMESPACE)
    assert configmap is not None, "the operator has not published its CA"
    return str(configmap["data"]["ca.crt"])


def _served_certificate(trust: str, path: str = "/vnc.html") -> tuple[x509.Certificate, bytes]:
    """The certificate the console proxy's Service presents, verified against Kubenova's CA
    for the Service's name, and the answer to GET ``path``."""
    service = get("service", CONSOLE, NAMESPACE)
    assert service is not None
    address, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    context = ssl.create_default_context(cadata=trust)
    hostname = f"{CONSOLE}.{NAMESPACE}.svc"
    with (
        socket.create_connection((address, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert der is not None
    return x509.load_der_x509_certificate(der), answer


def _console_pods() -> list[dict[str, Any]]:
    listed = kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=console", "-o", "json"
    )
    return [
        p for p in json.loads(listed.stdout)["items"] if not p["metadata"].get("deletionTimestamp")
    ]


def _console_pod() -> dict[str, Any]:
    (pod,) = _console_pods()
    return pod


def test_the_apiservice_becomes_available_and_answers_through_the_kube_apiserver(release):
    wait_for(f"APIService {APISERVICE} to be Available", _available, timeout=240, interval=2)
    apiservice = get("apiservice", APISERVICE)
    assert apiservice is not None
    # The operator wrote the caBundle: Kubenova's trust bundle.
    assert base64.b64decode(apiservice["spec"]["caBundle"]).decode() == _trust_bundle()

    discovery = json.loads(kubectl("get", "--raw", GROUP_PATH).stdout)
    assert discovery["kind"] == "APIResourceList"
    assert "instances/consoleurl" in {resource["name"] for resource in discovery["resources"]}

    # Through the front proxy, with the caller's identity: our server answers for the Instance.
    missing = kubectl(
        "create", "--raw", f"{GROUP_PATH}/namespaces/default/instances/chart-nothing/consoleurl",
        "-f", "-", stdin="{}", check=False,
    )  # fmt: skip
    assert missing.returncode != 0
    assert 'instances.compute.kubenova.io "chart-nothing" not found' in missing.stderr


def test_each_certificate_secret_shows_its_expiry_and_chains_to_kubenovas_ca(release):
    wait_for("the operator to issue the certificates", lambda: all(map(_secret, SECRETS)), 120)
    trust = _trust_bundle().encode()
    ca = x509.load_pem_x509_certificates(trust)[0]
    for name in SECRETS:
        secret = _secret(name)
        assert secret is not None
        key = "client-cert.pem" if name.endswith("-x509") else "tls.crt"
        cert = _cert_of(secret, key)
        cert.verify_directly_issued_by(ca)
        annotations = secret["metadata"]["annotations"]
        assert annotations["kubenova.io/not-after"] == cert.not_valid_after_utc.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert "kubenova.io/renew-after" in annotations
        assert secret["metadata"]["labels"]["kubenova.io/certificate"] in {
            "serving",
            "console-client",
        }


def test_the_console_proxy_serves_its_page_over_tls_and_a_renewed_certificate_unrestarted(
    release,
):
    wait_for(
        "the console proxy to be ready",
        lambda: [pod for pod in _console_pods() if _ready(pod)],
        timeout=180,
        interval=2,
    )
    trust = _trust_bundle()
    served, answer = _served_certificate(trust)
    issued = _cert_of(_secret("kubenova-console-tls") or {}, "tls.crt")
    assert served == issued
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1:2] == [b"200"], answer[:200]
    assert b"Kubenova console" in answer

    # A Secret deleted by hand comes back with a new certificate within the operator's check
    # interval; the kubelet swaps the files and the same process serves it.
    pod = _console_pod()
    kubectl("delete", "secret", "kubenova-console-tls", "-n", NAMESPACE)
    renewed = wait_for(
        "the operator to issue the console proxy's certificate again",
        lambda: (s := _secret("kubenova-console-tls")) and _cert_of(s, "tls.crt"),
        timeout=120,
        interval=2,
    )
    assert renewed.serial_number != issued.serial_number
    wait_for(
        "the console proxy to serve the new certificate",
        lambda: _served_certificate(_trust_bundle())[0] == renewed,
        timeout=240,
        interval=5,
    )
    after = _console_pod()
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _status(answer: bytes) -> int:
    return int(answer.split(b"\r\n", 1)[0].split()[1])


def _plugin_url(name: str, namespace: str) -> str | None:
    """``kubectl nova vnc NAME --url``, as a user runs it (the plugin on kubectl's PATH); None
    while the instance's host has not reported its console (409)."""
    done = subprocess.run(
        # kubectl hands a plugin every argument after its name, and takes none before it.
        [str(KUBECTL), "nova", "--kubeconfig", str(KUBECONFIG), "-n", namespace, "vnc", name,
         "--url"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )  # fmt: skip
    if done.returncode != 0:
        # Refused only for want of the console's port, which the host reports after the boot.
        assert any(word in done.stderr for word in ("409", "Conflict", "not running")), done.stderr
        return None
    return done.stdout.strip()


def test_kubectl_nova_vnc_answers_a_url_of_the_console_proxy_that_spends_its_token_once(
    user_namespace,
):
    apply(instance("console-vm", user_namespace))
    uid = running("console-vm", user_namespace)["metadata"]["uid"]
    url = wait_for(
        "a console URL for console-vm",
        lambda: _plugin_url("console-vm", user_namespace),
        timeout=120,
        interval=3,
    )
    parts = parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == f"https://{CONSOLE}.{NAMESPACE}.svc:6080"
    assert parse.parse_qs(parts.query)["instance"] == [uid]

    # The proxy finds the token the aggregated server minted in the database and spends it:
    # the page loads once, with the session cookie; the same URL in another browser is refused.
    trust = _trust_bundle()
    _, first = _served_certificate(trust, f"{parts.path}?{parts.query}")
    assert _status(first) == 200, first[:300]
    assert b"Set-Cookie:" in first
    _, again = _served_certificate(trust, f"{parts.path}?{parts.query}")
    assert _status(again) == 403, again[:300]
