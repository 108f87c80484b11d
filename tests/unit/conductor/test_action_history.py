"""The action history writer: the newest view of an action wins, and views wait for a quiet
moment (or their maximum delay) so that a burst's history does not compete with its
statuses; an action whose namespace is being deleted is dropped, as one whose namespace is
gone."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import types
from typing import Any

import pytest

from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.k8s import client
from kubenova.k8s.client import KubeClient


class Recorder:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []
        self.event = threading.Event()

    def apply_instance_action(self, namespace: str, body: dict[str, Any]) -> bool:
        self.written.append(body)
        self.event.set()
        return True


def _view(result: str, request_id: str = "req-1") -> ActionView:
    start = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)
    return ActionView(
        instance_uuid="6f1c1d9e-0000-4000-8000-000000000001",
        namespace="default",
        instance_name="web-1",
        action="stop",
        request_id=request_id,
        start_time=start,
        finish_time=None if result == "InProgress" else start + dt.timedelta(seconds=2),
        result=result,
        message=None,
    )


def test_the_newest_view_of_an_action_replaces_one_not_yet_written() -> None:
    kube = Recorder()
    history = ActionHistory(kube)  # type: ignore[arg-type]
    history.record(_view("InProgress"))
    history.record(_view("Success"))
    history.record(_view("InProgress", request_id="req-2"))
    history.flush()
    assert [(body["requestId"], body["result"]) for body in kube.written] == [
        ("req-1", "Success"),
        ("req-2", "InProgress"),
    ]
    assert kube.written[0]["metadata"]["name"].startswith("web-1-stop-")


def test_views_wait_while_others_keep_arriving_then_are_written() -> None:
    kube = Recorder()
    history = ActionHistory(kube, quiet_s=0.3, max_delay_s=30)  # type: ignore[arg-type]
    history.start()
    try:
        for index in range(5):
            history.record(_view("Success", request_id=f"req-{index}"))
            time.sleep(0.1)
        assert kube.written == []  # still arriving: nothing written yet
        assert kube.event.wait(5)
        deadline = time.monotonic() + 5
        while len(kube.written) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(kube.written) == 5
    finally:
        history.stop()


def test_a_view_waits_no_longer_than_its_maximum_delay() -> None:
    kube = Recorder()
    history = ActionHistory(kube, quiet_s=60, max_delay_s=0.2)  # type: ignore[arg-type]
    history.start()
    try:
        history.record(_view("Success"))
        assert kube.event.wait(5)
    finally:
        history.stop()


def test_a_view_in_progress_never_replaces_the_end_of_its_action() -> None:
    kube = Recorder()
    history = ActionHistory(kube)  # type: ignore[arg-type]
    history.record(_view("Success"))
    history.record(_view("InProgress"))
    history.flush()
    assert [body["result"] for body in kube.written] == ["Success"]


def test_an_actions_object_name_is_lower_case_as_kubernetes_wants_it() -> None:
    view = ActionView(
        instance_uuid="u" * 36, namespace="ns", instance_name="web-1", action="createImage",
        request_id="req-1", start_time=None, finish_time=None, result="InProgress", message=None,
    )  # fmt: skip

    name = view.object_name

    assert name.startswith("web-1-createimage-")
    assert name == name.lower()


class Apiserver:
    """The generated client's two calls the writer's KubeClient makes, answering every request
    with ``status`` and the Status ``answer``; records (method, path) of each."""

    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        self.status = status
        self.answer = answer
        self.requests: list[tuple[str, str]] = []

    def param_serialize(self, *, method: str, resource_path: str, **_: Any) -> tuple[Any, ...]:
        return (method, resource_path)

    def call_api(self, method: str, path: str) -> Any:
        self.requests.append((method, path))
        data = json.dumps(self.answer).encode()
        return types.SimpleNamespace(
            status=self.status, reason="Forbidden", data=data, headers={}, read=lambda: data
        )


def _forbidden(message: str, causes: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": {"name": "web-1-stop-0", "kind": "instanceactions", "causes": causes},
        "code": 403,
    }


# What the apiserver's NamespaceLifecycle admission answers a create in a namespace being
# deleted.
TERMINATING = _forbidden(
    'instanceactions.compute.kubenova.io "web-1-stop-0" is forbidden: unable to create new '
    "content in namespace default because it is being terminated",
    [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace default is being terminated",
            "field": "metadata.namespace",
        }
    ],
)


def test_an_action_in_a_namespace_being_deleted_is_dropped_as_in_one_that_is_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    apiserver = Apiserver(403, TERMINATING)
    history = ActionHistory(KubeClient(apiserver))  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING):
        history.record(_view("Success"))
        history.flush()

    assert [method for method, _ in apiserver.requests] == ["POST"]  # not tried again
    assert caplog.records == []
    assert history.pending() == 0


def test_a_create_forbidden_for_another_reason_is_tried_again_then_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rbac = _forbidden(
        'instanceactions.compute.kubenova.io is forbidden: User "system:serviceaccount:'
        'kubenova:operator" cannot create resource "instanceactions"',
        [],
    )
    apiserver = Apiserver(403, rbac)
    history = ActionHistory(KubeClient(apiserver))  # type: ignore[arg-type]

    history.record(_view("Success"))
    history.flush()

    assert [method for method, _ in apiserver.requests] == ["POST"] * 3
    assert [record.levelno for record in caplog.records] == [logging.ERROR]


@pytest.mark.parametrize(
    ("status", "reply", "terminating"),
    [
        (403, json.dumps(TERMINATING).encode(), True),
        # The cause alone, or the message alone, says it.
        (403, json.dumps({**TERMINATING, "message": "forbidden"}).encode(), True),
        (403, json.dumps({**TERMINATING, "details": {}}).encode(), True),
        (403, json.dumps(_forbidden("cannot create resource", [])).encode(), False),
        (403, b"<html>forbidden</html>", False),
        (404, json.dumps(TERMINATING).encode(), False),
    ],
)
def test_a_namespace_being_terminated_is_told_from_other_refusals(
    status: int, reply: bytes, terminating: bool
) -> None:
    assert client.namespace_terminating(status, reply) is terminating
