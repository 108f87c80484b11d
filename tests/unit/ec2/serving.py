"""The EC2 API served over HTTP in this process on a FakeCluster, and boto3 clients of it: what
the tests of key pairs and tags drive, as a user's script would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kubenova.ec2 import cmd, keys, server, settings, terminated
from tests.unit.ec2 import fakes

REGION = "kubenova"
TEAM_A = keys.AccessKey("AKIAAAAAAAAAAAAAAAAA", "secret-a", "team-a")
TEAM_B = keys.AccessKey("AKIABBBBBBBBBBBBBBBB", "secret-b", "team-b")
KEYS = {key.access_key_id: key for key in (TEAM_A, TEAM_B)}


@contextlib.contextmanager
def served(
    objects: fakes.FakeCluster, terminated_instances: terminated.RecentlyTerminated | None = None
) -> Iterator[str]:
    """The server's URL while it serves ``objects`` (and, given, the terminated instances of
    a database)."""
    config = settings.Ec2Settings(listen_host="127.0.0.1", listen_port=0, region=REGION)
    serving = cmd.build_server(config, KEYS.get, objects, terminated_instances)
    server.serve_in_thread(serving)
    try:
        yield f"http://127.0.0.1:{serving.server_address[1]}"
    finally:
        serving.shutdown()
        serving.server_close()


@contextlib.contextmanager
def client(endpoint: str, key: keys.AccessKey = TEAM_A) -> Iterator[Any]:
    ec2 = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        yield ec2
    finally:
        ec2.close()


def code(call: Any, *args: Any, **kwargs: Any) -> str:
    """The EC2 error code ``call`` is refused with."""
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return str(refused.value.response["Error"]["Code"])
