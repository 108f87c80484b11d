"""The Instance delete handler waits for the conductor's notice that the record is gone instead
of asking again every second, and falls back to kopf's retry when no notice comes."""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any

import kopf
import pytest

from kubenova.api import gone_notices, handlers

UID = "5a5a5a5a-0000-4000-8000-000000000001"


def _body() -> dict[str, Any]:
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Instance",
        "metadata": {
            "name": "web-1",
            "namespace": "prod",
            "uid": UID,
            "generation": 1,
            "deletionTimestamp": "2026-12-07T10:00:00Z",
        },
        "spec": {"flavor": "m1.small", "image": "tiny"},
        "status": {"phase": "Running"},
    }


class _Instances:
    """The conductor's delete as the handler sees it: False until the host reported back."""

    def __init__(self, gone: gone_notices.GoneNotices, report_after_s: float | None) -> None:
        self.gone = gone
        self.report_after_s = report_after_s
        self.calls = 0
        self.record_gone = threading.Event()

    def delete(self, request: Any, request_id: str) -> bool:
        self.calls += 1
        if self.record_gone.is_set():
            return True
        if self.calls == 1 and self.report_after_s is not None:
            # The host's report, handled on a conductor thread a little later.
            timer = threading.Timer(self.report_after_s, self._reported, args=(request.uid,))
            timer.start()
        return False

    def _reported(self, uid: str) -> None:
        self.record_gone.set()
        self.gone.gone(uid)


def _delete(instances: _Instances, gone: gone_notices.GoneNotices) -> None:
    runtime = types.SimpleNamespace(instances=instances, gone=gone)
    asyncio.run(handlers.delete_instance(body=_body(), memo={"runtime": runtime}))


def test_the_handler_returns_once_the_conductor_says_the_record_is_gone(monkeypatch):
    monkeypatch.setattr(handlers, "GONE_WAIT_S", 10.0)
    gone = gone_notices.GoneNotices()
    instances = _Instances(gone, report_after_s=0.05)
    _delete(instances, gone)
    # The terminate, then one look after the notice: no polling in between.
    assert instances.calls == 2
    assert gone.waiting() == 0


def test_without_a_notice_kopf_is_asked_to_try_again(monkeypatch):
    monkeypatch.setattr(handlers, "GONE_WAIT_S", 0.05)
    gone = gone_notices.GoneNotices()
    instances = _Instances(gone, report_after_s=None)
    with pytest.raises(kopf.TemporaryError, match="waiting for the host"):
        _delete(instances, gone)
    assert instances.calls == 1
    assert gone.waiting() == 0


def test_a_record_already_gone_needs_no_wait(monkeypatch):
    monkeypatch.setattr(handlers, "GONE_WAIT_S", 10.0)
    gone = gone_notices.GoneNotices()
    instances = _Instances(gone, report_after_s=None)
    instances.record_gone.set()
    _delete(instances, gone)
    assert instances.calls == 1


def test_a_notice_given_before_the_wait_begins_is_not_missed():
    gone = gone_notices.GoneNotices()

    async def scenario() -> bool:
        with gone.expect(UID) as notice:
            # Between the handler's look at the record and its wait.
            gone.gone(UID)
            await asyncio.sleep(0)
            return await notice.wait(0.5)

    assert asyncio.run(scenario()) is True
    assert gone.waiting() == 0


def test_a_notice_for_another_instance_wakes_nobody_else():
    gone = gone_notices.GoneNotices()

    async def scenario() -> bool:
        with gone.expect(UID) as notice:
            gone.gone("another-uid")
            return await notice.wait(0.05)

    assert asyncio.run(scenario()) is False


def test_every_handler_waiting_for_one_instance_is_woken():
    gone = gone_notices.GoneNotices()

    async def scenario() -> list[bool]:
        with gone.expect(UID) as first, gone.expect(UID) as second:
            assert gone.waiting() == 1
            threading.Timer(0.02, gone.gone, args=(UID,)).start()
            return list(await asyncio.gather(first.wait(2), second.wait(2)))

    assert asyncio.run(scenario()) == [True, True]
