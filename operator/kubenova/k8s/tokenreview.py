"""TokenReview: ask the apiserver who a bearer token belongs to.

The result is the apiserver's word, copied into a plain value: whether it authenticated the
token, for which of the audiences asked, and the user it names with its ``extra`` (where a
pod-bound or node-bound service account token carries its pod and node). Deciding what the
answer permits is the caller's business (``kubenova.agent_credentials.decision``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s_client


@dataclasses.dataclass(frozen=True)
class TokenReviewResult:
    authenticated: bool
    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()
    # The audiences the token was valid for, among those asked.
    audiences: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    error: str = ""


class KubeTokenReviewer:
    """Creates TokenReviews (RBAC: ``create`` on ``authentication.k8s.io`` ``tokenreviews``)."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._authn = k8s_client.AuthenticationV1Api(api_client or k8s_client.ApiClient())

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult:
        body = k8s_client.V1TokenReview(
            spec=k8s_client.V1TokenReviewSpec(token=token, audiences=list(audiences))
        )
        status = self._authn.create_token_review(body).status
        return result_from_status(status)


def result_from_status(status: Any) -> TokenReviewResult:
    """The generated client's ``V1TokenReviewStatus`` as a :class:`TokenReviewResult`."""
    if status is None:
        return TokenReviewResult(authenticated=False, error="the review came back empty")
    user = status.user
    extra: dict[str, tuple[str, ...]] = {}
    if user is not None:
        extra = {key: tuple(values or ()) for key, values in (user.extra or {}).items()}
    return TokenReviewResult(
        authenticated=bool(status.authenticated),
        username=(user.username or "") if user is not None else "",
        uid=(user.uid or "") if user is not None else "",
        groups=tuple((user.groups or ()) if user is not None else ()),
        audiences=tuple(status.audiences or ()),
        extra=extra,
        error=status.error or "",
    )
