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

A call (:func:`kubenova.rpc.amqp_call.request`, used by :mod:`kubenova.rpc.call`) is the same
envelope with a ``reply_to``: a routing key on the exchange,
``reply.compute.<host>.<message id>``, bound to an exclusive queue of the caller's for the
call's length. The :class:`Consumer` publishes its handler's return value there
(:mod:`kubenova.rpc.reply`). Not RabbitMQ's direct reply-to: that goes through the default
exchange, which an agent's user may not write to (through it, it could reach any queue); on
the exchange, its topic permissions let it answer calls made to its own host and nothing else.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pydantic
from pika.adapters.utils import connection_workflow

from kubenova import log
from kubenova.config import MessagingSettings
from kubenova.exception import PermanentFailure
from kubenova.rpc import envelope, metrics, payloads, reply

LOG = logging.getLogger(__name__)

#: A handler gets the envelope and the RabbitMQ-verified user that published it. What it
#: returns answers a call (a message with ``reply_to``); a cast's return value is dropped.
Handler = Callable[[envelope.Envelope, str | None], object]


class PublishError(Exception):
    """A message could not be delivered to any queue, or the broker refused it."""


def user_from_url(url: str) -> str | None:
    """The RabbitMQ user name inside an AMQP URL."""
    parsed = urllib.parse.urlparse(url)
    return urllib.parse.unquote(parsed.username) if parsed.username else None


def connect(settings: MessagingSettings) -> pika.BlockingConnection:
    """A connection to the broker; every failure to make one is an ``AMQPConnectionError``.

    pika raises some failures of its connection workflow (a handshake the broker did not
    finish within ``stack_timeout``, say) as they are, outside its ``AMQPError`` family:
    escaping the handlers that reconnect, one ended a simulated host's consumer for good
    under load, and its queue was never read again.
    """
    params = pika.URLParameters(settings.url)
    params.heartbeat = settings.heartbeat_s
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1
    try:
        return pika.BlockingConnection(params)
    except connection_workflow.AMQPConnectorException as exc:
        raise pika.exceptions.AMQPConnectionError(f"{type(exc).__name__}: {exc}") from exc


