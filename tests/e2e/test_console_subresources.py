"""Who may open a console is decided by RBAC in the real kube-apiserver.

``kubenova-subresources`` runs here as a host process behind an APIService, as the local
stack's kube-apiserver (``--enable-aggregator-routing``) reaches it: a selectorless Service
whose EndpointSlice carries this machine's address. The APIService trusts a CA made for the
test. A ServiceAccount whose Role grants ``create`` on ``instances/consoleurl`` gets a URL
whose token the console proxy's check accepts; one without that Role is refused by the
kube-apiserver itself (403), before anything reaches this server.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any
from urllib import parse

import pytest
import sqlalchemy as sa
from kubernetes import client as k8s_client

from kubenova.cli import kubectl_nova
from kubenova.console import auth
from kubenova.db import engine as db_engine
from kubenova.db import migration, models
from kubenova.k8s import client as kube
from kubenova.subresources import app, cmd, consoleurl, requestheader, server
from tests import localstack
from tests.e2e.conftest import (
    HOST,
    KUBECONFIG,
    ROOT,
    api_configuration,
    apply,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)
from tests.e2e.console_browser_support import registered_apiservice
from tests.integration.db.helpers import make_instance
from tests.support.subresources_tls import write_subresources_tls

pytestmark = pytest.mark.e2e

GROUP = "subresources.compute.kubenova.io"
PORT = 16100
VNC_PORT = 5907
PROXY_URL = "https://console.kubenova.test:6080"


class RecordingUrls:
    """The real ConsoleUrls, remembering who the kube-apiserver said was asking."""

    def __init__(self, inner: consoleurl.ConsoleUrls) -> None:
        self.inner = inner
        self.users: list[requestheader.User] = []

    def create(
        self, namespace: str, name: str, type_: str | None, user: requestheader.User
    ) -> dict[str, Any]:
        self.users.append(user)
        return self.inner.create(namespace, name, type_, user)


@pytest.fixture(scope="module")
def console_db() -> Iterator[db_engine.SessionFactory]:
    """A throwaway database at the head revision, for this module's records and tokens."""
    url = sa.make_url(localstack.db_url())
    name = f"nova_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(url.set(database=None), poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = None
    try:
        own = url.set(database=name).render_as_string(hide_password=False)
        migration.db_sync(own)
        engine = db_engine.create_engine(own)
        yield db_engine.make_session_factory(engine)
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(scope="module")
def served(
    console_db: db_engine.SessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecordingUrls]:
    """The server on this machine, registered as the APIService and Available."""
    if kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack's kube-apiserver is not up: run hack/kube/up.sh")
    # The Instance CRD, as hack/test.sh applies it before the end-to-end tests.
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "crds/compute.kubenova.io_instances.yaml"),
    )
    kubectl("wait", "--for=condition=Established", "crd/instances.compute.kubenova.io")
    tls = write_subresources_tls(tmp_path_factory.mktemp("subresources-tls"), "kn-subresources")

    api_client = k8s_client.ApiClient(api_configuration())
    request_headers = cmd.read_request_header_config(api_client)
    urls = RecordingUrls(
        consoleurl.ConsoleUrls(kube.KubeClient(api_client), console_db, PROXY_URL, 600)
    )
    running = server.serve(
        app.App(request_headers, urls), tls.context(request_headers.client_ca_pem), "0.0.0.0", PORT
    )
    try:
        with registered_apiservice(tls.system, PORT, tls.ca.cert_pem()):
            yield urls
    finally:
        running.stop()


@pytest.fixture
def console_namespace() -> Iterator[str]:
    """A namespace with an Instance ``web-1`` and three ServiceAccounts: ``console-user`` may
    create ``instances/consoleurl`` (a Role of its own), ``editor`` may edit the namespace
    (the built-in ``edit``), ``stranger`` may do nothing."""
    name = f"e2e-console-{uuidlib.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    apply(
        [
            instance_manifest("web-1", name, "m1.tiny"),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "console-user", "namespace": name},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "stranger", "namespace": name},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "editor", "namespace": name},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "editor", "namespace": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": name}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "console-user", "namespace": name},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "resources": ["instances/consoleurl"],
                        "verbs": ["create"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "console-user", "namespace": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "console-user",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "console-user", "namespace": name}],
            },
        ]
    )
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def record_running(session_factory: db_engine.SessionFactory, namespace: str, name: str) -> str:
    """Record the Instance as running on this host with a VNC port; returns its uuid."""
    uid = str(get("instance", name, namespace)["metadata"]["uid"])  # type: ignore[index]
    make_instance(session_factory, uid, name=name, namespace=namespace)
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uid)
            .values(
                host=HOST, node=HOST, vm_state="active", power_state="running", vnc_port=VNC_PORT
            )
        )
    return uid


