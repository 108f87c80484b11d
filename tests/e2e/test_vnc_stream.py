"""A native VNC client reaches a real QEMU's TLS-only VNC through the real kube-apiserver:
``kubectl nova vnc NAME --proxy-only`` listens on a local port, each connection is a websocket
to ``instances/vnc`` that the kube-apiserver authorizes with RBAC and proxies to
``kubenova-subresources`` (a host process behind the APIService, as in
tests/e2e/test_console_subresources.py), which speaks VeNCrypt/TLS to QEMU with the console
proxy's client certificate. A plain RFB client on the local port sees security None, the
guest's screen size and a framebuffer update. The plugin runs as ServiceAccounts, with a
kubeconfig holding each one's token: one whose Role grants ``get`` on ``instances/vnc``, one
without (refused by the kube-apiserver, 403).
"""

from __future__ import annotations

import _thread
import contextlib
import json
import pathlib
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from kubernetes import client as k8s_client

from kubenova.cli import kubectl_nova
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.k8s import client as kube
from kubenova.subresources import app, cmd, consoleurl, server, vnc
from tests.e2e.conftest import (
    KUBECONFIG,
    ROOT,
    api_configuration,
    apply,
    get,
    instance_manifest,
    kubectl,
)
from tests.e2e.console_browser_support import registered_apiservice
from tests.e2e.test_console_subresources import GROUP, console_db
from tests.integration.console.proxy_support import HOST, X509, make_x509, wait_for_port
from tests.integration.db.helpers import make_instance
from tests.support.ctrl_c import ctrl_c
from tests.support.subresources_tls import write_subresources_tls

# ctrl_c: the plugin runs in this process and stops on Ctrl-C, which the client thread sends.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("ctrl_c")]

__all__ = ["console_db", "ctrl_c"]  # fixtures this module uses

PORT = 16102
# QEMU's VNC display port: off the console proxy tests' ports (16080-16099).
QEMU_VNC_PORT = 16190
PROXY_URL = "https://console.kubenova.test:6080"


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> X509:
    return make_x509(tmp_path_factory.mktemp("vnc-x509"))


@pytest.fixture(scope="module")
def served(
    console_db: db_engine.SessionFactory,
    x509: X509,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """kubenova-subresources on this machine with the vnc stream, registered as the
    APIService and Available."""
    if kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack's kube-apiserver is not up: run hack/kube/up.sh")
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "crds/compute.kubenova.io_instances.yaml"),
    )
    kubectl("wait", "--for=condition=Established", "crd/instances.compute.kubenova.io")
    tls = write_subresources_tls(
        tmp_path_factory.mktemp("vnc-subresources-tls"),
        "kn-vnc",
        "kubenova-subresources-vnc-e2e-ca",
    )

    api_client = k8s_client.ApiClient(api_configuration())
    request_headers = cmd.read_request_header_config(api_client)
    instances = kube.KubeClient(api_client)
    urls = consoleurl.ConsoleUrls(instances, console_db, PROXY_URL, 600)
    context = tls.context(request_headers.client_ca_pem)
    streams = vnc.stream_subresources(
        request_headers,
        instances,
        console_db,
        proxy_settings.ProxySettings(x509_dir=x509.proxy_dir),
    )
    running = server.serve(app.App(request_headers, urls), context, "0.0.0.0", PORT, streams)
    try:
        with registered_apiservice(tls.system, PORT, tls.ca.cert_pem()):
            yield
    finally:
        running.stop()


