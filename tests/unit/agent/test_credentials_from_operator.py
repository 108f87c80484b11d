"""The agent trades its token for its node's AMQP URL: it tries again while the operator fails
over, gives up at once when refused, and keeps the URL in memory."""

from __future__ import annotations

import ast
import pathlib
import socket
import sys
from collections.abc import Iterator

import pytest

from kubenova.certs import authority
from kubenova_agent import cmd, credentials
from tests.support import FakeClock
from tests.unit.agent_credentials.endpoint import Endpoint, running_endpoint, write_token


@pytest.fixture
def endpoint(tmp_path: pathlib.Path) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    """Moves only when the agent sleeps; records the pauses."""
    return FakeClock()


def fetch(
    endpoint: Endpoint,
    token_file: str,
    clock: FakeClock,
    *,
    url: str | None = None,
    ca_file: str | None = None,
    deadline_s: float = credentials.DEFAULT_DEADLINE_S,
) -> credentials.AgentCredentials:
    return credentials.fetch(
        url or endpoint.url,
        ca_file=ca_file or endpoint.ca_file,
        token_file=token_file,
        deadline_s=deadline_s,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def test_the_agent_gets_its_nodes_url(
    endpoint: Endpoint, tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    issued = fetch(endpoint, write_token(tmp_path, "token-of-node-b"), clock)
    assert (issued.node, issued.user) == ("node-b", "agent-node-b")
    assert issued.amqp_url.startswith("amqp://agent-node-b:")
    assert clock.pauses == []


def test_while_the_operator_cannot_review_tokens_the_agent_tries_again(
    endpoint: Endpoint, tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    endpoint.reviewer.down = True
    clock.on_sleep = lambda: setattr(endpoint.reviewer, "down", len(clock.pauses) < 3)
    issued = fetch(endpoint, write_token(tmp_path, "token-of-node-a"), clock)
    assert issued.node == "node-a"
    assert clock.pauses == [1.0, 2.0, 4.0]


def test_the_token_is_read_again_for_each_try(
    endpoint: Endpoint, tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    # The kubelet rotates the projected token; a try after a failure sends the new one.
    token_file = write_token(tmp_path, "expired-token")
    endpoint.reviewer.down = True

    def rotate() -> None:
        endpoint.reviewer.down = False
        write_token(tmp_path, "token-of-node-a")

    clock.on_sleep = rotate
    assert fetch(endpoint, token_file, clock).node == "node-a"
    assert [token for token, _ in endpoint.reviewer.asked] == ["expired-token", "token-of-node-a"]


def test_a_refusal_is_raised_at_once_with_the_operators_reason(
    endpoint: Endpoint, tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    with pytest.raises(credentials.CredentialsRefused) as info:
        fetch(endpoint, write_token(tmp_path, "operator-token"), clock)
    assert info.value.status == 403
    assert info.value.reason.startswith("only system:serviceaccount:kubenova:kubenova-agent")
    assert clock.pauses == []


def test_an_operator_that_does_not_answer_is_tried_until_the_deadline(
    tmp_path: pathlib.Path, clock: FakeClock, endpoint: Endpoint
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: a standby, or no operator yet
        sock.bind(("127.0.0.1", 0))
        closed = f"https://localhost:{sock.getsockname()[1]}/agent-credentials"
    with pytest.raises(credentials.CredentialsError, match="within 60 s"):
        fetch(endpoint, write_token(tmp_path, "token-of-node-a"), clock, url=closed, deadline_s=60)
    assert clock.pauses == [1.0, 2.0, 4.0, 8.0, 15.0, 30.0]


def test_a_server_kubenovas_ca_did_not_sign_never_gets_the_token(
    endpoint: Endpoint, tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(authority.issue_ca().cert_pem())
    with pytest.raises(credentials.CredentialsError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(
            endpoint,
            write_token(tmp_path, "token-of-node-a"),
            clock,
            ca_file=str(other_ca),
            deadline_s=2,
        )
    assert endpoint.reviewer.asked == []


def test_a_plain_http_url_is_refused_before_the_token_is_sent(
    tmp_path: pathlib.Path, clock: FakeClock, endpoint: Endpoint
) -> None:
    with pytest.raises(credentials.CredentialsError, match="https"):
        fetch(
            endpoint,
            write_token(tmp_path, "token-of-node-a"),
            clock,
            url=endpoint.url.replace("https://", "http://"),
        )


def test_kubenova_agent_uses_the_operators_url_and_writes_no_file(
    endpoint: Endpoint, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(credentials.URL_ENV, endpoint.url)
    monkeypatch.setenv(credentials.CA_ENV, endpoint.ca_file)
    monkeypatch.setenv(credentials.TOKEN_ENV, write_token(tmp_path, "token-of-node-a"))
    monkeypatch.setenv("KUBENOVA_STATE", str(tmp_path / "state"))
    before = sorted(tmp_path.rglob("*"))
    url = cmd._amqp_url_from_operator("node-a", None)
    assert url is not None
    assert url.startswith("amqp://agent-node-a:")
    assert sorted(tmp_path.rglob("*")) == before


def test_kubenova_agent_refuses_credentials_issued_for_another_node(
    endpoint: Endpoint, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(credentials.URL_ENV, endpoint.url)
    monkeypatch.setenv(credentials.CA_ENV, endpoint.ca_file)
    monkeypatch.setenv(credentials.TOKEN_ENV, write_token(tmp_path, "token-of-node-a"))
    with pytest.raises(SystemExit, match=r"issued credentials for node 'node-a'.*host 'vm-7'"):
        cmd._amqp_url_from_operator("vm-7", None)


def test_an_explicit_url_file_wins_over_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(credentials.URL_ENV, "https://operator.invalid:8443/agent-credentials")
    assert cmd._amqp_url_from_operator("node-a", "/etc/kubenova/amqp-url") is None


def test_the_agents_credentials_client_needs_only_the_standard_library() -> None:
    # It runs on every hypervisor node, before the agent has a broker to talk to.
    tree = ast.parse(pathlib.Path(credentials.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
