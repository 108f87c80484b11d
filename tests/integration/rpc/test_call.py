"""Calls against the real RabbitMQ: a real Consumer answers through direct reply-to, a
failing handler is answered with its failure once, and a host that nobody consumes for
times out with an error naming it and keeps no request behind."""

from __future__ import annotations

import os
import pathlib
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, call, compute_rpcapi, envelope

pytestmark = pytest.mark.integration

UUID = "5b0c1d7e-0000-4000-8000-000000000001"


@pytest.fixture
def settings() -> MessagingSettings:
    settings = MessagingSettings.from_env()
    try:
        amqp.declare_topology(settings)
    except (amqp.PublishError, OSError, pika.exceptions.AMQPError) as exc:
        pytest.fail(f"RabbitMQ is not reachable ({exc}): start it with hack/services.sh up")
    return settings


@pytest.fixture
def host(settings: MessagingSettings) -> Iterator[str]:
    """A host of this test's own whose queue exists (bound like an agent's); deleted after."""
    name = f"itest-clog-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    amqp.declare_queue(connection.channel(), settings, settings.compute_topic(name))
    yield name
    connection.channel().queue_delete(settings.compute_topic(name))
    connection.close()


def waiting(settings: MessagingSettings, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def consuming(
    settings: MessagingSettings,
    host: str,
    handler: Callable[[envelope.Envelope, str | None], object],
    workers: int = 1,
    out_of_turn: frozenset[str] = frozenset(),
) -> Callable[[], None]:
    """Start a real Consumer of the host's queue; returns what stops it."""
    consumer = amqp.Consumer(
        settings,
        settings.compute_topic(host),
        handler,
        retry_delay_s=0.1,
        workers=workers,
        out_of_turn=out_of_turn,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    assert consumer.connected.wait(10), "the consumer did not connect"

    def stop() -> None:
        consumer.stop()
        thread.join(timeout=10)

    return stop


def compute(settings: MessagingSettings) -> compute_rpcapi.ComputeAPI:
    return compute_rpcapi.ComputeAPI(caller=call.Caller(settings, sender="itest-caller"))


@pytest.mark.parametrize("workers", [1, 3])
def test_a_call_is_answered_by_a_real_consumer_with_what_its_handler_returned(
    settings, host, workers
) -> None:
    received: list[tuple[envelope.Envelope, str | None]] = []

    def handler(message: envelope.Envelope, user_id: str | None) -> object:
        received.append((message, user_id))
        return {"output": f"{message.args['tail_lines']} lines of {message.args['instance_uuid']}"}

    stop = consuming(settings, host, handler, workers, frozenset({"get_console_output"}))
    try:
        output = compute(settings).get_console_output(
            host, UUID, 5, request_id="req-itest-call", timeout_s=10
        )
    finally:
        stop()

    assert output == f"5 lines of {UUID}"
    [(message, user_id)] = received
    assert (message.method, message.version, message.request_id, message.sender) == (
        "get_console_output",
        "1.7",
        "req-itest-call",
        "itest-caller",
    )
    assert user_id == amqp.user_from_url(settings.url)
    assert waiting(settings, settings.compute_topic(host)) == 0


def test_calls_from_threads_each_get_their_own_answer(settings, host) -> None:
    def handler(message: envelope.Envelope, user_id: str | None) -> object:
        return {"output": str(message.args["tail_lines"])}

    stop = consuming(settings, host, handler, workers=2)
    answers: dict[int, str] = {}

    def ask(n: int) -> None:
        answers[n] = compute(settings).get_console_output(
            host, UUID, n, request_id=f"req-{n}", timeout_s=10
        )

    try:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        stop()

    assert answers == {n: str(n) for n in range(6)}


def test_a_failing_handler_is_answered_with_its_failure_once_and_not_retried(
    settings, host
) -> None:
    calls: list[str] = []

    class InstanceNotFound(Exception):
        pass

    def handler(message: envelope.Envelope, user_id: str | None) -> object:
        calls.append(message.message_id)
        raise InstanceNotFound(f"instance {UUID} is not on this host")

    stop = consuming(settings, host, handler)
    try:
        with pytest.raises(call.RemoteError) as failed:
            compute(settings).get_console_output(host, UUID, 5, request_id="req-f", timeout_s=10)
        time.sleep(1.0)  # long enough for a requeued message to come round again
    finally:
        stop()

    assert (failed.value.type, failed.value.host) == ("InstanceNotFound", host)
    assert failed.value.message == f"instance {UUID} is not on this host"
    assert len(calls) == 1
    assert waiting(settings, settings.compute_topic(host)) == 0


def test_a_host_nobody_consumes_for_times_out_naming_it_and_keeps_no_request(
    settings, host
) -> None:
    started = time.monotonic()

    with pytest.raises(call.CallTimeout) as timed_out:
        compute(settings).get_console_output(host, UUID, 5, request_id="req-t", timeout_s=1.5)

    assert 1.5 <= time.monotonic() - started < 5
    assert str(timed_out.value) == f"host {host} did not answer get_console_output within 1.5 s"
    # The request expired with the caller's patience: an agent starting now finds nothing.
    deadline = time.monotonic() + 5
    while waiting(settings, settings.compute_topic(host)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert waiting(settings, settings.compute_topic(host)) == 0
    ran: list[Any] = []
    stop = consuming(settings, host, lambda message, user: ran.append(message))
    time.sleep(1.0)
    stop()
    assert ran == []


def test_a_host_without_a_queue_is_unreachable_at_once(settings) -> None:
    host = f"itest-clog-absent-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()

    with pytest.raises(call.Unreachable) as unreachable:
        compute(settings).get_console_output(host, UUID, 5, request_id="req-u", timeout_s=10)

    assert time.monotonic() - started < 5
    assert f"could not ask host {host} for get_console_output" in str(unreachable.value)


def test_a_cast_whose_handler_returns_something_is_acknowledged_as_before(settings, host) -> None:
    """A cast carries no reply_to: what its handler returns goes nowhere."""
    handled = threading.Event()

    def handler(message: envelope.Envelope, user_id: str | None) -> object:
        handled.set()
        return {"ignored": True}

    stop = consuming(settings, host, handler)
    try:
        publisher = amqp.Publisher(settings, sender="itest")
        publisher.cast(
            settings.compute_topic(host), "terminate_instance", {"instance_uuid": UUID}, "req-c"
        )
        publisher.close()
        assert handled.wait(10)
    finally:
        stop()
    assert waiting(settings, settings.compute_topic(host)) == 0


@pytest.fixture
def agent_user_host(settings) -> Iterator[tuple[str, str]]:
    """A host whose RabbitMQ user is the one hack/rabbitmq-agent-user.sh makes for an agent
    (its own queue only); yields (host, the agent's AMQP URL). Needs root, as the script."""
    host = f"itest-clog-{uuid.uuid4().hex[:8]}"
    script = pathlib.Path(__file__).resolve().parents[3] / "hack" / "rabbitmq-agent-user.sh"
    made = subprocess.run([str(script), host], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    state = pathlib.Path(os.environ.get("KUBENOVA_STATE") or script.parents[1] / ".kubenova")
    try:
        yield host, (state / "agents" / f"{host}.amqp-url").read_text().strip()
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(settings.url))
        connection.channel().queue_delete(settings.compute_topic(host))
        connection.close()
        subprocess.run([str(script), "--delete", host], capture_output=True, check=False)


def test_an_agents_own_user_answers_the_calls_made_to_its_host(settings, agent_user_host) -> None:
    """The user hack/rabbitmq-agent-user.sh makes for an agent (its own queue only) may
    publish the answer: its topic permissions allow routing keys under its host's reply
    prefix on the exchange. A cast still arrives after the call."""
    host, agent_url = agent_user_host
    agent_settings = MessagingSettings.from_env(agent_url)
    handled: list[str] = []

    def handler(message: envelope.Envelope, user_id: str | None) -> object:
        handled.append(message.method)
        return {"output": f"log of {message.args['instance_uuid']}"}

    consumer = amqp.Consumer(
        agent_settings, settings.compute_topic(host), handler, declare_own_queue=True
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        assert consumer.connected.wait(10)
        answer = compute(settings).get_console_output(
            host, UUID, 5, request_id="req-a", timeout_s=10
        )
        publisher = amqp.Publisher(settings, sender="itest")
        publisher.cast(
            settings.compute_topic(host), "terminate_instance", {"instance_uuid": UUID}, "req-b"
        )
        publisher.close()
        deadline = time.monotonic() + 10
        while len(handled) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
        thread.join(timeout=10)

    assert answer == f"log of {UUID}"
    assert handled == ["get_console_output", "terminate_instance"]


@pytest.mark.parametrize(
    ("routing_key", "allowed"),
    [
        ("reply.compute.{host}.1234", True),
        ("reply.compute.{host}-other.1234", False),
        ("reply.compute.another-host.1234", False),
        ("compute.another-host", False),
    ],
)
def test_an_agents_user_may_answer_only_as_its_own_host(
    settings, agent_user_host, routing_key: str, allowed: bool
) -> None:
    """An agent cannot forge the answer to a call made to another host, nor reach another
    host's queue through the exchange."""
    host, agent_url = agent_user_host
    connection = pika.BlockingConnection(pika.URLParameters(agent_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        refusal: pika.exceptions.ChannelClosedByBroker | None = None
        try:
            channel.basic_publish(
                settings.exchange, routing_key.format(host=host), b"{}", pika.BasicProperties()
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            refusal = exc
    finally:
        if connection.is_open:
            connection.close()
    assert (refusal is None) is allowed, refusal
    if refusal is not None:
        assert refusal.reply_code == 403
