"""The caller's side of a call over AMQP (:mod:`kubenova.rpc.call` holds its errors and
answers): the request, published like a cast but with a ``reply_to``, and the wait for its
answer. The consumer's side, which answers, is :class:`kubenova.rpc.amqp.Consumer`."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pika
import pika.exceptions

from kubenova.config import MessagingSettings
from kubenova.rpc import envelope
from kubenova.rpc.amqp import PublishError, connect, user_from_url


def request(
    settings: MessagingSettings, topic: str, message: envelope.Envelope, timeout_s: float
) -> bytes | None:
    """Publish ``message`` to ``topic`` as a call and wait up to ``timeout_s`` for its answer;
    None when none came in time.

    The answer comes on the exchange with the routing key :func:`reply_key`, bound to an
    exclusive queue of this call's (the broker deletes it with the connection). The request is
    transient and expires after ``timeout_s`` (per-message TTL): a consumer that would only get
    to it after its caller gave up never sees it, and nothing is left in the queue. One
    connection per call: calls are rare (a user asking), and a call to a slow host then holds
    up no other. Raises :class:`PublishError` when no queue takes the message or the broker
    cannot be reached.
    """
    answers: list[bytes] = []
    answer_key = reply_key(topic, message.message_id)

    def on_answer(channel: Any, deliver: Any, properties: Any, body: bytes) -> None:
        if properties.correlation_id == message.message_id:
            answers.append(body)

    try:
        connection = connect(settings)
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise PublishError(f"could not reach the message bus to call {topic!r}: {exc}") from exc
    try:
        channel = connection.channel()
        # Bound before the request goes, so that no answer can come before its queue.
        answer_queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(answer_queue, settings.exchange, routing_key=answer_key)
        channel.basic_consume(answer_queue, on_answer, auto_ack=True)
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Transient,
            message_id=message.message_id,
            correlation_id=message.message_id,
            reply_to=answer_key,
            expiration=str(max(1, int(timeout_s * 1000))),
            user_id=user_from_url(settings.url),
            type=message.method,
            headers={"version": message.version},
        )
        channel.basic_publish(
            settings.exchange, topic, message.to_json(), properties, mandatory=True
        )
        deadline = time.monotonic() + timeout_s
        while not answers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            connection.process_data_events(time_limit=remaining)
        return answers[0]
    except pika.exceptions.UnroutableError as exc:
        raise PublishError(f"no queue takes messages for {topic!r}") from exc
    except pika.exceptions.NackError as exc:
        raise PublishError(f"the broker refused a message for {topic!r}") from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise PublishError(f"could not call {topic!r}: {exc}") from exc
    finally:
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


def reply_key(topic: str, message_id: str) -> str:
    """The routing key of the answer to a call sent to ``topic`` (``compute.<host>``): under
    :meth:`MessagingSettings.reply_prefix`, which the host's agent may publish with."""
    return f"reply.{topic}.{message_id}"
