"""A recording stand-in for :class:`kubenova.rpc.amqp.Publisher`."""

from __future__ import annotations

from typing import Any, NamedTuple

from kubenova.rpc import payloads


class Cast(NamedTuple):
    """One message cast, as the publisher was given it."""

    topic: str
    method: str
    args: dict[str, Any]
    request_id: str


class RecordingCaster:
    """Stands in for the publisher under ``ComputeAPI`` and ``ConductorAPI``: records every
    cast in order. Like the publisher it refuses a method outside the contract."""

    def __init__(self) -> None:
        self.casts: list[Cast] = []

    def cast(self, topic: str, method: str, args: dict[str, Any], request_id: str) -> str:
        if method not in payloads.METHODS:
            raise ValueError(f"{method!r} is not a method of the contract (payloads.METHODS)")
        self.casts.append(Cast(topic, method, args, request_id))
        return f"message-{len(self.casts)}"

    def methods(self) -> list[str]:
        """The method of each cast, in order."""
        return [cast.method for cast in self.casts]

    def sent(self) -> list[tuple[str, str]]:
        """``(topic, method)`` of each cast, in order."""
        return [(cast.topic, cast.method) for cast in self.casts]
