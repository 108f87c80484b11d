"""Exceptions that cross layers: raised low in the stack, understood high up.

They live here, below every layer, so that raising one imports nothing else: a manager
dead-letters a message without importing the AMQP adapter, and the conductor tells the api
layer why an instance waits without the api layer importing the conductor's internals.
"""

from __future__ import annotations


class NotReady(Exception):
    """An instance cannot move on yet. ``reason`` (a CamelCase word) and the message become
    its Pending condition; the request is tried again later."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermanentFailure(Exception):
    """Raised by a message handler for a message that will never succeed: the consumer
    dead-letters it instead of delivering it again."""
