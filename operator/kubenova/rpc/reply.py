"""The answer to a call: what the handler returned, or why it failed.

A call (:mod:`kubenova.rpc.call`) is a request in the usual envelope whose ``reply_to`` names
where its one answer goes; the answer is this small JSON document, matched to its request by
the AMQP ``correlation_id``. A handler that raises is answered with its failure instead of
being tried again: its caller waits for one answer and gives up after its timeout, so a retry
would only answer nobody.
"""

from __future__ import annotations

from typing import Any

import pydantic

#: The longest failure message an answer carries.
_MESSAGE_MAX = 4096


class RemoteFailure(pydantic.BaseModel):
    """Why a call's handler failed: the exception's class name and message."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str


class Reply(pydantic.BaseModel):
    """Exactly one of ``result`` (JSON) and ``error`` is meaningful: ``error`` None is success."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    result: Any = None
    error: RemoteFailure | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, body: bytes) -> Reply:
        return cls.model_validate_json(body)


def success(result: object) -> bytes:
    """The answer carrying ``result``; raises when ``result`` is not JSON-serialisable."""
    return Reply(result=result).to_json()


def failure(exc: BaseException) -> bytes:
    """The answer saying that the handler raised ``exc``."""
    message = str(exc)[:_MESSAGE_MAX] or type(exc).__name__
    return Reply(error=RemoteFailure(type=type(exc).__name__, message=message)).to_json()