def declare_topology(settings: MessagingSettings) -> None:
    """Declare exchanges and the shared queues; idempotent (needs configure rights)."""
    connection = connect(settings)
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
            self._connection = connect(self._settings)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def cast(self, topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        """Publish one message to ``topic``; returns its message id once confirmed.

        The envelope carries the method's version from the contract, so a receiver that
        implements an older contract refuses the message rather than misreading it.
        """
        contract_method = payloads.METHODS.get(method)
        if contract_method is None:
            raise ValueError(f"{method!r} is not a method of the contract (payloads.METHODS)")
        message = envelope.Envelope(
            version=contract_method.version,
            request_id=request_id,
            method=method,
            args=args,
            sender=self._sender,
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
    """Consumes one queue with manual acknowledgement.

    * handler returns: ack.
    * a version this receiver does not implement (an unknown major, or newer than
      :data:`envelope.VERSION`), invalid envelope or payload, :class:`PermanentFailure`:
      reject without requeue, so the broker dead-letters it.
    * any other exception (a database restart, say): tried again after a back-off, then
      requeued, so a transient fault loses nothing.
    * a call (``reply_to`` set): acknowledged, and the handler's return value, or its
      failure, published to ``reply_to`` (:mod:`kubenova.rpc.reply`); never retried.

    With ``workers`` > 1 messages are handled by that many lanes at once; every message
    about one instance (or, without one, one host) goes to the same lane, so each
    instance's reports are still handled in the order they were sent. A failing message
    is retried in its lane before it is requeued, which keeps that order through short
    faults.

    ``out_of_turn`` names methods that must not wait for their instance's lane, because the
    message they stop holds it (an abort of a live migration, which runs for as long as the
    move does): they are handled on a lane of their own, which always exists when any are
    named. Their handlers must return at once. (With one worker the connection's own thread
    runs each handler, and nothing is received while one runs: give such a consumer
    ``workers`` > 1.)
    """

    def __init__(
        self,
        settings: MessagingSettings,
        queue: str,
        handler: Handler,
        *,
        declare_own_queue: bool = False,
        retry_delay_s: float = 1.0,
        workers: int = 1,
        lane_retries: int = 3,
        out_of_turn: frozenset[str] = frozenset(),
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._handler = handler
        self._declare_own_queue = declare_own_queue
        self._retry_delay_s = retry_delay_s
        self._workers = max(1, workers)
        self._lane_retries = lane_retries if self._workers > 1 else 0
        self._out_of_turn = out_of_turn
        self._stop = threading.Event()
        self.connected = threading.Event()
        # The connection being consumed, so stop() can wake its loop from another thread.
        self._connection_lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None

    def stop(self) -> None:
        """Stop consuming; returns at once, ``run`` returns soon after."""
        self._stop.set()
        with self._connection_lock:
            connection = self._connection
        if connection is not None:
            # The loop waits for I/O without a timeout: a no-op callback wakes it.
            with contextlib.suppress(pika.exceptions.AMQPError, RuntimeError):
                connection.add_callback_threadsafe(lambda: None)

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
        connection = connect(self._settings)
        lanes = [
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self._queue}-lane{n}")
            for n in range(self._workers if self._workers > 1 else 0)
        ]
        urgent = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self._queue}-urgent")
            if self._out_of_turn
            else None
        )
        try:
            channel = connection.channel()
            if self._declare_own_queue:
                declare_queue(channel, self._settings, self._queue)
            channel.basic_qos(prefetch_count=self._workers * 4 if lanes else 1)
            replies = _Replies(
                connection, self._settings.exchange, user_from_url(self._settings.url)
            )

            def on_message(channel: Any, deliver: Any, properties: Any, body: bytes) -> None:
                message = self._parse(body, properties)
                if message is None:
                    self._settle(channel, deliver.delivery_tag, metrics.DEAD_LETTER)
                    return
                lane: concurrent.futures.Executor
                if urgent is not None and message.method in self._out_of_turn:
                    lane = urgent
                elif not lanes:
                    outcome, answer = self._handle(message, properties)
                    self._settle(channel, deliver.delivery_tag, outcome)
                    replies.send(properties, answer)
                    return
                else:
                    lane = lanes[_lane_index(_ordering_key(message), len(lanes))]

                def work() -> None:
                    outcome, answer = self._handle(message, properties)
                    connection.add_callback_threadsafe(
                        functools.partial(self._settle, channel, deliver.delivery_tag, outcome)
                    )
                    if answer is not None:
                        connection.add_callback_threadsafe(
                            functools.partial(replies.send, properties, answer)
                        )

                lane.submit(work)

            channel.basic_consume(self._queue, on_message)
            with self._connection_lock:
                self._connection = connection
            self.connected.set()
            LOG.info("consuming %s with %d lane(s)", self._queue, max(1, len(lanes)))
            # Block until there is something to do (a delivery, a lane's settlement, pika's
            # own heartbeat timer, or stop()'s wake-up) rather than waking on a timer: a
            # hundred idle agents polling twice a second cost a measurable share of a core.
            while not self._stop.is_set():
                connection.process_data_events(time_limit=None)
        finally:
            with self._connection_lock:
                self._connection = None
            self.connected.clear()
            for lane in [*lanes, *([urgent] if urgent is not None else [])]:
                # Unsettled messages go back to the queue when the connection closes.
                lane.shutdown(wait=True, cancel_futures=True)
            if connection.is_open:
                connection.close()

    def _parse(self, body: bytes, properties: Any) -> envelope.Envelope | None:
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
            return None
        return message

    def _handle(self, message: envelope.Envelope, properties: Any) -> tuple[str, bytes | None]:
        """The outcome for the broker, and the answer to publish when the message is a call."""
        if not getattr(properties, "reply_to", None):
            return self._process(message, properties), None
        return metrics.ACK, self._answer(message, properties)

    def _answer(self, message: envelope.Envelope, properties: Any) -> bytes:
        """Run a call's handler once: its return value, or its failure, is the answer."""
        handle_seconds = metrics.HANDLE_SECONDS.labels(metrics.method_label(message.method))
        started = time.monotonic()
        with log.request_context(message.request_id):
            try:
                answer = reply.success(self._handler(message, getattr(properties, "user_id", None)))
            except Exception as exc:
                LOG.warning(
                    "call %s failed: %s",
                    message.method,
                    exc,
                    extra={"message_id": message.message_id},
                )
                answer = reply.failure(exc)
        handle_seconds.observe(time.monotonic() - started)
        return answer

    def _process(self, message: envelope.Envelope, properties: Any) -> str:
        """Run the handler; the outcome says what to tell the broker."""
        handle_seconds = metrics.HANDLE_SECONDS.labels(metrics.method_label(message.method))
        with log.request_context(message.request_id):
            for attempt in range(self._lane_retries + 1):
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
                    return metrics.DEAD_LETTER
                except Exception:
                    handle_seconds.observe(time.monotonic() - started)
                    LOG.exception(
                        "handling %s failed (attempt %d); it will be tried again",
                        message.method,
                        attempt + 1,
                        extra={"message_id": message.message_id},
                    )
                    time.sleep(self._retry_delay_s)
                    continue
                handle_seconds.observe(time.monotonic() - started)
                return metrics.ACK
        return metrics.REQUEUE

    def _settle(self, channel: Any, delivery_tag: int, outcome: str) -> None:
        if not channel.is_open:
            return  # the broker redelivers what this channel left unsettled
        if outcome == metrics.ACK:
            channel.basic_ack(delivery_tag)
        elif outcome == metrics.DEAD_LETTER:
            channel.basic_reject(delivery_tag, requeue=False)
        else:
            channel.basic_nack(delivery_tag, requeue=True)
        metrics.MESSAGES_CONSUMED.labels(metrics.kind(self._queue), outcome).inc()


