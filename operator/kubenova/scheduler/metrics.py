"""Prometheus metrics of the scheduler, in prometheus-client's default registry (which the
operator serves on ``$KUBENOVA_METRICS_ADDR:$KUBENOVA_METRICS_PORT``).

* ``kubenova_scheduler_attempt_duration_seconds{result}``: one scheduling attempt (read the
  host states, filter, weigh, claim), by result, ``scheduled`` or ``no_valid_host``. Its
  ``_count`` counts the attempts; an instance kept Pending is attempted again at each retry,
  as kube-scheduler counts its attempts.
* ``kubenova_scheduler_rejected_hosts_total{reason}``: in the attempts that found no host,
  the hosts counted under each reason (``insufficient memory``, ``anti-affinity``,
  ``down``, ...): the counts of the Pending instances' ``Scheduled`` messages, summed.
* ``kubenova_scheduler_claim_refusals_total{reason}``: claims refused by a host that had
  passed the filters, because the scheduler's view of it was stale (another claim took its
  room, a member of the same group landed there, it was disabled meanwhile). Many of them
  mean schedulers racing for the same hosts.

Reasons are the filters' and the claim's fixed words, so the label values stay few.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import prometheus_client

SCHEDULED: Final = "scheduled"
NO_VALID_HOST: Final = "no_valid_host"

ATTEMPT_SECONDS: Final = prometheus_client.Histogram(
    "kubenova_scheduler_attempt_duration_seconds",
    "Time of one scheduling attempt (host states, filters, weighers, claims), by result.",
    ["result"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REJECTED_HOSTS: Final = prometheus_client.Counter(
    "kubenova_scheduler_rejected_hosts",
    "In attempts that found no host: hosts rejected, by reason.",
    ["reason"],
)
CLAIM_REFUSALS: Final = prometheus_client.Counter(
    "kubenova_scheduler_claim_refusals",
    "Claims refused by a host that passed the filters (a stale view), by reason.",
    ["reason"],
)


def scheduled(seconds: float) -> None:
    """An attempt that claimed a host took ``seconds``."""
    ATTEMPT_SECONDS.labels(SCHEDULED).observe(seconds)


def no_valid_host(seconds: float, rejections: Mapping[str, int]) -> None:
    """An attempt that found no host took ``seconds``; ``rejections`` counts the hosts by
    reason."""
    ATTEMPT_SECONDS.labels(NO_VALID_HOST).observe(seconds)
    for reason, hosts in rejections.items():
        REJECTED_HOSTS.labels(reason).inc(hosts)


def claim_refused(reason: str) -> None:
    """A host that passed the filters refused the claim, for ``reason``."""
    CLAIM_REFUSALS.labels(reason).inc()
