"""Process configuration, read from the environment: what the operator and the node-agent
share (the message bus, the parsing of variables) and the operator's own settings.

The node-agent imports this module (through :mod:`kubenova.rpc` too), so it must stay free of
any control-plane dependency (no database, no kopf) and hold nothing about the database: the
database URL is read where the engine is made (:func:`kubenova.db.engine.url_from_env`), in the
database layer the agent may not import. The agent's own settings are in
:mod:`kubenova_agent.settings`. The variable names match hack/lib/env.sh, so the local stack
and the processes agree.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import TypeVar

# The broker on this machine, without credentials: a password has no place in the source, so
# KUBENOVA_AMQP_URL (hack/lib/env.sh, the chart's Secret) carries the user and password.
DEFAULT_AMQP_URL = "amqp://127.0.0.1:5672/kubenova"

# Nova's consoleauth token_ttl: how long a console URL may wait before it is opened.
DEFAULT_CONSOLE_TOKEN_TTL_S = 600
#: Nova's max_placement_results defaults to 1000; a fleet of this many hosts or fewer is
#: weighed whole (see kubenova.scheduler.candidates).
DEFAULT_SCHEDULER_MAX_CANDIDATES = 200

_Number = TypeVar("_Number", int, float)


def _env_number(name: str, default: _Number, parse: type[_Number], what: str) -> _Number:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {what}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_count(name: str, default: int) -> int:
    """A whole number >= 0 from ``name``."""
    value = _env_number(name, default, int, "a whole number >= 0")
    if value < 0:
        raise ValueError(f"environment variable {name} must be a whole number >= 0, got {value!r}")
    return value


def env_positive(name: str, default: _Number, parse: type[_Number]) -> _Number:
    value = _env_number(name, default, parse, "a positive number")
    if value <= 0:
        raise ValueError(f"environment variable {name} must be a positive number, got {value!r}")
    return value


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise ValueError(
            f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}"
        )
    return raw


def env_non_negative(name: str, default: float) -> float:
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
    def reply_prefix(host: str) -> str:
        """How the routing keys of the answers one host's agent gives to calls begin: an
        agent's user may publish on the exchange only with these (and ``conductor``)."""
        return f"reply.compute.{host}."

    @staticmethod
    def agent_user(host: str) -> str:
        """The RabbitMQ user an agent connects as; the conductor checks it on every report."""
        return f"agent-{host}"

    @classmethod
    def from_env(cls, url: str | None = None) -> MessagingSettings:
        return cls(
            url=url or os.environ.get("KUBENOVA_AMQP_URL", DEFAULT_AMQP_URL),
            heartbeat_s=env_int("KUBENOVA_AMQP_HEARTBEAT", 60),
        )


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Settings of the control plane (api, scheduler, conductor)."""

    messaging: MessagingSettings = dataclasses.field(default_factory=MessagingSettings)
    # Nova's service_down_time: a host whose last heartbeat is older is down.
    service_down_time_s: int = 60
    # Nova's scheduler max_attempts: builds per instance, the first and its reschedules.
    max_attempts: int = 3
    # None: the scheduler's defaults (kubenova.scheduler.filters.DEFAULT_FILTERS and
    # weighers.DEFAULT_WEIGHERS, Nova's set and order).
    enabled_filters: tuple[str, ...] | None = None
    weighers: tuple[str, ...] | None = None
    # Nova's max_placement_results: past this many hosts, a request is filtered and weighed
    # against this many hosts with room, chosen at random (kubenova.scheduler.candidates);
    # 0 weighs every host.
    scheduler_max_candidates: int = DEFAULT_SCHEDULER_MAX_CANDIDATES
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
    # each host is audited against its last report and records are swept for orphans.
    hypervisor_check_interval_s: float = 10.0
    audit_interval_s: float = 60.0
    # How long the "Building" status written when a build is cast may wait for a newer one
    # (usually "Running") to replace it; 0 writes it at once (see conductor/patch_queue.py).
    building_status_delay_s: float = 0.5
    # Nova's shutdown_timeout: how long a stop or a soft reboot waits for the guest to shut
    # down by itself before its host powers it off.
    shutdown_timeout_s: int = 60
    # An operation whose host has not answered this long after its cast (beyond the
    # shutdown timeout) is cast once more, and after twice as long rolled back (Nova's
    # _init_instance, run from the conductor's side).
    operation_timeout_s: float = 120.0
    # Nova's resize_confirm_window: a resize not confirmed or reverted within it is confirmed
    # (0: never). Nova's default is 0; a day here, so forgotten resizes free their source.
    resize_confirm_window_s: int = 86400
    # Nova's allow_resize_to_same_host: a resize may stay on its host when the new flavor
    # fits there too (the scheduler weighs it with the others).
    allow_resize_to_same_host: bool = True
    # A live migration whose data left to copy has not gone down for this long is aborted by
    # its source (Nova's live_migration_progress_timeout, whose last default was 150 s): a
    # guest dirtying memory faster than the link copies it never converges.
    live_migration_progress_timeout_s: int = 150
    # Nova's consoleauth token_ttl: a console token not used within it is refused.
    console_token_ttl_s: int = DEFAULT_CONSOLE_TOKEN_TTL_S
    # Where Prometheus metrics are served; port 0 turns them off.
    metrics_port: int = 9090
    metrics_addr: str = "127.0.0.1"

    @classmethod
    def from_env(cls) -> OperatorSettings:
        filters = os.environ.get("KUBENOVA_SCHEDULER_FILTERS")
        weighers = os.environ.get("KUBENOVA_SCHEDULER_WEIGHERS")
        return cls(
            messaging=MessagingSettings.from_env(),
            service_down_time_s=env_int("KUBENOVA_SERVICE_DOWN_TIME", 60),
            max_attempts=env_int("KUBENOVA_SCHEDULER_MAX_ATTEMPTS", 3),
            enabled_filters=tuple(_split(filters)) if filters else None,
            weighers=tuple(_split(weighers)) if weighers else None,
            scheduler_max_candidates=env_count(
                "KUBENOVA_SCHEDULER_MAX_CANDIDATES", DEFAULT_SCHEDULER_MAX_CANDIDATES
            ),
            weigher_multipliers=_multipliers(os.environ.get("KUBENOVA_WEIGHER_MULTIPLIERS", "")),
            api_workers=env_positive("KUBENOVA_API_WORKERS", 16, int),
            conductor_workers=env_int("KUBENOVA_CONDUCTOR_WORKERS", 32),
            hypervisor_check_interval_s=env_positive(
                "KUBENOVA_HYPERVISOR_CHECK_INTERVAL", 10.0, float
            ),
            audit_interval_s=env_positive("KUBENOVA_AUDIT_INTERVAL", 60.0, float),
            building_status_delay_s=env_non_negative("KUBENOVA_BUILDING_STATUS_DELAY", 0.5),
            shutdown_timeout_s=env_int("KUBENOVA_SHUTDOWN_TIMEOUT", 60),
            operation_timeout_s=env_positive("KUBENOVA_OPERATION_TIMEOUT", 120.0, float),
            resize_confirm_window_s=int(env_non_negative("KUBENOVA_RESIZE_CONFIRM_WINDOW", 86400)),
            allow_resize_to_same_host=env_choice(
                "KUBENOVA_ALLOW_RESIZE_TO_SAME_HOST", "true", ("true", "false")
            )
            == "true",
            live_migration_progress_timeout_s=int(
                env_positive("KUBENOVA_LIVE_MIGRATION_PROGRESS_TIMEOUT", 150, int)
            ),
            console_token_ttl_s=env_positive(
                "KUBENOVA_CONSOLE_TOKEN_TTL", DEFAULT_CONSOLE_TOKEN_TTL_S, int
            ),
            metrics_port=env_int("KUBENOVA_METRICS_PORT", 9090),
            metrics_addr=os.environ.get("KUBENOVA_METRICS_ADDR", "127.0.0.1"),
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


#: What a program that cannot start with its settings exits with (as argparse does).
EXIT_BAD_SETTINGS = 2


def bad_settings(program: str, reason: object) -> int:
    """Say on stderr, in one line naming ``program``, why it cannot start with its settings;
    returns :data:`EXIT_BAD_SETTINGS`, for ``return bad_settings(...)`` from a ``main``."""
    print(f"{program}: {reason}", file=sys.stderr)
    return EXIT_BAD_SETTINGS