class _Replies:
    """Publishes calls' answers on a channel of its own (opened when first needed), on the
    consumer's connection thread: a reply the broker refuses (a routing key this user may not
    publish with) closes that channel, not the one consuming. The request is acknowledged
    before its answer goes, so a lost answer costs the caller a timeout, never a second run."""

    def __init__(
        self, connection: pika.BlockingConnection, exchange: str, user_id: str | None
    ) -> None:
        self._connection = connection
        self._exchange = exchange
        self._user_id = user_id
        self._channel: Any = None

    def send(self, request: Any, answer: bytes | None) -> None:
        """Publish ``answer`` (None: the message was a cast) to the request's ``reply_to``."""
        if answer is None:
            return
        try:
            if self._channel is None or not self._channel.is_open:
                self._channel = self._connection.channel()
                self._channel.confirm_delivery()
            self._channel.basic_publish(
                self._exchange,
                request.reply_to,
                answer,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Transient,
                    correlation_id=request.correlation_id,
                    user_id=self._user_id,
                ),
            )
        except (pika.exceptions.AMQPChannelError, pika.exceptions.NackError) as exc:
            self._channel = None
            LOG.error(
                "the answer to call %s could not be sent: %s",
                getattr(request, "type", None),
                exc,
                extra={"message_id": getattr(request, "message_id", None)},
            )


def _ordering_key(message: envelope.Envelope) -> str:
    """Messages with the same key are handled in order: one instance's, else one host's."""
    key = message.args.get("instance_uuid") or message.args.get("host")
    instance = message.args.get("instance")
    if key is None and isinstance(instance, dict):
        key = instance.get("uuid")
    return str(key or message.method)


def _lane_index(key: str, lanes: int) -> int:
    # A real hash, not CRC: keys that differ in one character must still spread.
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % lanes
