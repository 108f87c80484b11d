"""Prometheus metrics of the message bus, shared by the operator and the agent.

The collectors live in prometheus-client's default registry, so whichever process serves
that registry (the operator, on ``127.0.0.1:$KUBENOVA_METRICS_PORT``) exposes them. Labels are
kept to small, fixed sets: a queue or topic is reduced to its kind (``compute.<host>`` counts as
``compute``), so a fleet of hosts does not become a label value per host.

* ``kubenova_rpc_messages_published_total{topic_kind}``: messages the broker confirmed.
* ``kubenova_rpc_messages_consumed_total{queue_kind, outcome}``: messages this process
  finished with, by what it told the broker: ``ack``, ``requeue`` or ``dead_letter``.
* ``kubenova_rpc_handle_seconds{method}``: how long the handler of a message ran.

Like the message contract, this module must not import the control plane: the agent imports it.
"""

from __future__ import annotations

import prometheus_client

from kubenova.rpc import payloads

COMPUTE = "compute"
CONDUCTOR = "conductor"
OTHER = "other"

ACK = "ack"
REQUEUE = "requeue"
DEAD_LETTER = "dead_letter"

# A message whose method no handler knows is still timed; its name comes from the sender,
# so anything outside the contract's methods is counted under one label value.
_KNOWN_METHODS = frozenset(payloads.METHODS)

MESSAGES_PUBLISHED = prometheus_client.Counter(
    "kubenova_rpc_messages_published_total",
    "Messages published and confirmed by the broker, by kind of destination topic.",
    ["topic_kind"],
)
MESSAGES_CONSUMED = prometheus_client.Counter(
    "kubenova_rpc_messages_consumed_total",
    "Messages consumed, by kind of queue and by outcome (ack, requeue, dead_letter).",
    ["queue_kind", "outcome"],
)
HANDLE_SECONDS = prometheus_client.Histogram(
    "kubenova_rpc_handle_seconds",
    "Time a message handler ran, by message method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def kind(topic: str) -> str:
    """The kind of a topic or queue name: ``compute``, ``conductor`` or ``other``."""
    if topic == CONDUCTOR:
        return CONDUCTOR
    if topic.startswith(COMPUTE + "."):
        return COMPUTE
    return OTHER


def method_label(method: str | None) -> str:
    """``method`` when the contract defines it, ``other`` otherwise (bounded label values)."""
    return method if method in _KNOWN_METHODS else OTHER
