"""The entry point: every replica serves the exchange; the one running kopf also runs the janitor.

``AgentCredentials.from_env()`` returns None when ``KUBENOVA_AGENT_CREDENTIALS_PORT`` is unset
or 0. Otherwise it wires the exchange without touching the network; then

* :meth:`AgentCredentials.serve_in_background` makes sure of the CA (Secret and ConfigMap
  ``kubenova-ca``; when cert-manager issues, it asks cert-manager for the serving certificate
  instead, and hosts' certificates are signed through it too) and serves
  ``POST /agent-credentials`` and ``POST /host-certificate`` on that port, from a thread that
  tries again (1 s ... 30 s) until it listens: the apiserver may be away, or the port still held by
  the process this one replaces. :meth:`AgentCredentials.problem` says why it does not listen
  yet, for ``/readyz``.
* :meth:`AgentCredentials.start_janitor` starts the janitor that revokes the identity of nodes
  that are no hypervisors any more.

It needs the Kubernetes client configured first (``kubenova.k8s.client.load_config``); it does
not need RabbitMQ to be up (a request that comes while it is away is answered 503, and the agent
asks again).

Every replica serves, the leader and a standby alike, as HA operators serve webhooks: nothing
in a request's answer depends on this process's state (the TokenReview and the Node are asked
live each time, the password is in the Secret), and the Service sends an agent to any ready
replica. Minting for one node from two replicas at once converges (``minter``). The janitor
runs only where kopf runs (the leader, or an operator without leader election): it watches the
Nodes and one watcher is enough, and it sweeps at its start what happened while none watched.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Sequence

from kubernetes import client as k8s_client

from kubenova.agent_credentials import (
    cert_manager_signer,
    exchange,
    host_certificates,
    janitor,
    minter,
    rabbitmq_admin,
    server,
)
from kubenova.agent_credentials.settings import ExchangeSettings
from kubenova.certs import cert_manager, issuer_settings
from kubenova.certs import store as ca_store
from kubenova.k8s import nodes, objects, tokenreview

LOG = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# The key of the process's exchange in kopf's memo, where the startup handler that starts the
# janitor finds it.
MEMO_KEY = "agent_credentials"
# How long stop() waits for a start under way (it may be stuck in a request to the apiserver;
# the thread is a daemon, so a process that exits does not wait for it).
_STOP_WAIT_S = 5.0


class AgentCredentials:
    """The exchange of one process: its server, and its janitor where kopf runs. The server
    and the janitor share one :class:`~kubenova.agent_credentials.minter.Minter`, so in this
    process a request and a revocation for one node never run at once."""

    def __init__(
        self,
        settings: ExchangeSettings,
        *,
        store: objects.Store,
        admin: minter.Admin,
        reviewer: exchange.Reviewer,
        nodes: exchange.Nodes,
        node_addresses: host_certificates.NodeAddresses,
        watched_nodes: janitor.Nodes,
        backoff_s: Sequence[float] = BACKOFF_S,
        issuing: issuer_settings.IssuerSettings = issuer_settings.OPERATOR_ISSUES,
        certificate_requests: cert_manager.CertificateRequests | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self.minter = minter.Minter(store, admin, settings.broker_url)
        host_validity = datetime.timedelta(hours=settings.host_certificate_hours)
        signer: host_certificates.HostSigner
        self._issue_serving: cert_manager_signer.IssuePair | None = None
        if issuing.cert_manager:
            if issuing.issuer_ref is None or certificate_requests is None:
                raise ValueError("cert-manager issues, but no issuer or CertificateRequests")
            requester = cert_manager.CertificateRequester(certificate_requests, issuing.issuer_ref)
            signer = cert_manager_signer.CertManagerHostCertificates(
                requester,
                node_addresses,
                cert_manager_signer.trust_bundle_of_secrets(store, issuing.trust_secrets),
                validity=host_validity,
            )
            self._issue_serving = cert_manager_signer.serving_pair_issuer(requester)
        else:
            # The trust state is read at each request: a rotation made by the certificate
            # pass (another replica, maybe) signs the next host certificate.
            signer = host_certificates.HostCertificates(
                lambda: ca_store.ensure_trust(store), node_addresses, validity=host_validity
            )
        self.exchange = exchange.Exchange(
            reviewer,
            nodes,
            self.minter,
            audience=settings.audience,
            agent_username=settings.agent_username,
            node_selector=settings.node_selector,
            host_certificates=signer,
        )
        self._watched_nodes = watched_nodes
        self._backoff_s = tuple(backoff_s)
        # Set while the server listens.
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: server.CredentialsServer | None = None
        self._starter: threading.Thread | None = None
        self._why_not = "the agent credentials exchange is not listening yet"
        self.janitor: janitor.Janitor | None = None

    @classmethod
    def from_settings(
        cls, settings: ExchangeSettings, api_client: k8s_client.ApiClient | None = None
    ) -> AgentCredentials:
        api_client = api_client or k8s_client.ApiClient()
        admin = rabbitmq_admin.ManagementClient(
            settings.management_url, ca_file=settings.management_ca_file
        )
        LOG.info(
            "agent credentials: tokens of %s for audience %s, nodes selected by %s, users on %s",
            settings.agent_username,
            settings.audience,
            settings.node_selector,
            admin.base,
        )
        issuing = issuer_settings.IssuerSettings.from_env()
        return cls(
            settings,
            store=objects.NamespacedObjects(settings.namespace, api_client),
            admin=admin,
            reviewer=tokenreview.KubeTokenReviewer(api_client),
            nodes=nodes.KubeNodes(api_client),
            node_addresses=nodes.KubeNodes(api_client),
            # Its own KubeNodes: the janitor's watch is the only state that one keeps.
            watched_nodes=nodes.KubeNodes(api_client),
            issuing=issuing,
            certificate_requests=(
                cert_manager.KubeCertificateRequests(settings.namespace, api_client)
                if issuing.cert_manager
                else None
            ),
        )

    @classmethod
    def from_env(cls, api_client: k8s_client.ApiClient | None = None) -> AgentCredentials | None:
        """The exchange as the environment says; None when it is off."""
        settings = ExchangeSettings.from_env()
        if not settings.enabled:
            return None
        return cls.from_settings(settings, api_client)

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one given for port 0); 0 while
        it does not listen."""
        listening = self._server
        return listening.port if listening is not None else 0

    def listen(self) -> None:
        """Make sure of the CA (or of a certificate from cert-manager) and serve now; raises
        what stops it."""
        if self._issue_serving is not None:
            certificate = server.ServingCertificate(self._issue_serving, self.settings.dns_names)
            certificate.context()  # cert-manager signs now, or this start is tried again
        else:
            ca = ca_store.ensure_ca(self._store)
            certificate = server.ServingCertificate(ca, self.settings.dns_names)
        started = server.serve(self.exchange, certificate, self.settings.addr, self.settings.port)
        with self._lock:
            if not self._stop.is_set():
                self._server = started
                self.listening.set()
                return
        started.stop()  # stop() came while it was starting, and found no server to stop

    def serve_in_background(self) -> None:
        """:meth:`listen` from a daemon thread, again after each failure, until it listens
        or :meth:`stop`."""
        self._starter = threading.Thread(
            target=self._listen_until_up, name="agent-credentials-start", daemon=True
        )
        self._starter.start()

    def problem(self) -> str | None:
        """None while it listens, else why not (for ``/readyz``)."""
        return None if self.listening.is_set() else self._why_not

    def start_janitor(self) -> janitor.Janitor:
        with self._lock:
            if self.janitor is None:
                self.janitor = janitor.Janitor(
                    self._watched_nodes, self.minter, self.settings.node_selector
                )
                self.janitor.start()
            return self.janitor

    def stop_janitor(self) -> None:
        with self._lock:
            sweeper, self.janitor = self.janitor, None
        if sweeper is not None:
            sweeper.stop()

    def stop(self) -> None:
        """Stop the janitor and the server (for good)."""
        self._stop.set()
        self.stop_janitor()
        if self._starter is not None:
            self._starter.join(_STOP_WAIT_S)
        with self._lock:
            self.listening.clear()
            running, self._server = self._server, None
        if running is not None:
            running.stop()
            LOG.info("stopped serving agent credentials")

    def _listen_until_up(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.listen()
                return
            except Exception as exc:
                delay = self._backoff_s[min(failures, len(self._backoff_s) - 1)]
                self._why_not = f"the agent credentials exchange does not listen: {exc}"
                LOG.warning("%s; trying again in %.0f s", self._why_not, delay)
                failures += 1
                self._stop.wait(delay)


def start(
    settings: ExchangeSettings, api_client: k8s_client.ApiClient | None = None
) -> AgentCredentials:
    """Serve at once (raising what stops it) and start the janitor: the whole exchange in one
    process, as the e2e test runs it."""
    credentials = AgentCredentials.from_settings(settings, api_client)
    credentials.listen()
    credentials.start_janitor()
    return credentials
