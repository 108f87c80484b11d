"""The action history writer: the newest view of an action wins, and views wait for a quiet
moment (or their maximum delay) so that a burst's history does not compete with its
statuses."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from kubenova.conductor.action_history import ActionHistory, ActionView


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
