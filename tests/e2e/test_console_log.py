"""A guest's serial console log reaches a kubectl user through the kube-apiserver, and RBAC
decides who may read it.

A real guest is booted by the agent (the ``stack`` fixture's operator and agent processes);
``kubenova-subresources`` runs here as a host process behind the APIService, as in
tests/e2e/test_console_subresources.py, with the local stack's database and message bus: it
finds the instance's host in the record the operator wrote and calls that host's agent over
RabbitMQ for the tail of the log. A ServiceAccount bound to ``kubenova-console-user`` reads
it; one without a binding is refused by the kube-apiserver itself (403).
"""

from __future__ import annotations

import os
import pathlib
import re
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from kubenova.cli import kubectl_nova
from kubenova.config import MessagingSettings
from kubenova.db import engine as db_engine
from kubenova.k8s import client as kube
from kubenova.rpc import call, compute_rpcapi
from kubenova.subresources import app, cmd, consolelog, consoleurl, manifests, server
from tests import localstack
from tests.e2e.conftest import (
    HOST,
    KUBECONFIG,
    api_configuration,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    status_of,
    wait_for,
)
from tests.e2e.console_browser_support import registered_apiservice
from tests.support.subresources_tls import write_subresources_tls

pytestmark = pytest.mark.e2e

GROUP = "subresources.compute.kubenova.io"
PORT = 16101
FLAVOR = "e2e-clog"
READY = "kubenova-guest: ready"
INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)


@pytest.fixture(scope="module")
def served(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The subresource server on this machine, on the stack's database and message bus,
    registered as the APIService and Available."""
    tls = write_subresources_tls(
        tmp_path_factory.mktemp("clog-tls"), "kn-clog", "kubenova-subresources-clog-ca"
    )
    api_client = k8s_client.ApiClient(api_configuration())
    request_headers = cmd.read_request_header_config(api_client)
    engine = db_engine.create_engine(localstack.db_url())
    sessions = db_engine.make_session_factory(engine)
    reader = kube.KubeClient(api_client)
    served_app = app.App(
        request_headers, consoleurl.ConsoleUrls(reader, sessions, "https://x", 600)
    )
    served_app.console_logs = consolelog.ConsoleLogs(
        reader,
        sessions,
        compute_rpcapi.ComputeAPI(
            caller=call.Caller(MessagingSettings.from_env(), sender="e2e-clog")
        ),
    )
    running = server.serve(served_app, tls.context(request_headers.client_ca_pem), "0.0.0.0", PORT)
    try:
        with registered_apiservice(tls.system, PORT, tls.ca.cert_pem()):
            yield
    finally:
        running.stop()
        engine.dispose()


def _console(uuid: str) -> str:
    path = INSTANCES_PATH / uuid / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def booted(stack: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A namespace with a running guest ``clog-1`` that has printed its ready line, and two
    ServiceAccounts: ``log-reader`` bound to ``kubenova-console-user``, ``stranger`` to
    nothing. Yields (namespace, uuid)."""
    namespace = f"e2e-clog-{uuidlib.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    try:
        apply(flavor_manifest(FLAVOR, 1, 128, 1))
        apply(
            [
                # On this host's libvirtd, whose files the test reads, whatever other hosts
                # earlier tests left registered.
                instance_manifest("clog-1", namespace, FLAVOR, forcedHost=HOST),
                *(
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": account, "namespace": namespace},
                    }
                    for account in ("log-reader", "stranger")
                ),
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "log-reader", "namespace": namespace},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": manifests.CONSOLE_USER_ROLE,
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "log-reader", "namespace": namespace}
                    ],
                },
            ]
        )
        wait_for(
            "clog-1 to be Running",
            lambda: status_of(namespace, "clog-1").get("phase") == "Running",
            timeout=180,
        )
        uuid = str(get("instances", "clog-1", namespace)["metadata"]["uid"])  # type: ignore[index]
        wait_for("clog-1's guest to be ready", lambda: READY in _console(uuid), timeout=120)
        yield namespace, uuid
    finally:
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=90s", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def consolelog_as(user: str, namespace: str, name: str, tail: int) -> Any:
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/instances/{name}/consolelog?tailLines={tail}"
    return kubectl("get", "--raw", path, f"--as={user}", check=False)


def _last_lines(uuid: str, count: int) -> str:
    """The last ``count`` lines of the console log on this host, read here (lines end at
    ``\\n``; a last one without it counts)."""
    data = (INSTANCES_PATH / uuid / "console.log").read_bytes()
    lines = re.findall(rb"[^\n]*\n|[^\n]+$", data)
    return b"".join(lines[-count:]).decode(errors="replace")


def test_the_plugin_prints_the_guests_last_lines(
    served: None, booted: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, uuid = booted
    connection = ["--kubeconfig", str(KUBECONFIG), "-n", namespace]

    tail_code = kubectl_nova.main([*connection, "console-log", "clog-1", "--tail", "5"])
    tail, tail_err = capsys.readouterr()
    all_code = kubectl_nova.main([*connection, "console-log", "clog-1"])
    everything, all_err = capsys.readouterr()

    assert (tail_code, all_code) == (0, 0), tail_err + all_err
    # The guest's own lines, as the hypervisor wrote them on this host.
    assert tail == _last_lines(uuid, 5)
    assert READY in everything
    assert everything.endswith(tail)


def test_a_user_bound_to_the_console_role_reads_the_log(
    served: None, booted: tuple[str, str]
) -> None:
    namespace, _ = booted

    result = consolelog_as(f"system:serviceaccount:{namespace}:log-reader", namespace, "clog-1", 20)

    assert result.returncode == 0, result.stderr
    assert READY in result.stdout


def test_a_user_without_the_rule_is_refused_by_the_kube_apiserver(
    served: None, booted: tuple[str, str]
) -> None:
    namespace, _ = booted

    result = consolelog_as(f"system:serviceaccount:{namespace}:stranger", namespace, "clog-1", 5)

    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert f'cannot get resource "instances/consolelog" in API group "{GROUP}"' in result.stderr


def test_the_plugin_reports_an_unknown_instance_with_exit_code_1(
    served: None, booted: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, _ = booted

    code = kubectl_nova.main(
        ["--kubeconfig", str(KUBECONFIG), "-n", namespace, "console-log", "nope"]
    )

    assert code == 1
    assert 'Error from server (NotFound): instances.compute.kubenova.io "nope" not found' in (
        capsys.readouterr().err
    )
