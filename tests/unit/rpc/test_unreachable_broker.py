"""A broker that accepts the connection but never finishes the AMQP handshake: pika times the
handshake out with an error of its connection workflow, which connect() turns into an
AMQPConnectionError, so a consumer keeps trying rather than losing its thread, and a publish
fails with a PublishError. The "broker" is a real socket on this machine."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pika.exceptions
import pytest

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port whose listener accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def _settings(port: int) -> MessagingSettings:
    return MessagingSettings(url=f"amqp://u:p@127.0.0.1:{port}/%2F?stack_timeout=0.5")


def test_a_handshake_that_times_out_is_a_connection_error(silent_broker: int) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError, match="AMQPConnectorStackTimeout"):
        amqp.connect(_settings(silent_broker))


def test_a_consumer_keeps_trying_a_broker_that_does_not_answer(
    silent_broker: int, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = amqp.Consumer(
        _settings(silent_broker), "compute.h1", lambda message, user: None, retry_delay_s=0.1
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and caplog.text.count("lost the broker") < 2:
        time.sleep(0.1)

    assert thread.is_alive()
    assert caplog.text.count("consumer of compute.h1 lost the broker") >= 2
    consumer.stop()
    thread.join(timeout=20)
    assert not thread.is_alive()


def test_a_publish_to_a_broker_that_does_not_answer_is_a_publish_error(
    silent_broker: int,
) -> None:
    publisher = amqp.Publisher(_settings(silent_broker), sender="test")
    with pytest.raises(amqp.PublishError, match="could not publish"):
        publisher.cast("conductor", "instance_update", {}, "req-1")
