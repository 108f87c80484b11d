"""The InstanceSnapshot handler: which objects reach it, what it hands the conductor, and that
a passing failure is tried again."""

from __future__ import annotations

import asyncio
import types

import pytest

from kubenova.api import snapshot_handlers
from kubenova.conductor.snapshots import SnapshotRequest


def _body(status=None, **meta):
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "InstanceSnapshot",
        "metadata": {
            "name": "web-img",
            "namespace": "prod",
            "uid": "5a5a5a5a-0000-4000-8000-000000000001",
            "generation": 1,
            **meta,
        },
        "spec": {"instance": "web-1", "imageName": "web-img"},
        "status": status or {},
    }


@pytest.mark.parametrize(
    ("event", "body", "reaches"),
    [
        ({"type": "ADDED"}, _body(), True),
        ({"type": None}, _body(), True),  # kopf's initial listing
        ({"type": "MODIFIED"}, _body({"phase": "InProgress"}), False),
        ({"type": "MODIFIED"}, _body({"phase": "Failed"}), False),
        ({"type": "DELETED"}, _body(), False),
        ({"type": "MODIFIED"}, _body(deletionTimestamp="2026-12-06T10:00:00Z"), False),
    ],
)
def test_only_an_object_not_started_yet_reaches_the_handler(event, body, reaches):
    assert snapshot_handlers._not_started(event=event, body=body) is reaches


class _Snapshots:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[SnapshotRequest] = []

    def create(self, request: SnapshotRequest) -> None:
        self.requests.append(request)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database restarts")


def _run(snapshots: _Snapshots) -> None:
    runtime = types.SimpleNamespace(conductor=types.SimpleNamespace(snapshots=snapshots))
    asyncio.run(
        snapshot_handlers.instance_snapshot_created(body=_body(), memo={"runtime": runtime})
    )


def test_the_handler_hands_the_request_to_the_conductor(monkeypatch):
    snapshots = _Snapshots(failures=0)
    _run(snapshots)
    [request] = snapshots.requests
    assert (request.namespace, request.name, request.instance, request.image_name) == (
        "prod",
        "web-img",
        "web-1",
        "web-img",
    )
    assert request.request_id == "req-5a5a5a5a-0000-4000-8000-000000000001"


def test_a_passing_failure_is_tried_again_and_a_lasting_one_raised(monkeypatch):
    monkeypatch.setattr(snapshot_handlers, "RETRY_DELAYS_S", (0.0, 0.0))
    passing = _Snapshots(failures=2)
    _run(passing)
    assert len(passing.requests) == 3

    lasting = _Snapshots(failures=5)
    with pytest.raises(ConnectionError):
        _run(lasting)
    assert len(lasting.requests) == 3
