"""The entry point: the active operator replica starts the exchange and stops it.

``start_from_env()`` returns None when ``KUBENOVA_AGENT_CREDENTIALS_PORT`` is unset or 0.
Otherwise it makes sure of the CA (Secret and ConfigMap ``kubenova-ca``), serves
``POST /agent-credentials`` on that port, and starts the janitor that revokes the identity of
nodes that are no hypervisors any more. It needs the Kubernetes client configured first
(``kubenova.k8s.client.load_config``); it does not need RabbitMQ to be up (a request that
comes while it is away is answered 503, and the agent asks again).

Run it only where the operator is active: two replicas minting at once would be safe, but a
standby must not serve, or agents would get credentials from a process that stopped watching.
"""

from __future__ import annotations

import logging

from kubernetes import client as k8s_client

from kubenova.agent_credentials import exchange, janitor, minter, rabbitmq_admin, server
from kubenova.agent_credentials.settings import ExchangeSettings
from kubenova.certs import store as ca_store
from kubenova.k8s import nodes, objects, tokenreview

LOG = logging.getLogger(__name__)


class AgentCredentialsService:
    """A running exchange: its server and its janitor."""

    def __init__(self, credentials_server: server.CredentialsServer, sweeper: janitor.Janitor):
        self.server = credentials_server
        self.janitor = sweeper

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        self.server.stop()
        self.janitor.stop()
        LOG.info("stopped serving agent credentials")


def start(
    settings: ExchangeSettings, api_client: k8s_client.ApiClient | None = None
) -> AgentCredentialsService:
    api_client = api_client or k8s_client.ApiClient()
    store = objects.NamespacedObjects(settings.namespace, api_client)
    ca = ca_store.ensure_ca(store)
    admin = rabbitmq_admin.ManagementClient(
        settings.management_url, ca_file=settings.management_ca_file
    )
    issuer = minter.Minter(store, admin, settings.broker_url)
    requests = exchange.Exchange(
        tokenreview.KubeTokenReviewer(api_client),
        nodes.KubeNodes(api_client),
        issuer,
        audience=settings.audience,
        agent_username=settings.agent_username,
        node_selector=settings.node_selector,
    )
    credentials_server = server.serve(
        requests, server.ServingCertificate(ca, settings.dns_names), settings.addr, settings.port
    )
    # Its own KubeNodes: the janitor's watch is the only state that one keeps.
    sweeper = janitor.Janitor(nodes.KubeNodes(api_client), issuer, settings.node_selector)
    sweeper.start()
    LOG.info(
        "agent credentials: tokens of %s for audience %s, nodes selected by %s, users on %s",
        settings.agent_username,
        settings.audience,
        settings.node_selector,
        admin.base,
    )
    return AgentCredentialsService(credentials_server, sweeper)


def start_from_env(
    api_client: k8s_client.ApiClient | None = None,
) -> AgentCredentialsService | None:
    """Start the exchange as the environment says; None when it is off."""
    settings = ExchangeSettings.from_env()
    if not settings.enabled:
        return None
    return start(settings, api_client)
