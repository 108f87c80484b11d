import json
import re

import pydantic
import pytest

from kubenova.config import MessagingSettings
from kubenova.rpc import amqp, envelope, payloads


def test_envelope_round_trips_through_json():
    message = envelope.Envelope(
        request_id="req-1", method="terminate_instance", args={"instance_uuid": "u"}, sender="op"
    )
    again = envelope.Envelope.from_json(message.to_json())
    assert again == message
    assert again.version == envelope.VERSION


@pytest.mark.parametrize("version", ["1.0", envelope.VERSION])
def test_a_version_up_to_the_receivers_own_is_accepted(version):
    # 1.0: a service_stopping from an agent of before 1.1, which sent it as 1.0.
    message = envelope.Envelope(
        request_id="r", method="service_stopping", sender="s", version=version
    )
    message.check_version()


def test_a_newer_minor_than_the_receiver_implements_is_refused():
    # It may carry a method or an argument this receiver does not know.
    message = envelope.Envelope(request_id="r", method="m", sender="s", version="1.99")
    up_to = re.escape(envelope.VERSION)
    with pytest.raises(
        envelope.UnsupportedVersion, match=rf"\(m\) has version 1\.99; .* up to {up_to}$"
    ):
        message.check_version()


def test_versions_order_by_number_not_text():
    assert envelope.parse_version("1.10") > envelope.parse_version("1.9")


def test_unknown_major_is_refused():
    message = envelope.Envelope(request_id="r", method="m", sender="s", version="2.0")
    with pytest.raises(envelope.UnsupportedVersion, match=r"version 2\.0"):
        message.check_version()


def test_publisher_sends_each_methods_own_version(monkeypatch):
    sent = []

    class Channel:
        def confirm_delivery(self):
            pass

        def basic_publish(self, exchange, topic, body, properties, mandatory):
            sent.append((envelope.Envelope.from_json(body), properties.headers))

    class Connection:
        is_closed = False
        is_open = False

        def channel(self):
            return Channel()

    monkeypatch.setattr(amqp, "connect", lambda settings: Connection())
    publisher = amqp.Publisher(MessagingSettings(), sender="s")
    publisher.cast("conductor", "service_stopping", {"host": "h1"}, "r")
    publisher.cast("compute.h1", "terminate_instance", {"instance_uuid": "u"}, "r")
    stopping, terminate = (
        payloads.METHODS[m].version for m in ("service_stopping", "terminate_instance")
    )
    assert [(m.method, m.version, headers) for m, headers in sent] == [
        ("service_stopping", stopping, {"version": stopping}),
        ("terminate_instance", terminate, {"version": terminate}),
    ]
    assert stopping != terminate  # each its own, not the contract's


def test_publisher_refuses_a_method_outside_the_contract():
    publisher = amqp.Publisher(MessagingSettings(), sender="s")
    with pytest.raises(ValueError, match="'drop_tables' is not a method of the contract"):
        publisher.cast("conductor", "drop_tables", {}, "r")


def test_envelope_refuses_unknown_fields():
    body = json.loads(envelope.Envelope(request_id="r", method="m", sender="s").to_json())
    body["surprise"] = True
    with pytest.raises(pydantic.ValidationError, match="surprise"):
        envelope.Envelope.from_json(json.dumps(body).encode())


def test_instance_payload_refuses_user_data_over_64_kib():
    image = payloads.ImagePayload(
        name="i", url="http://127.0.0.1/i", sha256="0" * 64, disk_format="qcow2"
    )
    with pytest.raises(pydantic.ValidationError, match="user_data"):
        payloads.InstancePayload(
            uuid="0" * 36,
            name="n",
            namespace="ns",
            hostname="n",
            vcpus=1,
            memory_mib=128,
            disk_gib=1,
            image=image,
            user_data="x" * (64 * 1024 + 1),
        )
