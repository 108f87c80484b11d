"""Leader election and probe settings, read from the environment like ``kubenova.config``."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket

from kubenova import config

DEFAULT_LEASE_NAME = "kubenova-operator"
DEFAULT_HEALTH_PORT = 8081
# Where a pod's service account says which namespace the pod runs in.
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str, default: bool = False) -> bool:
    """``true``/``1``/``yes``/``on`` or their opposites; anything else is refused by name."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name} must be true or false, got {raw!r}")


def pod_namespace(path: pathlib.Path = SERVICE_ACCOUNT_NAMESPACE) -> str | None:
    """The namespace of the pod this process runs in, or None outside a pod."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def default_identity() -> str:
    """The pod's name where the Deployment passes it, else this host and process.

    A restarted container keeps its pod's name: it finds the Lease in its own name and takes
    it back at once, which is safe because the process that held it has exited.
    """
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class LeaderElectionSettings:
    """client-go's defaults: a Lease lasts 15 s, its holder gives up after 10 s without a
    renewal, and every candidate tries again every 2 s.

    The holder gives up well before anyone may take the Lease (duration > renew deadline),
    so two processes never both lead; the gap is what covers a slow exit and clock rates.
    """

    lease_name: str = DEFAULT_LEASE_NAME
    namespace: str = "default"
    identity: str = dataclasses.field(default_factory=default_identity)
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration_s > self.renew_deadline_s > self.retry_period_s > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_duration_s}, {self.renew_deadline_s}, {self.retry_period_s}"
            )
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")

    @classmethod
    def from_env(
        cls,
        lease_name: str | None = None,
        *,
        namespace_file: pathlib.Path = SERVICE_ACCOUNT_NAMESPACE,
    ) -> LeaderElectionSettings:
        return cls(
            lease_name=lease_name
            or os.environ.get("KUBENOVA_LEADER_ELECT_LEASE")
            or DEFAULT_LEASE_NAME,
            namespace=os.environ.get("KUBENOVA_LEADER_ELECT_NAMESPACE")
            or pod_namespace(namespace_file)
            or "default",
            identity=default_identity(),
            lease_duration_s=config.env_positive("KUBENOVA_LEADER_ELECT_LEASE_DURATION", 15, int),
            renew_deadline_s=config.env_positive(
                "KUBENOVA_LEADER_ELECT_RENEW_DEADLINE", 10.0, float
            ),
            retry_period_s=config.env_positive("KUBENOVA_LEADER_ELECT_RETRY_PERIOD", 2.0, float),
        )


@dataclasses.dataclass(frozen=True)
class HealthSettings:
    """Where ``/healthz`` and ``/readyz`` are served; port 0 serves nothing.

    On every address by default: the kubelet probes the pod's IP, and the answers carry no
    secret (a role and a few ages).
    """

    port: int = 0
    addr: str = "0.0.0.0"

    @classmethod
    def from_env(cls, default_port: int) -> HealthSettings:
        port = config.env_int("KUBENOVA_HEALTH_PORT", default_port)
        if not 0 <= port <= 65535:
            raise ValueError(f"environment variable KUBENOVA_HEALTH_PORT is not a port: {port}")
        return cls(port=port, addr=os.environ.get("KUBENOVA_HEALTH_ADDR", "0.0.0.0"))
