"""Errors as the kube-apiserver words them: a ``Status`` object that kubectl prints as is.

``kubectl create --raw`` shows a failed request's ``message``; client libraries read
``reason`` and ``code``. :class:`ApiError` carries one, raised anywhere below the server and
turned into the answer there.
"""

from __future__ import annotations

from typing import Any

from kubenova.subresources import discovery


class ApiError(Exception):
    """A request refused with ``code`` and ``reason`` (Kubernetes' StatusReason words)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """The ``Status`` object to answer with."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.name is not None or self.kind is not None:
            details: dict[str, Any] = {"group": discovery.INSTANCE_GROUP}
            if self.name is not None:
                details["name"] = self.name
            if self.kind is not None:
                details["kind"] = self.kind
            status["details"] = details
        return status


def not_found(message: str, *, name: str | None = None, kind: str | None = None) -> ApiError:
    return ApiError(404, "NotFound", message, name=name, kind=kind)


def conflict(message: str, *, name: str, kind: str = "instances") -> ApiError:
    return ApiError(409, "Conflict", message, name=name, kind=kind)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "Unauthorized", message)


def method_not_allowed(method: str, path: str, allowed: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}; use {allowed}")


def not_implemented(message: str) -> ApiError:
    # Kubernetes names no reason for 501; kubectl prints the message, which says what to use.
    return ApiError(501, "NotImplemented", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)