@pytest.fixture
def vnc_namespace() -> Iterator[str]:
    """A namespace with an Instance ``vnc-1``, a ServiceAccount ``viewer`` whose Role grants
    ``get`` on ``instances/vnc``, and ``stranger``, granted nothing."""
    name = f"e2e-vnc-{uuidlib.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    account: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount"}
    apply(
        [
            instance_manifest("vnc-1", name, "m1.tiny"),
            {**account, "metadata": {"name": "viewer", "namespace": name}},
            {**account, "metadata": {"name": "stranger", "namespace": name}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "vnc-viewer", "namespace": name},
                "rules": [{"apiGroups": [GROUP], "resources": ["instances/vnc"], "verbs": ["get"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "vnc-viewer", "namespace": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "vnc-viewer",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": name}],
            },
        ]
    )
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def kubeconfig_of(account: str, namespace: str, directory: pathlib.Path) -> pathlib.Path:
    """A kubeconfig for the local cluster that authenticates as the ServiceAccount."""
    token = kubectl("create", "token", account, "-n", namespace).stdout.strip()
    config = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    config["contexts"][0]["context"]["namespace"] = namespace
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def qemu_with_tls_vnc(x509_dir: pathlib.Path, log: pathlib.Path) -> Iterator[int]:
    """A diskless TCG guest whose firmware draws on a std VGA; its VNC only with
    ``tls-creds-x509`` (``verify-peer=yes``) on :data:`QEMU_VNC_PORT`."""
    binary = shutil.which("qemu-system-x86_64")
    if binary is None:
        pytest.fail("qemu-system-x86_64 is missing: hack/services.sh installs it", pytrace=False)
    command = [
        binary,
        "-nodefaults",
        "-no-user-config",
        "-machine", "pc,accel=tcg",
        "-m", "32",
        "-vga", "std",
        "-display", "none",
        "-object",
        f"tls-creds-x509,id=tls0,dir={x509_dir},endpoint=server,verify-peer=yes",
        "-vnc", f"127.0.0.1:{QEMU_VNC_PORT - 5900},tls-creds=tls0",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(QEMU_VNC_PORT, process)
        yield QEMU_VNC_PORT
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def record_running(
    session_factory: db_engine.SessionFactory, namespace: str, name: str, vnc_port: int
) -> None:
    """Record the Instance as running on :data:`HOST` (the name in QEMU's certificate) with
    QEMU's VNC port, as the host's report does."""
    uid = str(get("instance", name, namespace)["metadata"]["uid"])  # type: ignore[index]
    make_instance(session_factory, uid, name=name, namespace=namespace)
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uid)
            .values(
                host=HOST, node=HOST, vm_state="active", power_state="running", vnc_port=vnc_port
            )
        )


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"the local port closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def view(port: int) -> dict[str, Any]:
    """A plain RFB 3.8 client on the plugin's local port: security None, ClientInit, ServerInit,
    then one FramebufferUpdateRequest for the whole screen and the answer's header."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        seen: dict[str, Any] = {"version": recv_exact(sock, 12)}
        sock.sendall(b"RFB 003.008\n")
        (count,) = recv_exact(sock, 1)
        seen["security_types"] = list(recv_exact(sock, count))
        sock.sendall(b"\x01")
        (seen["security_result"],) = struct.unpack("!I", recv_exact(sock, 4))
        sock.sendall(b"\x01")  # ClientInit: shared
        width, height = struct.unpack("!HH", recv_exact(sock, 4))
        recv_exact(sock, 16)  # pixel format
        (name_length,) = struct.unpack("!I", recv_exact(sock, 4))
        seen["name"] = recv_exact(sock, name_length).decode()
        seen["size"] = (width, height)
        sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        message_type, _, rectangles = struct.unpack("!BBH", recv_exact(sock, 4))
        seen["update"] = (message_type, rectangles)
        return seen


def port_of(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("listening on 127.0.0.1:"):
            return int(line.split(":")[1].split()[0])
    raise AssertionError(f"the plugin printed no port: {out!r}")


def test_a_plain_rfb_client_on_the_local_port_sees_the_guests_screen(
    served: None,
    console_db: db_engine.SessionFactory,
    x509: X509,
    vnc_namespace: str,
    tmp_path: pathlib.Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = kubeconfig_of("viewer", vnc_namespace, tmp_path)
    seen: dict[str, Any] = {}
    failures: list[BaseException] = []

    def client() -> None:
        try:
            deadline = time.monotonic() + 60
            while not (out := capfd.readouterr().out) or "listening on" not in out:
                if time.monotonic() > deadline:
                    raise TimeoutError("the plugin did not listen within 60s")
                time.sleep(0.2)
            seen.update(view(port_of(out)))
        except BaseException as failed:  # reported by the test's thread
            failures.append(failed)
        finally:
            _thread.interrupt_main()

    with qemu_with_tls_vnc(x509.host_dir, tmp_path / "qemu.log") as vnc_port:
        record_running(console_db, vnc_namespace, "vnc-1", vnc_port)
        threading.Thread(target=client, daemon=True).start()
        code = kubectl_nova.main(
            ["--kubeconfig", str(config), "vnc", "vnc-1", "--proxy-only", "--port", "0"]
        )

    assert failures == []
    assert code == 0
    assert seen["version"] == b"RFB 003.008\n"
    assert seen["security_types"] == [1]
    assert seen["security_result"] == 0
    width, height = seen["size"]
    assert width > 0
    assert height > 0
    assert seen["update"][0] == 0  # FramebufferUpdate
    assert seen["update"][1] >= 1


def test_a_service_account_without_get_on_instances_vnc_is_refused(
    served: None,
    console_db: db_engine.SessionFactory,
    vnc_namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record_running(console_db, vnc_namespace, "vnc-1", QEMU_VNC_PORT)
    config = kubeconfig_of("stranger", vnc_namespace, tmp_path)

    code = kubectl_nova.main(
        ["--kubeconfig", str(config), "vnc", "vnc-1", "--proxy-only", "--port", "0"]
    )

    _, err = capsys.readouterr()
    assert code == 1
    assert "Error from server (Forbidden)" in err
    assert f'cannot get resource "instances/vnc" in API group "{GROUP}"' in err


def test_an_unknown_instance_is_not_found_through_the_kube_apiserver(
    served: None, vnc_namespace: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = kubectl_nova.main(
        [
            "--kubeconfig",
            str(KUBECONFIG),
            "-n",
            vnc_namespace,
            "vnc",
            "nope",
            "--proxy-only",
        ]
    )

    assert code == 1
    assert (
        'Error from server (NotFound): instances.compute.kubenova.io "nope" not found'
        in capsys.readouterr().err
    )
