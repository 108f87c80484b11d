"""kubectl nova console-log NAME [--tail N]: the subresource it asks for, the log on stdout
as the server sent it, and the server's refusals in kubectl's words."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib import parse

import pytest
from kubernetes import client as k8s_client

from kubenova.cli import kube, kubectl_nova

LOG = "boot\r\nkubenova-guest: ready\r\n"
PATH = "/apis/subresources.compute.kubenova.io/v1/namespaces/{ns}/instances/{name}/consolelog"


class FakeApiServer(http.server.ThreadingHTTPServer):
    """Answers each GET with ``answer`` (code, content type, body) and keeps what was asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.asked: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.answer: tuple[int, str, str] = (200, "text/plain; charset=utf-8", LOG)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeApiServer

    def do_GET(self) -> None:
        split = parse.urlsplit(self.path)
        self.server.asked.append((split.path, parse.parse_qs(split.query), self.headers["Accept"]))
        code, kind, body = self.server.answer
        payload = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def apiserver(monkeypatch) -> Iterator[FakeApiServer]:
    served = FakeApiServer()
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()

    def connect(kubeconfig, context, namespace):
        configuration = k8s_client.Configuration(host=f"http://127.0.0.1:{served.server_port}")
        return kube.Cluster(k8s_client.ApiClient(configuration), namespace or "default")

    monkeypatch.setattr(kube, "connect", connect)
    try:
        yield served
    finally:
        served.shutdown()
        served.server_close()


def test_the_log_is_printed_as_the_server_sent_it(apiserver, capsys) -> None:
    assert kubectl_nova.main(["console-log", "web-1", "-n", "prod", "--tail", "5"]) == 0

    assert capsys.readouterr().out == LOG
    path, query, accept = apiserver.asked[0]
    assert path == PATH.format(ns="prod", name="web-1")
    assert query == {"tailLines": ["5"]}
    assert "text/plain" in str(accept)


def test_without_tail_every_line_is_asked_for(apiserver, capsys) -> None:
    assert kubectl_nova.main(["-n", "dev", "console-log", "web-1"]) == 0

    path, query, _ = apiserver.asked[0]
    assert (path, query) == (PATH.format(ns="dev", name="web-1"), {})


@pytest.mark.parametrize(("tail", "asked"), [("0", {"tailLines": ["0"]}), ("-1", {})])
def test_tail_zero_asks_for_none_and_minus_one_for_all(apiserver, capsys, tail, asked) -> None:
    assert kubectl_nova.main(["console-log", "web-1", "--tail", tail]) == 0

    assert apiserver.asked[0][1] == asked


@pytest.mark.parametrize("tail", ["-2", "ten", "1.5"])
def test_a_bad_tail_is_a_usage_error_and_asks_nothing(apiserver, capsys, tail) -> None:
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(["console-log", "web-1", "--tail", tail])

    assert exited.value.code == 2
    assert "--tail" in capsys.readouterr().err
    assert apiserver.asked == []


def test_the_name_is_required(apiserver, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(["console-log"])

    assert exited.value.code == 2
    assert apiserver.asked == []


def test_a_refusal_is_printed_in_kubectls_words_with_exit_code_1(apiserver, capsys) -> None:
    message = (
        'instances.subresources.compute.kubenova.io "web-1" is forbidden: User "bob" cannot'
        ' get resource "instances/consolelog"'
    )
    status = {"kind": "Status", "reason": "Forbidden", "code": 403, "message": message}
    apiserver.answer = (403, "application/json", json.dumps(status))

    assert kubectl_nova.main(["console-log", "web-1"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"Error from server (Forbidden): {message}"


def test_a_host_that_did_not_answer_is_reported_with_the_servers_message(apiserver, capsys):
    message = 'the console log of instance "web-1" is on host node-1, which did not answer'
    status = {"kind": "Status", "reason": "Timeout", "code": 504, "message": message}
    apiserver.answer = (504, "application/json", json.dumps(status))

    assert kubectl_nova.main(["console-log", "web-1"]) == 1

    assert capsys.readouterr().err.strip() == f"Error from server (Timeout): {message}"
