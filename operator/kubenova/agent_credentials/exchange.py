"""One request of a node's agent, from its Authorization header to the answer.

Two requests share the same proof of which node asks (the caller's token, reviewed by the
apiserver, bound to a pod on a hypervisor node): its RabbitMQ credentials (``handle``) and its
consoles' TLS certificate (``handle_host_certificate``, :mod:`host_certificates`).

The answer is JSON. 200 carries ``node``, ``user`` and ``amqpUrl`` (that node's, and only
that node's); a refusal carries ``reason``: 401 for a token that is missing or not accepted,
403 for a good token that may not have credentials (another identity, no node, a node that is
not a hypervisor), 503 when the apiserver or RabbitMQ cannot be asked now (try again). A host
certificate's 200 carries ``node``, ``certificate``, ``caBundle``, ``notAfter`` and
``renewAfter``; 400 refuses a signing request that cannot be signed, 404 an operator that signs
none. Every answer carries ``requestId``, and each issue and refusal is logged under it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from kubenova import log
from kubenova.agent_credentials import decision, host_certificates, minter
from kubenova.k8s.tokenreview import TokenReviewResult

LOG = logging.getLogger(__name__)

OK = 200
BAD_REQUEST = 400
NOT_FOUND = 404
UNAVAILABLE = 503


class Reviewer(Protocol):
    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult: ...


class Nodes(Protocol):
    def is_selected(self, name: str, label_selector: str) -> bool: ...


class Issuer(Protocol):
    def ensure(self, node: str) -> minter.Credentials: ...


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, str]


class Exchange:
    def __init__(
        self,
        reviewer: Reviewer,
        nodes: Nodes,
        issuer: Issuer,
        *,
        audience: str,
        agent_username: str,
        node_selector: str,
        host_certificates: host_certificates.HostSigner | None = None,
    ) -> None:
        self._reviewer = reviewer
        self._host_certificates = host_certificates
        self._nodes = nodes
        self._issuer = issuer
        self._audience = audience
        self._agent_username = agent_username
        self._node_selector = node_selector

    def handle(self, authorization: str | None, request_id: str) -> Answer:
        """Answer one request; never raises."""
        with log.request_context(request_id):
            answer = self._answer(authorization)
        answer.body["requestId"] = request_id
        return answer

    def handle_host_certificate(
        self, authorization: str | None, request_pem: bytes, request_id: str
    ) -> Answer:
        """Sign the caller's node's console certificate; never raises."""
        with log.request_context(request_id):
            answer = self._host_certificate(authorization, request_pem)
        answer.body["requestId"] = request_id
        return answer

    def _answer(self, authorization: str | None) -> Answer:
        caller = self._caller(authorization)
        if isinstance(caller, Answer):
            return caller
        node = caller.node
        try:
            credentials = self._issuer.ensure(node)
        except Exception as exc:
            LOG.exception("agent credentials: could not mint the user of node %s", node)
            return _unavailable(f"cannot mint node {node}'s credentials now ({exc})")
        LOG.info(
            "issued RabbitMQ user %s to the agent of node %s (pod %s)",
            credentials.user,
            node,
            caller.pod or "-",
            extra={"node": node, "pod": caller.pod or ""},
        )
        return Answer(OK, {"node": node, "user": credentials.user, "amqpUrl": credentials.amqp_url})

    def _host_certificate(self, authorization: str | None, request_pem: bytes) -> Answer:
        if self._host_certificates is None:
            return Answer(NOT_FOUND, {"reason": "this operator signs no host certificates"})
        caller = self._caller(authorization)
        if isinstance(caller, Answer):
            return caller
        node = caller.node
        try:
            signed = self._host_certificates.sign(node, request_pem)
        except host_certificates.BadRequest as exc:
            return _refuse(decision.Denied(BAD_REQUEST, str(exc)))
        except Exception as exc:
            LOG.exception("host certificate: could not sign node %s's", node)
            return _unavailable(f"cannot sign node {node}'s certificate now ({exc})")
        body = signed.answer()
        LOG.info(
            "signed the console certificate of node %s (pod %s), valid until %s",
            node,
            caller.pod or "-",
            body["notAfter"],
            extra={"node": node, "pod": caller.pod or ""},
        )
        return Answer(OK, {"node": node, **body})

    def _caller(self, authorization: str | None) -> decision.Allowed | Answer:
        """The node whose agent sent ``authorization``, or the answer refusing it."""
        token = decision.bearer_token(authorization)
        if isinstance(token, decision.Denied):
            return _refuse(token)
        try:
            review = self._reviewer.review(token, [self._audience])
        except Exception as exc:
            LOG.exception("agent credentials: the token review failed")
            return _unavailable(f"cannot review the token now ({type(exc).__name__})")
        verdict = decision.decide(
            review, audience=self._audience, agent_username=self._agent_username
        )
        if isinstance(verdict, decision.Denied):
            return _refuse(verdict, review.username)
        node = verdict.node
        problem = minter.node_name_problem(node)
        if problem is not None:
            return _refuse(decision.Denied(decision.FORBIDDEN, problem), review.username)
        try:
            hypervisor = self._nodes.is_selected(node, self._node_selector)
        except Exception as exc:
            LOG.exception("agent credentials: could not read node %s", node)
            return _unavailable(f"cannot read node {node} now ({type(exc).__name__})")
        if not hypervisor:
            why = f"node {node} is not a hypervisor (not selected by {self._node_selector})"
            return _refuse(decision.Denied(decision.FORBIDDEN, why), review.username)
        return verdict


def _refuse(denied: decision.Denied, username: str = "") -> Answer:
    LOG.warning(
        "refused an agent's request (%d): %s",
        denied.status,
        denied.reason,
        extra={"username": username},
    )
    return Answer(denied.status, {"reason": denied.reason})


def _unavailable(reason: str) -> Answer:
    return Answer(UNAVAILABLE, {"reason": reason})
