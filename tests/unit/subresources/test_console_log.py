"""``GET instances/{name}/consolelog?tailLines=N``: the host's answer as text/plain, or a
Status that names the parameter, the instance or the host that is the matter."""

from __future__ import annotations

import http.client
import pathlib
import ssl
from typing import Any

import pytest

from kubenova.rpc import call, reply
from kubenova.subresources import app, consolelog, consoleurl, requestheader, server, status
from tests.unit.subresources import support

ALICE = requestheader.User("alice")
UUID = "5b0c1d7e-0000-4000-8000-000000000001"
BASE = "/apis/subresources.compute.kubenova.io/v1"
LOG_PATH = f"{BASE}/namespaces/demo/instances/web-1/consolelog"


class FakeCompute:
    """Stands in for ComputeAPI: answers ``output`` or raises ``fails``; keeps the calls."""

    def __init__(self, output: str = "kubenova-guest: ready\n", fails: Exception | None = None):
        self.output = output
        self.fails = fails
        self.calls: list[tuple[str, str, int | None, float]] = []

    def get_console_output(
        self,
        host: str,
        instance_uuid: str,
        tail_lines: int | None,
        *,
        request_id: str,
        timeout_s: float = 10.0,
    ) -> str:
        assert request_id.startswith("req-")
        self.calls.append((host, instance_uuid, tail_lines, timeout_s))
        if self.fails is not None:
            raise self.fails
        return self.output


def logs(
    compute: FakeCompute,
    found: consoleurl.ConsolePlace | None = None,
    kube: support.FakeKube | None = None,
) -> consolelog.ConsoleLogs:
    return consolelog.ConsoleLogs(
        kube or support.FakeKube(support.instance_object()),
        None,  # type: ignore[arg-type]  # the stand-ins never touch a database
        compute,
        timeout_s=7.0,
        read_place=lambda _factory, _uuid: found,
    )


def refusal(reader: consolelog.ConsoleLogs, name: str = "web-1", tail: str | None = None) -> Any:
    with pytest.raises(status.ApiError) as refused:
        reader.read("demo", name, tail, ALICE)
    return refused.value.body()


@pytest.mark.parametrize(("raw", "lines"), [(None, None), ("", None), ("0", 0), ("25", 25)])
def test_tail_lines_is_a_whole_number_or_absent(raw, lines) -> None:
    assert consolelog.tail_lines(raw) == lines


@pytest.mark.parametrize("raw", ["-1", "ten", "1.5", " 3", "+3"])
def test_a_bad_tail_lines_is_a_bad_request_naming_the_parameter(raw) -> None:
    compute = FakeCompute()

    body = refusal(logs(compute, support.place()), tail=raw)

    assert (body["code"], body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith("tailLines must be a whole number")
    assert repr(raw) in body["message"]
    assert compute.calls == []


def test_the_host_in_the_record_is_asked_for_the_tail() -> None:
    compute = FakeCompute()

    text = logs(compute, support.place()).read("demo", "web-1", "5", ALICE)

    assert text == "kubenova-guest: ready\n"
    assert compute.calls == [("compute-1", UUID, 5, 7.0)]


def test_a_stopped_instance_still_has_its_log() -> None:
    compute = FakeCompute()

    logs(compute, support.place(vm_state="stopped", power_state="shutdown")).read(
        "demo", "web-1", None, ALICE
    )

    assert compute.calls == [("compute-1", UUID, None, 7.0)]


def test_an_unknown_instance_is_not_found() -> None:
    body = refusal(logs(FakeCompute(), support.place()), name="nope")

    assert (body["code"], body["reason"]) == (404, "NotFound")
    assert body["message"] == 'instances.compute.kubenova.io "nope" not found in namespace "demo"'


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, '"web-1" has no record yet'),
        (support.place(host=None, vm_state="building"), '"web-1" is not on a host yet'),
    ],
)
def test_an_instance_without_a_host_is_a_conflict(found, says) -> None:
    compute = FakeCompute()

    body = refusal(logs(compute, found))

    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert says in body["message"]
    assert compute.calls == []


