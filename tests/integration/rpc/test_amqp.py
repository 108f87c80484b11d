"""The pika adapter against the real RabbitMQ: confirms, mandatory routing, user_id, the
method's version, manual acknowledgement and dead-lettering."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import pika.exceptions
import prometheus_client
import pytest

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, envelope, metrics, payloads

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


def _consume(settings, topic, handler, until, timeout=10.0, workers=1):
    consumer = amqp.Consumer(settings, topic, handler, retry_delay_s=0.1, workers=workers)
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
    assert (message.method, message.args, message.request_id, message.version) == (
        "terminate_instance",
        {"instance_uuid": "u-1"},
        "req-itest",
        payloads.METHODS["terminate_instance"].version,
    )
    assert user_id == amqp.user_from_url(settings.url)


def test_cast_to_a_topic_no_queue_takes_is_an_error(settings):
    publisher = amqp.Publisher(settings, sender="itest")
    with pytest.raises(amqp.PublishError, match="no queue takes"):
        publisher.cast(
            f"compute.nobody-{uuid.uuid4().hex[:8]}",
            "terminate_instance",
            {"instance_uuid": "u-0"},
            "req-itest",
        )
    publisher.close()


@pytest.mark.parametrize(
    "version",
    ["2.0", "1.99"],
    ids=["unknown-major", "newer-minor-than-the-receiver"],
)
def test_a_version_the_receiver_does_not_implement_is_dead_lettered_not_handled(
    settings, topic, version
):
    before = _consumed(metrics.DEAD_LETTER)
    body = json.loads(envelope.Envelope(request_id="r", method="m", sender="future").to_json())
    body["version"] = version
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


def test_lanes_handle_in_parallel_but_keep_each_instances_order(settings, topic):
    publisher = amqp.Publisher(settings, sender="itest")
    instances = [f"i-{n}" for n in range(4)]
    for seq in range(10):
        for instance in instances:
            publisher.cast(topic, "instance_update", {"instance_uuid": instance, "seq": seq}, "r")
    publisher.close()
    seen: dict[str, list[int]] = {instance: [] for instance in instances}
    threads: set[int] = set()
    lock = threading.Lock()

    def handler(message, user_id):
        time.sleep(0.005)
        with lock:
            seen[message.args["instance_uuid"]].append(message.args["seq"])
            threads.add(threading.get_ident())

    _consume(
        settings,
        topic,
        handler,
        lambda: sum(map(len, seen.values())) == 40,
        workers=4,
    )
    assert all(order == list(range(10)) for order in seen.values()), seen
    assert len(threads) > 1
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    left = connection.channel().queue_declare(topic, passive=True).method.message_count
    connection.close()
    assert left == 0  # every message was acknowledged


def test_lane_retries_a_failing_message_in_place_before_the_next_one(settings, topic):
    publisher = amqp.Publisher(settings, sender="itest")
    for seq in range(3):
        publisher.cast(topic, "instance_update", {"instance_uuid": "i", "seq": seq}, "r")
    publisher.close()
    handled: list[int] = []
    failures = {0: 2}  # the first message fails twice, as during a database restart

    def handler(message, user_id):
        seq = message.args["seq"]
        if failures.get(seq):
            failures[seq] -= 1
            raise RuntimeError("the database is restarting")
        handled.append(seq)

    _consume(settings, topic, handler, lambda: len(handled) == 3, workers=2)
    assert handled == [0, 1, 2]


def test_an_out_of_turn_message_is_handled_while_its_instances_lane_is_busy(settings, topic):
    # A live migration holds its instance's lane for as long as it runs; its abort must not
    # wait behind it. Without out_of_turn the abort would be queued in the same lane.
    publisher = amqp.Publisher(settings, sender="itest")
    publisher.cast(topic, "live_migration", {"instance_uuid": "i"}, "r")
    publisher.cast(topic, "live_migration_abort", {"instance_uuid": "i"}, "r")
    publisher.close()
    abort = threading.Event()
    finished: list[str] = []

    def handler(message, user_id):
        if message.method == "live_migration_abort":
            abort.set()
        else:
            finished.append("aborted" if abort.wait(10) else "ran out its time")

    consumer = amqp.Consumer(
        settings, topic, handler, workers=2, out_of_turn=frozenset({"live_migration_abort"})
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not finished and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop()
    thread.join(timeout=5)
    assert finished == ["aborted"]


def test_stop_wakes_an_idle_consumer(settings, topic):
    # The loop waits for I/O without a timeout; stop() must wake it, not a timer.
    consumer = amqp.Consumer(settings, topic, lambda m, user: None)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    assert consumer.connected.wait(10), "the consumer did not connect"
    time.sleep(0.2)  # let it settle into waiting

    consumer.stop()
    thread.join(timeout=10)

    assert not thread.is_alive(), "stop() did not end an idle consumer's loop"
    assert not consumer.connected.is_set()
