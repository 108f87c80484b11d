"""One request to the exchange: the node's URL for the agent of that node, a JSON reason for
everyone else, 503 while the apiserver or RabbitMQ cannot be asked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kubenova import log
from kubenova.agent_credentials import exchange, minter
from tests.unit.agent_credentials.fakes import (
    AGENT_USERNAME,
    AUDIENCE,
    NODE_SELECTOR,
    FakeAdmin,
    FakeNodes,
    FakeObjects,
    FakeReviewer,
    agent_review,
)

BROKER = "amqp://rabbitmq:5672/kubenova"


@pytest.fixture
def reviewer() -> FakeReviewer:
    return FakeReviewer(
        {
            "token-of-node-a": agent_review("node-a"),
            "token-of-node-b": agent_review("node-b"),
            "token-of-not-a-hypervisor": agent_review("gpu-7"),
            "token-without-node": agent_review(node=None, pod=None),
            "operator-token": agent_review(
                "node-a", username="system:serviceaccount:kubenova:kubenova-operator"
            ),
        }
    )


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def store() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
def exchanger(reviewer: FakeReviewer, admin: FakeAdmin, store: FakeObjects) -> exchange.Exchange:
    return exchange.Exchange(
        reviewer,
        FakeNodes({"node-a", "node-b"}),
        minter.Minter(store, admin, BROKER),
        audience=AUDIENCE,
        agent_username=AGENT_USERNAME,
        node_selector=NODE_SELECTOR,
    )


def test_the_agent_of_a_node_gets_that_nodes_url(
    exchanger: exchange.Exchange, reviewer: FakeReviewer, admin: FakeAdmin
) -> None:
    answer = exchanger.handle("Bearer token-of-node-a", "req-1")
    assert answer.status == 200
    assert answer.body["node"] == "node-a"
    assert answer.body["user"] == "agent-node-a"
    assert answer.body["amqpUrl"].startswith("amqp://agent-node-a:")
    assert answer.body["requestId"] == "req-1"
    assert reviewer.asked == [("token-of-node-a", (AUDIENCE,))]
    assert set(admin.passwords) == {"agent-node-a"}


def test_each_nodes_agent_gets_its_own_user_and_password(
    exchanger: exchange.Exchange, admin: FakeAdmin
) -> None:
    a = exchanger.handle("Bearer token-of-node-a", "req-1").body
    b = exchanger.handle("Bearer token-of-node-b", "req-2").body
    assert (a["user"], b["user"]) == ("agent-node-a", "agent-node-b")
    assert admin.passwords["agent-node-a"] != admin.passwords["agent-node-b"]


def test_asking_again_returns_the_same_url(exchanger: exchange.Exchange) -> None:
    first = exchanger.handle("Bearer token-of-node-a", "req-1").body["amqpUrl"]
    assert exchanger.handle("Bearer token-of-node-a", "req-2").body["amqpUrl"] == first


@pytest.mark.parametrize(
    ("authorization", "status", "reason"),
    [
        (None, 401, "send the agent's ServiceAccount token as a Bearer token"),
        ("Bearer forged", 401, "token not accepted: invalid bearer token"),
        ("Bearer operator-token", 403, "only system:serviceaccount:kubenova:kubenova-agent"),
        ("Bearer token-without-node", 403, "token names no node"),
        ("Bearer token-of-not-a-hypervisor", 403, "node gpu-7 is not a hypervisor"),
    ],
    ids=["no-token", "unknown-token", "other-identity", "no-node", "not-a-hypervisor"],
)
def test_everyone_else_is_refused_with_a_reason_and_nothing_is_minted(
    exchanger: exchange.Exchange,
    admin: FakeAdmin,
    store: FakeObjects,
    authorization: str | None,
    status: int,
    reason: str,
) -> None:
    answer = exchanger.handle(authorization, "req-9")
    assert answer.status == status
    assert answer.body["reason"].startswith(reason)
    assert set(answer.body) == {"reason", "requestId"}
    assert admin.calls == []
    assert store.items == {}


def test_a_review_that_cannot_be_made_is_unavailable_not_refused(
    exchanger: exchange.Exchange, reviewer: FakeReviewer
) -> None:
    reviewer.down = True
    answer = exchanger.handle("Bearer token-of-node-a", "req-1")
    assert answer.status == 503
    assert answer.body["reason"] == "cannot review the token now (ConnectionError)"


def test_a_broker_that_cannot_be_asked_is_unavailable(
    exchanger: exchange.Exchange, admin: FakeAdmin
) -> None:
    admin.down = True
    answer = exchanger.handle("Bearer token-of-node-a", "req-1")
    assert answer.status == 503
    assert "cannot mint node node-a's credentials now" in answer.body["reason"]


def test_each_issue_and_refusal_is_logged_with_its_request_id(
    exchanger: exchange.Exchange,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log.JSONFormatter("kubenova-operator"))
    logger = logging.getLogger("kubenova.agent_credentials.exchange")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        exchanger.handle("Bearer token-of-node-a", "req-issued")
        exchanger.handle("Bearer operator-token", "req-refused")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["request_id"], line["message"]) for line in lines] == [
        (
            "req-issued",
            "issued RabbitMQ user agent-node-a to the agent of node node-a "
            "(pod kubenova-agent-x7k2q)",
        ),
        (
            "req-refused",
            "refused an agent's request (403): only system:serviceaccount:kubenova:kubenova-agent "
            "may have agent credentials, not system:serviceaccount:kubenova:kubenova-operator",
        ),
    ]
    assert "password" not in stream.getvalue()
    assert "amqp://" not in stream.getvalue()
