"""No request crashes the EC2 server: seeded random requests, signed and unsigned, against the
server in process over the fake cluster.

Three kinds, each from its own seed so that a failure names a request that can be made again:

- bodies of random bytes with random headers, unsigned;
- requests signed as boto3 signs them (SigV4, a good key) for an action drawn from botocore's
  EC2 model, with parameters drawn from that action's input members (and names of no member),
  holding hostile values: XML and shell metacharacters, Unicode, control characters, huge and
  empty strings, numbers where text goes and text where numbers go, list indexes out of order;
- good signed requests with one byte of the signature, the body or a signed header changed.

Every answer must be an EC2 error document or a success, never a server error (5xx), and the
server must still answer a well-formed request afterwards.
"""

from __future__ import annotations

import http.client
import random
import urllib.parse
import xml.etree.ElementTree as ElementTree
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.unit.ec2 import fakes, serving

CASES = 150
VERSION = "2016-11-15"
_MODEL = botocore.session.get_session().get_service_model("ec2")
_ACTIONS = sorted(_MODEL.operation_names)
# What the fake cluster holds, and a few of EC2's own, so that some requests reach real work.
_SERVED = [
    "RunInstances",
    "DescribeInstances",
    "TerminateInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "GetConsoleOutput",
    "DescribeInstanceStatus",
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    "CreateTags",
    "DeleteTags",
    "DescribeTags",
    "DescribeImages",
    "CreateImage",
    "DescribeInstanceTypes",
    "DescribeAvailabilityZones",
    "DescribeRegions",
    "ModifyInstanceAttribute",
    "DescribeInstanceAttribute",
]
_HOSTILE = [
    "",
    " ",
    "<xml>&amp;</xml>",
    "]]><!--",
    "'; DROP TABLE instances; --",
    "$(reboot)",
    "`id`",
    "a\x00b",
    "\r\n\r\nX-Injected: 1",
    "i-0123456789abcdef0",
    "i-zzzzzzzzzzzzzzzzz",
    "ami-00000000000000000",
    "key-0123456789abcdef0",
    "*",
    "\\",
    "-1",
    "0",
    "99999999999999999999999",
    "1e308",
    "NaN",
    "true",
    "ümlaut 日本語 🚀",
    "\u202e",
    "x" * 5000,
    "%00%ff",
]


def _value(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(_HOSTILE)
    return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(0, 40)))


def _member_names(shape: Any, prefix: str, depth: int, rng: random.Random) -> list[str]:
    """Query-protocol names for ``shape``'s members: ``Name``, ``Name.1``, ``Name.1.Sub``."""
    names: list[str] = []
    if depth > 3 or shape is None:
        return names
    if shape.type_name == "structure":
        for member_name, member in shape.members.items():
            serialized = member.serialization.get("name") or member_name
            names.append(f"{prefix}{serialized}")
            names += _member_names(member, f"{prefix}{serialized}.", depth + 1, rng)
    elif shape.type_name == "list":
        index = rng.choice(["1", "2", "0", "-1", "999", "x"])
        inner = shape.member
        names.append(f"{prefix}{index}")
        names += _member_names(inner, f"{prefix}{index}.", depth + 1, rng)
    return names


