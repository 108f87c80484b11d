"""Process configuration, read from the environment.

Both the operator and the node-agent import this module; it must stay free of any
control-plane dependency (no database, no kopf) because the agent imports it.
The variable names match hack/lib/env.sh, so the local stack and the processes agree.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from typing import TypeVar

DEFAULT_AMQP_URL = "amqp://kubenova-operator:kubenova-dev@127.0.0.1:5672/kubenova"
DEFAULT_DB_URL = "mysql+pymysql://kubenova:kubenova-dev@127.0.0.1:3306/nova?charset=utf8mb4"

#: The agent's ``KUBENOVA_VIRT_TYPE`` (Nova's ``[libvirt] virt_type``): "auto" decides at start
#: whether guests can use KVM, "kvm" and "qemu" (software emulation, TCG) force the choice.
VIRT_TYPES = ("auto", "kvm", "qemu")


_Number = TypeVar("_Number", int, float)


def _env_number(name: str, default: _Number, parse: type[_Number], what: str) -> _Number:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {what}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_positive(name: str, default: _Number, parse: type[_Number]) -> _Number:
    value = _env_number(name, default, parse, "a positive number")
    if value <= 0:
        raise ValueError(f"environment variable {name} must be a positive number, got {value!r}")
    return value


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise ValueError(
            f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}"
        )
    return raw


def _env_non_negative(name: str, default: float) -> float:
    value = _env_number(name, default, float, "a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"environment variable {name} must be a finite number >= 0, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class MessagingSettings:
    """Where the message bus is and how the contract's names are spelled."""

    url: str = DEFAULT_AMQP_URL
    exchange: str = "kubenova"
    dead_letter_exchange: str = "kubenova-dlx"
    dead_letter_queue: str = "kubenova-dead-letters"
    conductor_topic: str = "conductor"
    heartbeat_s: int = 60

    @staticmethod
    def compute_topic(host: str) -> str:
        """The routing key and queue name of one host's agent."""
        return f"compute.{host}"

    @staticmethod
    def agent_user(host: str) -> str:
        """The RabbitMQ user an agent connects as; the conductor checks it on every report."""
        return f"agent-{host}"

    @classmethod
    def from_env(cls, url: str | None = None) -> MessagingSettings:
        return cls(
            url=url or os.environ.get("KUBENOVA_AMQP_URL", DEFAULT_AMQP_URL),
            heartbeat_s=_env_int("KUBENOVA_AMQP_HEARTBEAT", 60),
        )


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Settings of the control plane (api, scheduler, conductor)."""

    db_url: str = DEFAULT_DB_URL
    messaging: MessagingSettings = dataclasses.field(default_factory=MessagingSettings)
    # Nova's service_down_time: a host whose last heartbeat is older is down.
    service_down_time_s: int = 60
    # Nova's scheduler max_attempts: the first host plus alternates.
    max_attempts: int = 3
    # None: the scheduler's defaults (kubenova.scheduler.filters.DEFAULT_FILTERS and
    # weighers.DEFAULT_WEIGHERS, Nova's set and order).
    enabled_filters: tuple[str, ...] | None = None
    weighers: tuple[str, ...] | None = None
    # Weigher class name -> multiplier, over the scheduler's DEFAULT_MULTIPLIERS.
    weigher_multipliers: dict[str, float] = dataclasses.field(default_factory=dict)
    # Threads that run the api handlers (kopf's executor) at once.
    api_workers: int = 16
    # Lanes that handle the conductor queue at once (each instance's reports stay ordered).
    # Twice api_workers: in a burst, finishing the builds already under way (the hosts'
    # reports) gets the larger share of the process, so reports do not queue up behind the
    # creates still arriving (a burst's p95 fell from 5.2-5.7 s to 3.0-3.9 s).
    conductor_workers: int = 32
    # How often every Hypervisor's up/down state and usage are checked, and how often
    # each host is audited against its last report.
    hypervisor_check_interval_s: float = 10.0
    audit_interval_s: float = 60.0
    # How long the "Building" status written when a build is cast may wait for a newer one
    # (usually "Running") to replace it; 0 writes it at once (see conductor/status_writer.py).
    building_status_delay_s: float = 0.5
    # Where Prometheus metrics are served; port 0 turns them off.
    metrics_port: int = 9090
    metrics_addr: str = "127.0.0.1"

    @classmethod
    def from_env(cls) -> OperatorSettings:
        filters = os.environ.get("KUBENOVA_SCHEDULER_FILTERS")
        weighers = os.environ.get("KUBENOVA_SCHEDULER_WEIGHERS")
        return cls(
            db_url=os.environ.get("KUBENOVA_DB_URL", DEFAULT_DB_URL),
            messaging=MessagingSettings.from_env(),
            service_down_time_s=_env_int("KUBENOVA_SERVICE_DOWN_TIME", 60),
            max_attempts=_env_int("KUBENOVA_SCHEDULER_MAX_ATTEMPTS", 3),
            enabled_filters=tuple(_split(filters)) if filters else None,
            weighers=tuple(_split(weighers)) if weighers else None,
            weigher_multipliers=_multipliers(os.environ.get("KUBENOVA_WEIGHER_MULTIPLIERS", "")),
            api_workers=_env_positive("KUBENOVA_API_WORKERS", 16, int),
            conductor_workers=_env_int("KUBENOVA_CONDUCTOR_WORKERS", 32),
            hypervisor_check_interval_s=_env_positive(
                "KUBENOVA_HYPERVISOR_CHECK_INTERVAL", 10.0, float
            ),
            audit_interval_s=_env_positive("KUBENOVA_AUDIT_INTERVAL", 60.0, float),
            building_status_delay_s=_env_non_negative("KUBENOVA_BUILDING_STATUS_DELAY", 0.5),
            metrics_port=_env_int("KUBENOVA_METRICS_PORT", 9090),
            metrics_addr=os.environ.get("KUBENOVA_METRICS_ADDR", "127.0.0.1"),
        )

    @property
    def db_pool_size(self) -> int:
        """Database connections kept open: one per api worker and conductor lane, and a few
        for the periodic tasks and the status writer, so a burst does not open new ones."""
        return self.api_workers + max(1, self.conductor_workers) + 4


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Settings of one node-agent."""

    host: str
    messaging: MessagingSettings
    heartbeat_interval_s: float = 10.0
    # How often the agent compares libvirt's view with what it last reported.
    sync_interval_s: float = 2.0
    instances_path: str = "/var/lib/kubenova/instances"
    image_cache_path: str = "/var/lib/kubenova/_base"
    libvirt_uri: str = "qemu:///system"
    # One of VIRT_TYPES; the libvirt driver resolves "auto" when it starts.
    virt_type: str = "auto"

    @classmethod
    def from_env(cls, host: str | None = None, amqp_url: str | None = None) -> AgentSettings:
        return cls(
            host=host or os.environ.get("KUBENOVA_HOST") or socket.gethostname().split(".")[0],
            messaging=MessagingSettings.from_env(amqp_url),
            heartbeat_interval_s=_env_float("KUBENOVA_HEARTBEAT_INTERVAL", 10.0),
            sync_interval_s=_env_float("KUBENOVA_SYNC_INTERVAL", 2.0),
            instances_path=os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances"),
            image_cache_path=os.environ.get("KUBENOVA_IMAGE_CACHE_PATH", "/var/lib/kubenova/_base"),
            libvirt_uri=os.environ.get("KUBENOVA_LIBVIRT_URI", "qemu:///system"),
            virt_type=_env_choice("KUBENOVA_VIRT_TYPE", "auto", VIRT_TYPES),
        )


def _multipliers(raw: str) -> dict[str, float]:
    """``RAMWeigher=-1,BuildFailureWeigher=1e6`` -> {name: multiplier}."""
    result: dict[str, float] = {}
    for item in _split(raw):
        name, sep, value = item.partition("=")
        try:
            result[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"KUBENOVA_WEIGHER_MULTIPLIERS wants Name=number items, got {item!r}")
    return result


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]
