"""Calls: a message to one host that waits for its answer (Nova's ``call``, as opposed to
``cast``).

The request travels in the usual envelope to ``compute.<host>``, with RabbitMQ's direct
reply-to as its ``reply_to`` and its message id as the ``correlation_id``; the host's
:class:`kubenova.rpc.amqp.Consumer` answers with what its handler returned
(:mod:`kubenova.rpc.reply`). A call that gets no answer within its timeout raises
:class:`CallTimeout`, which names the host and the method; the request expires from the
queue at the same moment, so a host that comes back later does not run it for nobody.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, amqp_call, envelope, payloads, reply

LOG = logging.getLogger(__name__)

_COMPUTE_PREFIX = MessagingSettings.compute_topic("")


class CallError(Exception):
    """A call that got no usable answer."""


class CallTimeout(CallError):
    """No answer within the timeout: the host is down, busy, or its agent is not running."""

    def __init__(self, topic: str, method: str, timeout_s: float) -> None:
        self.host = host_of(topic)
        self.method = method
        self.timeout_s = timeout_s
        super().__init__(f"host {self.host} did not answer {method} within {timeout_s:g} s")


class RemoteError(CallError):
    """The host's handler raised: ``type`` is the exception's class name there."""

    def __init__(self, topic: str, method: str, failure: reply.RemoteFailure) -> None:
        self.host = host_of(topic)
        self.method = method
        self.type = failure.type
        self.message = failure.message
        super().__init__(f"host {self.host} failed {method}: {failure.message}")


class Unreachable(CallError):
    """The request could not be sent: no queue for the host, or no message bus."""

    def __init__(self, topic: str, method: str, cause: str) -> None:
        self.host = host_of(topic)
        self.method = method
        super().__init__(f"could not ask host {self.host} for {method}: {cause}")


def host_of(topic: str) -> str:
    """``compute.node-1`` -> ``node-1``; another topic as it is."""
    return topic.removeprefix(_COMPUTE_PREFIX)


class Caller:
    """Makes calls; thread-safe (each call has its own connection, see
    :func:`kubenova.rpc.amqp_call.request`)."""

    def __init__(self, settings: MessagingSettings, sender: str) -> None:
        self._settings = settings
        self._sender = sender

    def call(
        self,
        topic: str,
        method: str,
        args: dict[str, object],
        request_id: str,
        *,
        timeout_s: float,
    ) -> Any:
        """Send ``method`` to ``topic`` and return the result its handler returned."""
        contract_method = payloads.METHODS.get(method)
        if contract_method is None:
            raise ValueError(f"{method!r} is not a method of the contract (payloads.METHODS)")
        if timeout_s <= 0:
            raise ValueError(f"a call's timeout must be positive, not {timeout_s!r}")
        message = envelope.Envelope(
            version=contract_method.version,
            request_id=request_id,
            method=method,
            args=args,
            sender=self._sender,
        )
        try:
            body = amqp_call.request(self._settings, topic, message, timeout_s)
        except amqp.PublishError as exc:
            raise Unreachable(topic, method, str(exc)) from exc
        if body is None:
            raise CallTimeout(topic, method, timeout_s)
        try:
            answer = reply.Reply.from_json(body)
        except pydantic.ValidationError as exc:
            raise CallError(f"host {host_of(topic)} answered {method} with nonsense") from exc
        if answer.error is not None:
            raise RemoteError(topic, method, answer.error)
        LOG.debug("call %s to %s answered", method, topic, extra={"message_id": message.message_id})
        return answer.result
