"""The pika adapter: the one module that imports pika.

Topology (declared by the operator, which holds configure rights on the vhost):

* ``kubenova``: durable topic exchange every message goes through.
* ``kubenova-dlx``: durable fanout exchange for what cannot be handled, bound to the
  durable queue ``kubenova-dead-letters``.
* ``conductor``: durable queue shared by the operator replicas.
* ``compute.<host>``: one durable queue per agent, declared by that agent (its
  RabbitMQ user may configure only that queue).

Messages are JSON envelopes, persistent, published with publisher confirms and
``mandatory`` (a message no queue would take is an error, not a silent loss), and
consumed with manual acknowledgement after the handler returns.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pydantic

from kubenova import log, metrics
from kubenova.config import MessagingSettings
from kubenova.rpc import envelope

LOG = logging.getLogger(__name__)

#: A handler gets the envelope and the RabbitMQ-verified user that published it.
Handler = Callable[[envelope.Envelope, str | None], None]


class PermanentFailure(Exception):
    """Raised by a handler for a message that will never succeed: dead-letter it."""


class PublishError(Exception):
    """A message could not be delivered to any queue, or the broker refused it."""


def user_from_url(url: str) -> str | None:
    """The RabbitMQ user name inside an AMQP URL."""
    parsed = urllib.parse.urlparse(url)
    return urllib.parse.unquote(parsed.username) if parsed.username else None


def _connect(settings: MessagingSettings) -> pika.BlockingConnection:
    params = pika.URLParameters(settings.url)
    params.heartbeat = settings.heartbeat_s
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def declare_topology(settings: MessagingSettings) -> None:
    """Declare exchanges and the shared queues; idempotent (needs configure rights)."""
    connection = _connect(settings)
    try:
        channel = connection.channel()
        channel.exchange_declare(settings.exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(
            settings.dead_letter_exchange, exchange_type="fanout", durable=True
        )
        channel.queue_declare(settings.dead_letter_queue, durable=True)
        channel.queue_bind(settings.dead_letter_queue, settings.dead_letter_exchange)
        declare_queue(channel, settings, settings.conductor_topic)
    finally:
        connection.close()


def declare_queue(channel: Any, settings: MessagingSettings, topic: str) -> None:
    """Declare a durable queue named after its topic, dead-lettering to the DLX."""
    channel.queue_declare(
        topic,
        durable=True,
        arguments={"x-dead-letter-exchange": settings.dead_letter_exchange},
    )
    channel.queue_bind(topic, settings.exchange, routing_key=topic)


class Publisher:
    """Publishes envelopes with confirms; thread-safe; reconnects once per failure.

    pika's BlockingConnection is not thread-safe, so one lock serialises every use.
    """

    def __init__(self, settings: MessagingSettings, sender: str) -> None:
        self._settings = settings
        self._sender = sender
        # RabbitMQ checks user_id against the authenticated user, so the receiver
        # can trust it to say who published.
        self._user_id = user_from_url(settings.url)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def _ensure_channel(self) -> Any:
        if self._connection is None or self._connection.is_closed or self._channel is None:
            self._connection = _connect(self._settings)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def cast(self, topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        """Publish one message to ``topic``; returns its message id once confirmed."""
        message = envelope.Envelope(
            request_id=request_id, method=method, args=args, sender=self._sender
        )
        body = message.to_json()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message.message_id,
            correlation_id=request_id,
            user_id=self._user_id,
            type=method,
            headers={"version": message.version},
        )
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._ensure_channel()
                    channel.basic_publish(
                        self._settings.exchange, topic, body, properties, mandatory=True
                    )
                    break
                except pika.exceptions.UnroutableError as exc:
                    raise PublishError(f"no queue takes messages for {topic!r}") from exc
                except pika.exceptions.NackError as exc:
                    raise PublishError(f"the broker refused a message for {topic!r}") from exc
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self._reset()
                    if attempt == 2:
                        raise PublishError(f"could not publish to {topic!r}: {exc}") from exc
                    LOG.warning("publish to %s failed (%s); reconnecting", topic, exc)
        metrics.MESSAGES_PUBLISHED.labels(metrics.kind(topic)).inc()
        LOG.debug("cast %s to %s", method, topic, extra={"message_id": message.message_id})
        return message.message_id

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def close(self) -> None:
        with self._lock:
            self._reset()


class Consumer:
    """Consumes one queue, one message at a time, with manual acknowledgement.

    * handler returns: ack.
    * unknown major version, invalid envelope or payload, :class:`PermanentFailure`:
      reject without requeue, so the broker dead-letters it.
    * any other exception (a database restart, say): requeue after a back-off, so a
      transient fault loses nothing.
    """

    def __init__(
        self,
        settings: MessagingSettings,
        queue: str,
        handler: Handler,
        *,
        declare_own_queue: bool = False,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._handler = handler
        self._declare_own_queue = declare_own_queue
        self._retry_delay_s = retry_delay_s
        self._stop = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting with back-off when the broker goes."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 1.0
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.connected.clear()
                LOG.warning("consumer of %s lost the broker (%s); retrying", self._queue, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 15.0)

    def _consume(self) -> None:
        connection = _connect(self._settings)
        try:
            channel = connection.channel()
            if self._declare_own_queue:
                declare_queue(channel, self._settings, self._queue)
            channel.basic_qos(prefetch_count=1)
            channel.basic_consume(self._queue, self._on_message)
            self.connected.set()
            LOG.info("consuming %s", self._queue)
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.5)
        finally:
            self.connected.clear()
            if connection.is_open:
                connection.close()

    def _on_message(self, channel: Any, deliver: Any, properties: Any, body: bytes) -> None:
        try:
            message = envelope.Envelope.from_json(body)
            message.check_version()
        except (pydantic.ValidationError, envelope.UnsupportedVersion, ValueError) as exc:
            LOG.error(
                "dead-lettering an unusable message from %s: %s",
                self._queue,
                exc,
                extra={"message_id": getattr(properties, "message_id", None)},
            )
            channel.basic_reject(deliver.delivery_tag, requeue=False)
            metrics.MESSAGES_CONSUMED.labels(metrics.kind(self._queue), metrics.DEAD_LETTER).inc()
            return
        handle_seconds = metrics.HANDLE_SECONDS.labels(metrics.method_label(message.method))
        with log.request_context(message.request_id):
            started = time.monotonic()
            try:
                self._handler(message, getattr(properties, "user_id", None))
            except (PermanentFailure, pydantic.ValidationError) as exc:
                handle_seconds.observe(time.monotonic() - started)
                LOG.error(
                    "dead-lettering %s: %s",
                    message.method,
                    exc,
                    extra={"message_id": message.message_id},
                )
                channel.basic_reject(deliver.delivery_tag, requeue=False)
                metrics.MESSAGES_CONSUMED.labels(
                    metrics.kind(self._queue), metrics.DEAD_LETTER
                ).inc()
                return
            except Exception:
                handle_seconds.observe(time.monotonic() - started)
                LOG.exception(
                    "handling %s failed; it will be redelivered",
                    message.method,
                    extra={"message_id": message.message_id},
                )
                time.sleep(self._retry_delay_s)
                channel.basic_nack(deliver.delivery_tag, requeue=True)
                metrics.MESSAGES_CONSUMED.labels(metrics.kind(self._queue), metrics.REQUEUE).inc()
                return
            handle_seconds.observe(time.monotonic() - started)
        channel.basic_ack(deliver.delivery_tag)
        metrics.MESSAGES_CONSUMED.labels(metrics.kind(self._queue), metrics.ACK).inc()