def test_a_host_that_does_not_answer_in_time_is_a_timeout_naming_the_host() -> None:
    compute = FakeCompute(fails=call.CallTimeout("compute.compute-1", "get_console_output", 7.0))

    body = refusal(logs(compute, support.place()))

    assert (body["code"], body["reason"]) == (504, "Timeout")
    assert "host compute-1, which did not answer within 7 s" in body["message"]


def test_a_host_without_a_queue_is_unavailable_naming_the_host() -> None:
    failure = call.Unreachable(
        "compute.compute-1", "get_console_output", "no queue takes messages for 'compute.x'"
    )

    body = refusal(logs(FakeCompute(fails=failure), support.place()))

    assert (body["code"], body["reason"]) == (503, "ServiceUnavailable")
    assert "could not ask host compute-1 for get_console_output" in body["message"]


def test_a_host_that_has_no_such_domain_is_not_found_naming_the_host() -> None:
    failure = call.RemoteError(
        "compute.compute-1",
        "get_console_output",
        reply.RemoteFailure(type="InstanceNotFound", message=f"instance {UUID} is not here"),
    )

    body = refusal(logs(FakeCompute(fails=failure), support.place()))

    assert (body["code"], body["reason"]) == (404, "NotFound")
    assert f'"web-1" ({UUID}) is not on host compute-1' in body["message"]


def test_another_failure_on_the_host_is_an_internal_error_with_its_message() -> None:
    failure = call.RemoteError(
        "compute.compute-1",
        "get_console_output",
        reply.RemoteFailure(type="PermissionError", message="[Errno 13] Permission denied"),
    )

    body = refusal(logs(FakeCompute(fails=failure), support.place()))

    assert body["code"] == 500
    assert "host compute-1 could not read" in body["message"]
    assert "Permission denied" in body["message"]


# -- through the app and the wire -------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> support.Pki:
    return support.make_pki()


def serve(pki: support.Pki, tmp_path: pathlib.Path, reader: Any) -> server.SubresourceServer:
    cert, key = support.write_pair(tmp_path, "serving", pki.serving)
    context = server.tls_context(
        pathlib.Path(cert), pathlib.Path(key), pki.front_proxy_ca.cert_pem().decode()
    )
    urls = support.console_urls(
        support.FakeKube(support.instance_object()), support.place(), support.RecordingMint()
    )
    served = app.App(pki.request_headers(), urls)
    served.console_logs = reader
    return server.serve(served, context, "127.0.0.1", 0)


def get(pki: support.Pki, tmp_path: pathlib.Path, port: int, path: str) -> tuple[int, str, str]:
    context = ssl.create_default_context(cadata=pki.serving_ca.cert_pem().decode())
    cert, key = support.write_pair(tmp_path, "client", pki.front_proxy_client)
    context.load_cert_chain(cert, key)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"X-Remote-User": "alice"})
        response = connection.getresponse()
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def test_the_log_is_answered_as_text_plain(pki, tmp_path) -> None:
    compute = FakeCompute(output="héllo\r\nkubenova-guest: ready\r\n")
    running = serve(pki, tmp_path, logs(compute, support.place()))
    try:
        code, kind, body = get(pki, tmp_path, running.port, f"{LOG_PATH}?tailLines=2")
    finally:
        running.stop()

    assert (code, kind) == (200, "text/plain; charset=utf-8")
    assert body == "héllo\r\nkubenova-guest: ready\r\n"
    assert compute.calls == [("compute-1", UUID, 2, 7.0)]


def test_a_refusal_is_a_status_on_the_wire(pki, tmp_path) -> None:
    running = serve(pki, tmp_path, logs(FakeCompute(), support.place()))
    try:
        code, kind, body = get(pki, tmp_path, running.port, f"{LOG_PATH}?tailLines=x")
    finally:
        running.stop()

    assert (code, kind) == (400, "application/json")
    assert '"reason": "BadRequest"' in body
    assert "tailLines" in body


def test_post_on_consolelog_is_not_allowed() -> None:
    answer = app.App(support.make_pki().request_headers(), None).handle(  # type: ignore[arg-type]
        "POST", LOG_PATH, support.peer_cert(support.FRONT_PROXY_NAME), support.headers()
    )

    assert answer.code == 405
