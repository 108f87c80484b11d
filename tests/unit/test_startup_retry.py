"""What kopf's startup handler does may fail halfway (RabbitMQ still starting) and run again in
the same process: the metrics server is bound once, and a Node watch's own error is raised as
the API error it stands for, not taken for a Node."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client

from kubenova.api import runtime
from kubenova.k8s import nodes


def test_the_metrics_server_is_started_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[int, str]] = []
    monkeypatch.setattr(runtime, "_metrics_served", None)
    monkeypatch.setattr(
        runtime.prometheus_client,
        "start_http_server",
        lambda port, addr: started.append((port, addr)),
    )
    runtime.serve_metrics_once(9090, "127.0.0.1")
    runtime.serve_metrics_once(9090, "127.0.0.1")
    assert started == [(9090, "127.0.0.1")]


class _Watch:
    """kubernetes.watch.Watch as it streams a 410 Gone: an ERROR event with a Status dict."""

    resource_version = "7"

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events

    def stream(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return self._events


def test_a_watch_error_event_is_raised_as_the_api_error(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version",
    }
    monkeypatch.setattr(
        nodes.k8s_watch, "Watch", lambda: _Watch([{"type": "ERROR", "object": gone}])
    )
    watcher = nodes.KubeNodes(k8s_client.ApiClient())
    with pytest.raises(k8s_client.ApiException) as raised:
        list(watcher.watch_selected("kubenova.io/hypervisor=true", "5", 10))
    assert raised.value.status == 410
    assert "too old resource version" in str(raised.value.body)
