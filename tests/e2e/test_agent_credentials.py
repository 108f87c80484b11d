"""The agent-credentials exchange against the real kube-apiserver and the local RabbitMQ.

The exchange runs in this process on loopback, as the active operator runs it (CA in the
namespace's Secret and ConfigMap ``kubenova-ca``, TokenReview, Node reads, the janitor's
watch), and the agent's own client (``kubenova_agent.credentials``) asks it. Tokens are minted
with the TokenRequest API exactly as the kubelet mints a projected one: bound to a Pod (the
apiserver adds the node the pod is bound to) or to a Node, audience ``kubenova-operator``.

Nodes here are Node objects no kubelet stands behind, tainted and unschedulable so nothing
is placed on them, and chosen by a label of this run's own: the cluster's real nodes and the
chart's DaemonSet never see them. A pod is bound to one by ``spec.nodeName``; it never runs,
and need not: the apiserver checks only that it exists.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import uuid
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.agent_credentials import minter, service, settings
from kubenova.agent_credentials.rabbitmq_admin import ManagementClient
from kubenova_agent import credentials
from tests import localstack
from tests.e2e.conftest import api_configuration, kubectl, wait_for

pytestmark = pytest.mark.e2e

AUDIENCE = "kubenova-operator"
AMQP_URL = localstack.amqp_url()
MANAGEMENT_URL = os.environ.get("KUBENOVA_AMQP_MANAGEMENT_URL") or settings.management_url_for(
    AMQP_URL
)
# The shortest lifetime the TokenRequest API grants.
TOKEN_SECONDS = 600


@dataclasses.dataclass
class Cluster:
    api: k8s_client.ApiClient
    core: k8s_client.CoreV1Api
    namespace: str
    label: str
    node_a: str
    node_b: str
    pod_on_a: k8s_client.V1Pod
    url: str
    ca_file: str
    exchange: service.AgentCredentials
    # What the exchange talks to the apiserver with: the operator's ServiceAccount.
    operator_api: k8s_client.ApiClient

    def token(
        self,
        kind: str | None,
        name: str = "",
        *,
        service_account: str = "kubenova-agent",
        audience: str = AUDIENCE,
    ) -> str:
        """A token of ``service_account`` bound to the Pod or Node ``name`` (or to nothing)."""
        bound = None
        if kind == "Pod":
            bound = k8s_client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=name, uid=self.pod_on_a.metadata.uid
            )
        elif kind == "Node":
            node = self.core.read_node(name)
            bound = k8s_client.V1BoundObjectReference(
                kind="Node", api_version="v1", name=name, uid=node.metadata.uid
            )
        request = k8s_client.AuthenticationV1TokenRequest(
            spec=k8s_client.V1TokenRequestSpec(
                audiences=[audience], bound_object_ref=bound, expiration_seconds=TOKEN_SECONDS
            )
        )
        answer = self.core.create_namespaced_service_account_token(
            service_account, self.namespace, request
        )
        token: str = answer.status.token
        return token

    def fetch(self, token: str, tmp_path: pathlib.Path) -> credentials.AgentCredentials:
        token_file = tmp_path / f"token-{uuid.uuid4().hex[:6]}"
        token_file.write_text(token)
        return credentials.fetch(
            self.url, ca_file=self.ca_file, token_file=str(token_file), deadline_s=5
        )

    def secret_names(self) -> set[str]:
        secrets = self.core.list_namespaced_secret(self.namespace, label_selector=minter.SELECTOR)
        return {item.metadata.name for item in secrets.items}


def _fake_node(name: str, label: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubenova.io/e2e-credentials": label}},
        "spec": {
            "unschedulable": True,
            "taints": [{"key": "kubenova.io/e2e-credentials", "effect": "NoSchedule"}],
        },
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    configuration = api_configuration()
    api = k8s_client.ApiClient(configuration)
    core = k8s_client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    namespace, node_a, node_b = f"e2e-creds-{run}", f"e2e-creds-{run}-a", f"e2e-creds-{run}-b"
    core.create_namespace({"metadata": {"name": namespace}})
    admin = ManagementClient(MANAGEMENT_URL)
    exchange = None
    operator_api: k8s_client.ApiClient | None = None
    try:
        for name in ("kubenova-agent", "kubenova-operator"):
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        for node in (node_a, node_b):
            core.create_node(_fake_node(node, run))
        pod = core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "kubenova-agent-x7k2q"},
                "spec": {
                    "serviceAccountName": "kubenova-agent",
                    "automountServiceAccountToken": False,
                    "nodeName": node_a,
                    # The node never reports Ready; its NoExecute taints must not evict the pod
                    # (which would revoke its tokens) while the tests run.
                    "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                    "containers": [{"name": "agent", "image": "kubenova.invalid/agent:none"}],
                },
            },
        )
        _grant_operator_rbac(api, namespace, run)
        # The exchange acts as the operator's ServiceAccount with the rules of
        # docs/architecture.md only, so a verb missing there fails here.
        operator_api = k8s_client.ApiClient(configuration)
        operator_api.set_default_header(
            "Impersonate-User", f"system:serviceaccount:{namespace}:kubenova-operator"
        )
        exchange = service.start(
            settings.ExchangeSettings(
                port=0,
                addr="127.0.0.1",
                namespace=namespace,
                extra_dns_names=("localhost",),
                agent_namespace=namespace,
                node_selector=f"kubenova.io/e2e-credentials={run}",
                management_url=MANAGEMENT_URL,
                broker_url=settings.without_credentials(AMQP_URL),
            ),
            operator_api,
        )
        ca_file = tmp_path_factory.mktemp("ca") / "ca.crt"
        published = core.read_namespaced_config_map("kubenova-ca", namespace)
        ca_file.write_text(published.data["ca.crt"])
        yield Cluster(
            api,
            core,
            namespace,
            run,
            node_a,
            node_b,
            pod,
            f"https://localhost:{exchange.port}/agent-credentials",
            str(ca_file),
            exchange,
            operator_api,
        )
    finally:
        if exchange is not None:
            exchange.stop()
        # Their pooled connections would otherwise be found open by the garbage collector
        # during some later test, which fails on the ResourceWarning.
        if operator_api is not None:
            operator_api.close()
        api.close()
        for node in (node_a, node_b):
            kubectl("delete", "node", node, "--wait=false", check=False)
            admin.delete_user(f"agent-{node}")
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl("delete", "clusterrolebinding,clusterrole", f"e2e-creds-{run}", check=False)


def _grant_operator_rbac(api: k8s_client.ApiClient, namespace: str, run: str) -> None:
    """The operator's rules for this exchange (docs/architecture.md), and nothing more."""
    rbac = k8s_client.RbacAuthorizationV1Api(api)
    subject = {"kind": "ServiceAccount", "name": "kubenova-operator", "namespace": namespace}
    rbac.create_cluster_role(
        {
            "metadata": {"name": f"e2e-creds-{run}"},
            "rules": [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"e2e-creds-{run}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"e2e-creds-{run}",
            },
            "subjects": [subject],
        }
    )
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "kubenova-operator"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["get", "list", "create", "update", "delete"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "create", "update"],
                },
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "kubenova-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kubenova-operator",
            },
            "subjects": [subject],
        },
    )


