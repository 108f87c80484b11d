import json

import pydantic
import pytest

from kubenova.rpc import envelope, payloads


def test_envelope_round_trips_through_json():
    message = envelope.Envelope(
        request_id="req-1", method="terminate_instance", args={"instance_uuid": "u"}, sender="op"
    )
    again = envelope.Envelope.from_json(message.to_json())
    assert again == message
    assert again.version == envelope.VERSION


def test_newer_minor_of_a_known_major_is_accepted():
    message = envelope.Envelope(request_id="r", method="m", sender="s", version="1.7")
    message.check_version()


def test_unknown_major_is_refused():
    message = envelope.Envelope(request_id="r", method="m", sender="s", version="2.0")
    with pytest.raises(envelope.UnsupportedVersion, match=r"version 2\.0"):
        message.check_version()


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
