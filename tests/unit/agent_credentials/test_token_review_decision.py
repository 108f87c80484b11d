"""What a TokenReview's answer allows: the node it names, and only for the agent's identity."""

from __future__ import annotations

import pytest

from kubenova.agent_credentials import decision
from kubenova.k8s.tokenreview import TokenReviewResult
from tests.unit.agent_credentials.fakes import AGENT_USERNAME, AUDIENCE, agent_review


def decide(review: TokenReviewResult) -> decision.Allowed | decision.Denied:
    return decision.decide(review, audience=AUDIENCE, agent_username=AGENT_USERNAME)


def test_a_pod_bound_agent_token_is_allowed_its_node_and_names_its_pod() -> None:
    assert decide(agent_review("node-a")) == decision.Allowed("node-a", "kubenova-agent-x7k2q")


def test_a_node_bound_agent_token_is_allowed_its_node() -> None:
    assert decide(agent_review("node-b", pod=None)) == decision.Allowed("node-b", None)


def test_a_token_the_apiserver_rejects_is_unauthorized_with_its_reason() -> None:
    verdict = decide(agent_review(authenticated=False, error="token has expired"))
    assert verdict == decision.Denied(401, "token not accepted: token has expired")


def test_a_token_valid_for_another_audience_only_is_unauthorized() -> None:
    # What a reviewer that ignored the audiences asked would answer.
    verdict = decide(agent_review(audiences=("https://kubernetes.default.svc",)))
    assert isinstance(verdict, decision.Denied)
    assert verdict.status == 401
    assert "audience kubenova-operator" in verdict.reason


def test_another_service_account_is_forbidden_even_with_a_node() -> None:
    other = "system:serviceaccount:kubenova:kubenova-operator"
    verdict = decide(agent_review("node-a", username=other))
    assert verdict == decision.Denied(
        403, f"only {AGENT_USERNAME} may have agent credentials, not {other}"
    )


def test_an_agent_service_account_of_another_namespace_is_forbidden() -> None:
    verdict = decide(agent_review(username="system:serviceaccount:default:kubenova-agent"))
    assert isinstance(verdict, decision.Denied)
    assert verdict.status == 403


def test_an_agent_token_without_a_node_is_forbidden() -> None:
    # A plain TokenRequest, bound to nothing (or to a Secret).
    verdict = decide(agent_review(node=None, pod=None))
    assert isinstance(verdict, decision.Denied)
    assert verdict.status == 403
    assert verdict.reason.startswith("token names no node")


@pytest.mark.parametrize("nodes", [("",), ("node-a", "node-b")], ids=["empty", "two"])
def test_a_token_that_does_not_name_exactly_one_node_is_forbidden(
    nodes: tuple[str, ...],
) -> None:
    review = agent_review("node-a")
    extra = {**review.extra, decision.NODE_NAME_KEY: nodes}
    verdict = decide(TokenReviewResult(True, AGENT_USERNAME, audiences=(AUDIENCE,), extra=extra))
    assert isinstance(verdict, decision.Denied)
    assert verdict.status == 403


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic YWdlbnQ6cHc=", "token abc"]
)
def test_a_request_without_a_bearer_token_is_unauthorized(header: str | None) -> None:
    assert isinstance(decision.bearer_token(header), decision.Denied)


def test_the_bearer_scheme_is_case_insensitive() -> None:
    assert decision.bearer_token("bearer eyJhbGciOi.x.y") == "eyJhbGciOi.x.y"