def can_log_in(url: str) -> bool:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.ProbableAuthenticationError:
        return False
    return True


def test_the_exchange_acts_with_the_operators_rules_only(cluster: Cluster) -> None:
    pods = k8s_client.CoreV1Api(cluster.operator_api)
    with pytest.raises(k8s_exceptions.ApiException) as info:
        pods.list_namespaced_pod(cluster.namespace)
    assert info.value.status == 403


def test_the_ca_is_kept_in_a_secret_and_published_in_a_configmap(cluster: Cluster) -> None:
    secret = cluster.core.read_namespaced_secret("kubenova-ca", cluster.namespace)
    assert secret.type == "kubernetes.io/tls"
    assert set(secret.data) == {"tls.crt", "tls.key"}
    published = cluster.core.read_namespaced_config_map("kubenova-ca", cluster.namespace)
    assert set(published.data) == {"ca.crt"}


def test_a_pod_bound_token_gets_the_url_of_the_node_the_pod_is_on(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    issued = cluster.fetch(cluster.token("Pod", "kubenova-agent-x7k2q"), tmp_path)
    assert (issued.node, issued.user) == (cluster.node_a, f"agent-{cluster.node_a}")
    assert can_log_in(issued.amqp_url)
    secret = cluster.core.read_namespaced_secret(
        f"kubenova-agent-{cluster.node_a}", cluster.namespace
    )
    assert secret.metadata.labels["kubenova.io/node"] == cluster.node_a


def test_a_node_bound_token_gets_that_nodes_url_and_never_another(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    issued_b = cluster.fetch(cluster.token("Node", cluster.node_b), tmp_path)
    issued_a = cluster.fetch(cluster.token("Pod", "kubenova-agent-x7k2q"), tmp_path)
    assert issued_b.node == cluster.node_b
    assert issued_b.amqp_url != issued_a.amqp_url
    assert can_log_in(issued_b.amqp_url)


def test_asking_again_gets_the_same_password(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    first = cluster.fetch(cluster.token("Pod", "kubenova-agent-x7k2q"), tmp_path)
    again = cluster.fetch(cluster.token("Pod", "kubenova-agent-x7k2q"), tmp_path)
    assert again.amqp_url == first.amqp_url


def test_a_token_for_another_audience_is_refused(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    token = cluster.token("Pod", "kubenova-agent-x7k2q", audience="https://kubernetes.default.svc")
    with pytest.raises(credentials.CredentialsRefused) as info:
        cluster.fetch(token, tmp_path)
    assert info.value.status == 401
    assert info.value.reason.startswith("token not accepted")


def test_another_service_accounts_token_bound_to_the_node_is_refused(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    token = cluster.token("Node", cluster.node_a, service_account="kubenova-operator")
    with pytest.raises(credentials.CredentialsRefused) as info:
        cluster.fetch(token, tmp_path)
    assert info.value.status == 403
    assert f"system:serviceaccount:{cluster.namespace}:kubenova-operator" in info.value.reason


def test_an_agent_token_bound_to_nothing_is_refused(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(credentials.CredentialsRefused) as info:
        cluster.fetch(cluster.token(None), tmp_path)
    assert info.value.status == 403
    assert info.value.reason.startswith("token names no node")


def test_a_node_that_is_no_hypervisor_gets_nothing(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    node = f"e2e-creds-{cluster.label}-plain"
    body = _fake_node(node, "someone-else")
    cluster.core.create_node(body)
    try:
        with pytest.raises(credentials.CredentialsRefused) as info:
            cluster.fetch(cluster.token("Node", node), tmp_path)
    finally:
        cluster.core.delete_node(node)
    assert info.value.status == 403
    assert "is not a hypervisor" in info.value.reason


def test_a_node_that_loses_its_label_or_is_deleted_loses_its_user(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    issued_a = cluster.fetch(cluster.token("Pod", "kubenova-agent-x7k2q"), tmp_path)
    issued_b = cluster.fetch(cluster.token("Node", cluster.node_b), tmp_path)
    cluster.core.patch_node(
        cluster.node_b, {"metadata": {"labels": {"kubenova.io/e2e-credentials": None}}}
    )
    wait_for(
        f"node {cluster.node_b}'s user to be revoked",
        lambda: f"kubenova-agent-{cluster.node_b}" not in cluster.secret_names(),
        timeout=30,
    )
    assert not can_log_in(issued_b.amqp_url)
    assert can_log_in(issued_a.amqp_url)

    cluster.core.delete_node(cluster.node_a)
    wait_for(
        f"node {cluster.node_a}'s user to be revoked",
        lambda: not cluster.secret_names(),
        timeout=30,
    )
    assert not can_log_in(issued_a.amqp_url)