def _signed(endpoint: str, params: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    key = serving.TEAM_A
    SigV4Auth(
        Credentials(key.access_key_id, key.secret_access_key), "ec2", serving.REGION
    ).add_auth(request)
    prepared = request.prepare()
    return bytes(prepared.body or b""), dict(prepared.headers)


def _random_action(rng: random.Random) -> list[tuple[str, str]]:
    action = rng.choice(_SERVED) if rng.random() < 0.8 else rng.choice(_ACTIONS)
    params = [("Action", action), ("Version", VERSION)]
    operation = _MODEL.operation_model(action) if action in _ACTIONS else None
    members = _member_names(operation.input_shape if operation else None, "", 0, rng)
    for _ in range(rng.randrange(0, 8)):
        if members and rng.random() < 0.85:
            name = rng.choice(members)
        else:
            name = _value(rng)[:30] or "Unknown"
        params.append((name, _value(rng)))
    return params


def _send(endpoint: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=30)
    try:
        connection.putrequest("POST", "/", skip_accept_encoding=True)
        for name, value in headers.items():
            if name.lower() == "content-length":
                continue
            # A line break or NUL cannot be sent in a header at all (http.client refuses it,
            # as an HTTP parser would split there): the rest of the value is kept.
            sendable = "".join(" " if char in "\r\n\x00" else char for char in value)
            connection.putheader(name, sendable.encode("latin-1", "replace"))
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def _check(status: int, answer: bytes, what: str) -> None:
    assert status < 500, f"{what}: HTTP {status}: {answer[:300]!r}"
    root = ElementTree.fromstring(answer)  # every answer is an XML document
    if status >= 400:
        code = root.find("./Errors/Error/Code")
        assert code is not None, f"{what}: no EC2 error code in {answer[:300]!r}"
        assert code.text, f"{what}: an empty EC2 error code in {answer[:300]!r}"


@pytest.fixture(scope="module")
def endpoint():
    objects = fakes.FakeCluster()
    objects.add_instance("team-a", "web-1")
    with serving.served(objects) as url:
        yield url


@pytest.mark.parametrize("seed", range(CASES))
def test_random_bytes_unsigned(endpoint, seed):
    rng = random.Random(f"bytes-{seed}")
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
    headers = {
        rng.choice(["Authorization", "X-Amz-Date", "Content-Type", "X-Amz-Content-Sha256", "Host"]):
        _value(rng)
        for _ in range(rng.randrange(0, 4))
    }  # fmt: skip
    status, answer = _send(endpoint, body, headers)
    _check(status, answer, f"bytes-{seed}")


@pytest.mark.parametrize("seed", range(CASES))
def test_signed_requests_with_hostile_parameters(endpoint, seed):
    rng = random.Random(f"signed-{seed}")
    params = _random_action(rng)
    body, headers = _signed(endpoint, params)
    status, answer = _send(endpoint, body, headers)
    _check(status, answer, f"signed-{seed} {params[:4]!r}")


@pytest.mark.parametrize("seed", range(CASES))
def test_signed_requests_changed_by_one_byte_are_refused(endpoint, seed):
    rng = random.Random(f"tampered-{seed}")
    original = _signed(endpoint, [("Action", "DescribeInstances"), ("Version", VERSION)])
    body, headers = original[0], dict(original[1])
    where = rng.choice(["signature", "body", "date"])
    if where == "body":
        index = rng.randrange(len(body))
        body = (
            body[:index] + bytes([(body[index] + rng.randrange(1, 255)) % 256]) + body[index + 1 :]
        )
    elif where == "signature":
        authorization = headers["Authorization"]
        index = rng.randrange(len(authorization))
        changed = chr((ord(authorization[index]) + rng.randrange(1, 94) - 32) % 94 + 32)
        headers["Authorization"] = authorization[:index] + changed + authorization[index + 1 :]
    else:
        date = headers["X-Amz-Date"]
        index = rng.randrange(len(date))
        old = date[index]
        new = str((int(old) + rng.randrange(1, 10)) % 10) if old.isdigit() else "0"
        headers["X-Amz-Date"] = date[:index] + new + date[index + 1 :]
    if (body, headers) == original:
        pytest.skip("the change left the request as it was")
    status, answer = _send(endpoint, body, headers)
    _check(status, answer, f"tampered-{seed} ({where})")
    # A changed byte never authenticates (a changed body may still be a readable request, but
    # its signature no longer matches).
    assert status in (400, 401, 403), f"tampered-{seed} ({where}) was accepted"


def test_the_server_still_serves_after_the_fuzz(endpoint):
    for seed in range(40):
        rng = random.Random(f"after-{seed}")
        body, headers = _signed(endpoint, _random_action(rng))
        _send(endpoint, body, headers)
    with serving.client(endpoint) as ec2:
        assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == [serving.REGION]
