"""What the browser tests of a booted guest's consoles start from: ``kubenova-subresources``
behind the real kube-apiserver (reading the stack's own database, where the agent recorded the
guest's console ports), the console proxy's client certificate from the cluster's CA (the one
the host's QEMU trusts), and the checks a page and a console log are read with."""

from __future__ import annotations

import base64
import contextlib
import pathlib
import subprocess
import uuid as uuidlib
from collections.abc import Iterator

from kubernetes import client as k8s_client

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.db import engine as db_engine
from kubenova.k8s import client as kube
from kubenova.subresources import app, cmd, consoleurl, manifests, server
from tests.e2e.conftest import KUBECONFIG, KUBECTL, api_configuration, apply, get, kubectl, wait_for

APISERVICE = "v1.subresources.compute.kubenova.io"
# The cluster's CA Secret (hack/lib/console_tls.sh keeps the hosts' QEMU certificates signed
# by it), in the namespace the operator issues the proxy's certificate from.
CA_SECRET = "kubenova-ca"
CA_NAMESPACE = "default"

# True once the canvas under ``selector`` holds a pixel that is not black: the guest's screen
# arrived. Called with the selector as its argument.
CANVAS_SHOWS_SCREEN = """(selector) => {
  const canvas = document.querySelector(selector);
  if (!canvas || canvas.width < 2 || canvas.height < 2) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] || pixels[i + 1] || pixels[i + 2]) return true;
  }
  return false;
}"""


def node_address() -> str:
    """This machine's address, where the kube-apiserver is advertised (the `kubernetes`
    Service's endpoint); an EndpointSlice may not hold a loopback address."""
    result = kubectl(
        "get",
        "endpointslice",
        "-n",
        "default",
        "kubernetes",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]}",
    )
    return result.stdout.strip()


def _available() -> bool:
    conditions = ((get("apiservice", APISERVICE) or {}).get("status") or {}).get("conditions")
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions or [])


@contextlib.contextmanager
def registered_apiservice(system: str, port: int, ca_pem: bytes) -> Iterator[None]:
    """The ``kubenova-subresources`` listening on ``port`` on this machine, registered as the
    APIService (its Service and EndpointSlice in the new namespace ``system``, trusted with
    ``ca_pem``) beside the ClusterRole of console users, until it is Available; all of it
    removed at the end, the APIService first (one left unavailable troubles every client's
    discovery)."""
    kubectl("create", "namespace", system)
    try:
        apply(
            [
                *manifests.host_endpoint(system, node_address(), port),
                manifests.apiservice(system, ca_pem),
                manifests.console_user_role(),
            ]
        )
        wait_for(f"APIService {APISERVICE} to be Available", _available, timeout=90)
        yield
    finally:
        kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        kubectl(
            "delete", "clusterrole", manifests.CONSOLE_USER_ROLE, "--ignore-not-found", check=False
        )
        kubectl("delete", "namespace", system, "--wait=false", check=False)


@contextlib.contextmanager
def served_subresources(
    session_factory: db_engine.SessionFactory, proxy_url: str, port: int, tls_dir: pathlib.Path
) -> Iterator[None]:
    """``kubenova-subresources`` on this machine, registered as its APIService and Available,
    minting tokens in ``session_factory``'s database for URLs under ``proxy_url``."""
    system = f"kn-subresources-kbd-{uuidlib.uuid4().hex[:6]}"
    ca = authority.issue_ca("kubenova-subresources-e2e-ca")
    serving = authority.issue_server_cert(ca, [f"{manifests.SERVICE}.{system}.svc"])
    (tls_dir / "tls.crt").write_bytes(serving.cert_pem())
    (tls_dir / "tls.key").write_bytes(serving.key_pem())
    api_client = k8s_client.ApiClient(api_configuration())
    request_headers = cmd.read_request_header_config(api_client)
    urls = consoleurl.ConsoleUrls(kube.KubeClient(api_client), session_factory, proxy_url, 600)
    context = server.tls_context(
        tls_dir / "tls.crt", tls_dir / "tls.key", request_headers.client_ca_pem
    )
    running = server.serve(app.App(request_headers, urls), context, "0.0.0.0", port)
    try:
        with registered_apiservice(system, port, ca.cert_pem()):
            yield
    finally:
        running.stop()


def write_proxy_x509_dir(directory: pathlib.Path) -> pathlib.Path:
    """The proxy's client side (:func:`kubenova.certs.console.proxy_files`), issued from the
    cluster's CA Secret as the operator issues it; returns ``directory``."""

    def field(name: str) -> bytes:
        jsonpath = "jsonpath={.data." + name.replace(".", "\\.") + "}"
        result = kubectl("get", "secret", CA_SECRET, "-n", CA_NAMESPACE, "-o", jsonpath)
        return base64.b64decode(result.stdout)

    ca = authority.KeyPair.from_pem(field("tls.crt"), field("tls.key"))
    client = console_certs.issue_proxy_client_cert(ca)
    directory.mkdir(parents=True, exist_ok=True)
    for filename, content in console_certs.proxy_files(client, ca.cert_pem()).items():
        (directory / filename).write_bytes(content)
    return directory


def wait_for_console_line(console_log: pathlib.Path, line: str, timeout: float) -> None:
    """Wait until the guest's serial log (``console.log``) holds ``line`` as a whole line."""

    def found() -> bool:
        if not console_log.exists():
            return False
        text = console_log.read_text(errors="replace")
        return line in (raw.rstrip("\r") for raw in text.splitlines())

    wait_for(f"{line!r} in {console_log}", found, timeout=timeout, interval=0.5)


def console_url(env: dict[str, str], namespace: str, name: str, verb: str) -> str:
    """``kubectl nova VERB NAME --url`` (``vnc`` or ``spice``), as a user runs it; retried
    while the guest's host has not reported its consoles yet (a Conflict)."""

    def attempt() -> str | None:
        result = subprocess.run(
            [str(KUBECTL), "nova", verb, name, "--url", "-n", namespace],
            capture_output=True,
            text=True,
            # kubectl runs its plugin (kubectl-nova, on the PATH) with this environment.
            env=dict(env, KUBECONFIG=str(KUBECONFIG)),
            timeout=60,
            check=False,
        )
        if result.returncode == 0:
            return result.stdout.strip()
        assert "Conflict" in result.stderr or "has no" in result.stderr, result.stderr
        return None

    url: str = wait_for(f"a {verb} URL of {namespace}/{name}", attempt, timeout=60)
    return url
