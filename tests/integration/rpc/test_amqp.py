"""The pika adapter against the real RabbitMQ: confirms, mandatory routing, user_id,
manual acknowledgement and dead-lettering."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import pika.exceptions
import prometheus_client
import pytest

from kubenova import metrics
from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, envelope

pytestmark = pytest.mark.integration


@pytest.fixture
def settings():
    settings = MessagingSettings.from_env()
    try:
        amqp.declare_topology(settings)
    except (amqp.PublishError, OSError, pika.exceptions.AMQPError) as exc:
        pytest.fail(f"RabbitMQ is not reachable ({exc}): start it with hack/services.sh up")
    return settings


@pytest.fixture
def topic(settings):
    """A queue of this test's own, bound like an agent's, deleted afterwards."""
    name = f"compute.itest-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    amqp.declare_queue(connection.channel(), settings, name)
    yield name
    connection.channel().queue_delete(name)
    connection.close()


def _consume(settings, topic, handler, until, timeout=10.0):
    consumer = amqp.Consumer(settings, topic, handler, retry_delay_s=0.1)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop()
    thread.join(timeout=5)


def _consumed(outcome: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "kubenova_rpc_messages_consumed_total", {"queue_kind": "compute", "outcome": outcome}
    )
    return value or 0.0


def test_cast_is_delivered_once_with_the_publishers_verified_user(settings, topic):
    publisher = amqp.Publisher(settings, sender="itest")
    publisher.cast(topic, "terminate_instance", {"instance_uuid": "u-1"}, "req-itest")
    publisher.close()
    received: list[tuple[envelope.Envelope, str | None]] = []
    _consume(settings, topic, lambda m, user: received.append((m, user)), lambda: received)
    assert len(received) == 1
    message, user_id = received[0]
    assert (message.method, message.args, message.request_id) == (
        "terminate_instance",
        {"instance_uuid": "u-1"},
        "req-itest",
    )
    assert user_id == amqp.user_from_url(settings.url)


def test_cast_to_a_topic_no_queue_takes_is_an_error(settings):
    publisher = amqp.Publisher(settings, sender="itest")
    with pytest.raises(amqp.PublishError, match="no queue takes"):
        publisher.cast(f"compute.nobody-{uuid.uuid4().hex[:8]}", "m", {}, "req-itest")
    publisher.close()


def test_unknown_major_version_is_dead_lettered_not_handled(settings, topic):
    before = _consumed(metrics.DEAD_LETTER)
    body = json.loads(envelope.Envelope(request_id="r", method="m", sender="future").to_json())
    body["version"] = "2.0"
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    connection.channel().basic_publish(settings.exchange, topic, json.dumps(body).encode())
    connection.close()
    handled: list[object] = []
    _consume(
        settings,
        topic,
        lambda m, user: handled.append(m),
        lambda: _consumed(metrics.DEAD_LETTER) > before,
    )
    assert handled == []
    assert _consumed(metrics.DEAD_LETTER) == before + 1


def test_failing_handler_gets_the_message_again(settings, topic):
    publisher = amqp.Publisher(settings, sender="itest")
    publisher.cast(topic, "terminate_instance", {"instance_uuid": "u-2"}, "req-itest")
    publisher.close()
    attempts: list[str] = []

    def flaky(message, user_id):
        attempts.append(message.message_id)
        if len(attempts) == 1:
            raise RuntimeError("the database is restarting")

    _consume(settings, topic, flaky, lambda: len(attempts) >= 2)
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]  # the same message, redelivered
