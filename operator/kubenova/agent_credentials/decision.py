"""Who may have which node's credentials: the apiserver's TokenReview decides, nothing else.

``decide(review, ...)`` turns the review of the caller's bearer token into either the node
whose credentials the caller may have, or a refusal with its HTTP status and reason:

* 401: the token is not one the apiserver accepts for our audience (expired, revoked, made
  for another audience, bound to a pod that is gone).
* 403: the token is good but is not the agent's ServiceAccount, or names no node.

The node comes only from ``user.extra["authentication.kubernetes.io/node-name"]``, which the
apiserver writes itself for a token bound to a pod (the node the pod was scheduled to) or to a
Node. A caller has no say in it: nothing from the request other than the token is read.
"""

from __future__ import annotations

import dataclasses

from kubenova.k8s.tokenreview import TokenReviewResult

NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"

UNAUTHORIZED = 401
FORBIDDEN = 403


@dataclasses.dataclass(frozen=True)
class Allowed:
    node: str
    # The pod the token is bound to; None for a token bound to the Node itself.
    pod: str | None = None


@dataclasses.dataclass(frozen=True)
class Denied:
    status: int
    reason: str


def bearer_token(authorization: str | None) -> str | Denied:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Denied(UNAUTHORIZED, "send the agent's ServiceAccount token as a Bearer token")
    return token


def decide(review: TokenReviewResult, *, audience: str, agent_username: str) -> Allowed | Denied:
    """Allowed(node) only for an authenticated token of ``agent_username``, valid for
    ``audience``, that names exactly one node."""
    if not review.authenticated:
        why = review.error or "the apiserver did not authenticate it"
        return Denied(UNAUTHORIZED, f"token not accepted: {why}")
    # A reviewer that ignores audiences would authenticate a token made for any audience,
    # e.g. one the agent could send elsewhere; the review must say ours was checked.
    if audience not in review.audiences:
        return Denied(UNAUTHORIZED, f"token not accepted: it is not valid for audience {audience}")
    if review.username != agent_username:
        return Denied(
            FORBIDDEN, f"only {agent_username} may have agent credentials, not {review.username}"
        )
    nodes = [name for name in review.extra.get(NODE_NAME_KEY, ()) if name]
    if len(nodes) != 1:
        return Denied(
            FORBIDDEN,
            "token names no node: it must be bound to the agent's pod (a projected token) "
            "or to a Node",
        )
    pods = [name for name in review.extra.get(POD_NAME_KEY, ()) if name]
    return Allowed(node=nodes[0], pod=pods[0] if len(pods) == 1 else None)
