"""Settings of the agent-credentials exchange, read from the environment.

Off unless ``KUBENOVA_AGENT_CREDENTIALS_PORT`` names a port: an operator on a workstation (the
local stack, the tests) neither opens a port nor makes Secrets. In a cluster the chart sets it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse

from kubenova import config

DEFAULT_AUDIENCE = "kubenova-operator"
DEFAULT_NODE_SELECTOR = "kubenova.io/hypervisor=true"
DEFAULT_SERVICE = "kubenova-operator"
DEFAULT_AGENT_SERVICE_ACCOUNT = "kubenova-agent"
# A leaf lives 90 days at most (kubenova.certs.authority.MAX_LEAF_VALIDITY).
MAX_HOST_CERTIFICATE_HOURS = 2160
# The management plugin's conventional ports: plain HTTP, and HTTPS next to amqps.
_MANAGEMENT_PORTS = {"amqp": ("http", 15672), "amqps": ("https", 15671)}
# Where a pod's service account says which namespace the pod runs in.
_POD_NAMESPACE_FILE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclasses.dataclass(frozen=True)
class ExchangeSettings:
    # 0: the exchange is off.
    port: int = 0
    addr: str = "0.0.0.0"
    # Where the operator keeps the CA, the agents' Secrets, and runs (its pod's namespace).
    namespace: str = "default"
    # The operator's Service, whose names the serving certificate carries, and any other
    # names it should carry.
    service: str = DEFAULT_SERVICE
    extra_dns_names: tuple[str, ...] = ()
    audience: str = DEFAULT_AUDIENCE
    # The only identity whose tokens are exchanged: system:serviceaccount:<ns>:<name>.
    agent_namespace: str = "default"
    agent_service_account: str = DEFAULT_AGENT_SERVICE_ACCOUNT
    # The nodes that are hypervisors (the agent DaemonSet's nodeSelector says the same).
    node_selector: str = DEFAULT_NODE_SELECTOR
    # RabbitMQ's management API, with the credentials of a user tagged administrator.
    management_url: str = "http://127.0.0.1:15672/"
    management_ca_file: str | None = None
    # The broker as agents reach it, without credentials; each agent's URL is this one with
    # its own user and password.
    broker_url: str = "amqp://127.0.0.1:5672/kubenova"
    # Lifetime of the hosts' console certificates (``POST /host-certificate``), in hours: as
    # short as the other certificates the operator keeps (the chart's
    # certificates.lifetimeHours), at most 90 days.
    host_certificate_hours: int = 720

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @property
    def agent_username(self) -> str:
        return f"system:serviceaccount:{self.agent_namespace}:{self.agent_service_account}"

    @property
    def dns_names(self) -> tuple[str, ...]:
        base = f"{self.service}.{self.namespace}.svc"
        return (base, f"{base}.cluster.local", *self.extra_dns_names)

    @classmethod
    def from_env(cls) -> ExchangeSettings:
        port = config.env_int("KUBENOVA_AGENT_CREDENTIALS_PORT", 0)
        if not 0 <= port <= 65535:
            raise ValueError(f"KUBENOVA_AGENT_CREDENTIALS_PORT is not a port: {port}")
        namespace = os.environ.get("POD_NAMESPACE") or _pod_namespace() or "default"
        amqp_url = os.environ.get("KUBENOVA_AMQP_URL", config.DEFAULT_AMQP_URL)
        agent_sa = os.environ.get("KUBENOVA_AGENT_SERVICE_ACCOUNT", DEFAULT_AGENT_SERVICE_ACCOUNT)
        agent_namespace, _, agent_name = agent_sa.rpartition(":")
        host_certificate_hours = config.env_int("KUBENOVA_HOST_CERTIFICATE_LIFETIME_HOURS", 720)
        if not 1 <= host_certificate_hours <= MAX_HOST_CERTIFICATE_HOURS:
            raise ValueError(
                "KUBENOVA_HOST_CERTIFICATE_LIFETIME_HOURS must be 1 to "
                f"{MAX_HOST_CERTIFICATE_HOURS} hours, got {host_certificate_hours}"
            )
        return cls(
            port=port,
            addr=os.environ.get("KUBENOVA_AGENT_CREDENTIALS_ADDR", "0.0.0.0"),
            namespace=namespace,
            service=os.environ.get("KUBENOVA_AGENT_CREDENTIALS_SERVICE", DEFAULT_SERVICE),
            extra_dns_names=tuple(
                name.strip()
                for name in os.environ.get("KUBENOVA_AGENT_CREDENTIALS_DNS_NAMES", "").split(",")
                if name.strip()
            ),
            audience=os.environ.get("KUBENOVA_AGENT_TOKEN_AUDIENCE", DEFAULT_AUDIENCE),
            agent_namespace=agent_namespace or namespace,
            agent_service_account=agent_name,
            node_selector=os.environ.get("KUBENOVA_HYPERVISOR_NODE_SELECTOR")
            or DEFAULT_NODE_SELECTOR,
            management_url=os.environ.get("KUBENOVA_AMQP_MANAGEMENT_URL")
            or management_url_for(amqp_url),
            management_ca_file=os.environ.get("KUBENOVA_AMQP_MANAGEMENT_CA") or None,
            broker_url=os.environ.get("KUBENOVA_AGENT_BROKER_URL") or without_credentials(amqp_url),
            host_certificate_hours=host_certificate_hours,
        )


def management_url_for(amqp_url: str) -> str:
    """The management API beside an AMQP URL's broker, with the same user and password."""
    parsed = urllib.parse.urlsplit(amqp_url)
    scheme, port = _MANAGEMENT_PORTS.get(parsed.scheme, ("http", 15672))
    userinfo, _, _ = parsed.netloc.rpartition("@")
    host = parsed.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urllib.parse.urlunsplit((scheme, netloc, "/", "", ""))


def without_credentials(amqp_url: str) -> str:
    parsed = urllib.parse.urlsplit(amqp_url)
    netloc = parsed.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))


def _pod_namespace() -> str | None:
    try:
        return _POD_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None