def consoleurl_as(user: str, namespace: str, name: str, type_: str = "novnc") -> Any:
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/instances/{name}/consoleurl?type={type_}"
    return kubectl("create", "--raw", path, "-f", "-", f"--as={user}", stdin="{}", check=False)


def test_a_user_whose_role_grants_consoleurl_gets_a_url_whose_token_the_proxy_accepts(
    served: RecordingUrls, console_db: db_engine.SessionFactory, console_namespace: str
) -> None:
    uid = record_running(console_db, console_namespace, "web-1")
    user = f"system:serviceaccount:{console_namespace}:console-user"

    result = consoleurl_as(user, console_namespace, "web-1")

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["kind"] == "ConsoleURL"
    url = parse.urlsplit(body["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{PROXY_URL}/vnc.html"
    query = parse.parse_qs(url.query)
    assert query["instance"] == [uid]
    expires = dt.datetime.fromisoformat(body["expires"])
    assert dt.timedelta(minutes=9) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=10)
    # The kube-apiserver told the server who asked, in the headers it alone may send.
    assert served.users[-1].name == user
    assert f"system:serviceaccounts:{console_namespace}" in served.users[-1].groups

    info = auth.authorize(console_db, query["token"][0], uid)

    assert (info.host, info.port, info.console_type) == (HOST, VNC_PORT, auth.ConsoleType.NOVNC)


def test_a_user_without_the_role_is_refused_by_the_kube_apiserver(
    served: RecordingUrls, console_db: db_engine.SessionFactory, console_namespace: str
) -> None:
    record_running(console_db, console_namespace, "web-1")
    stranger = f"system:serviceaccount:{console_namespace}:stranger"
    asked_before = len(served.users)

    result = consoleurl_as(stranger, console_namespace, "web-1")

    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert f'cannot create resource "instances/consoleurl" in API group "{GROUP}"' in result.stderr
    assert len(served.users) == asked_before


def test_refusals_reach_kubectl_as_the_servers_status(
    served: RecordingUrls, console_namespace: str
) -> None:
    user = f"system:serviceaccount:{console_namespace}:console-user"

    missing = consoleurl_as(user, console_namespace, "nope")
    unrecorded = consoleurl_as(user, console_namespace, "web-1")
    bad_type = consoleurl_as(user, console_namespace, "web-1", "rdp")

    assert "NotFound" in missing.stderr
    assert 'instances.compute.kubenova.io "nope" not found' in missing.stderr
    assert "Conflict" in unrecorded.stderr
    assert '"web-1" has no record yet' in unrecorded.stderr
    assert "BadRequest" in bad_type.stderr
    assert "unknown console type 'rdp'" in bad_type.stderr


def test_discovery_lists_the_instance_subresources(served: RecordingUrls) -> None:
    result = kubectl("get", "--raw", f"/apis/{GROUP}/v1")

    names = {r["name"] for r in json.loads(result.stdout)["resources"]}
    assert names == {
        "instances/consoleurl",
        "instances/vnc",
        "instances/console",
        "instances/consolelog",
    }


def test_the_plugin_prints_the_url_through_the_kube_apiserver(
    served: RecordingUrls,
    console_db: db_engine.SessionFactory,
    console_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uid = record_running(console_db, console_namespace, "web-1")

    code = kubectl_nova.main(
        ["--kubeconfig", str(KUBECONFIG), "-n", console_namespace, "vnc", "web-1", "--url"]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    url = parse.urlsplit(out.strip())
    assert parse.parse_qs(url.query)["instance"] == [uid]
    assert "expires at" in err


def test_whoever_may_edit_the_namespace_may_open_its_consoles(
    served: RecordingUrls, console_db: db_engine.SessionFactory, console_namespace: str
) -> None:
    record_running(console_db, console_namespace, "web-1")

    def edit_role_has_consoles() -> bool:
        rules = (get("clusterrole", "edit") or {}).get("rules") or []
        return any(GROUP in (rule.get("apiGroups") or []) for rule in rules)

    # The kube-controller-manager aggregates kubenova-console-user into edit.
    wait_for("the edit ClusterRole to aggregate the console role", edit_role_has_consoles, 60)
    editor = f"system:serviceaccount:{console_namespace}:editor"

    result = consoleurl_as(editor, console_namespace, "web-1", "novnc")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["type"] == "novnc"
