"""The versioned envelope every message travels in.

Versioning follows Nova's RPC APIs: ``MAJOR.MINOR``. A receiver accepts any minor
of a major it knows (new minors only add optional arguments) and refuses a major it
does not know, which the consumer sends to the dead-letter queue with a log line.

Version history:

* 1.0 - build_and_run_instance, terminate_instance (compute); compute_node_report,
  instance_update, instance_build_failed, instance_terminated (conductor).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pydantic

#: The contract's current version, sent on every message.
VERSION = "1.0"
#: Majors this code understands.
SUPPORTED_MAJORS = frozenset({1})


class UnsupportedVersion(ValueError):
    """A message's major version is not one this receiver knows."""


class Envelope(pydantic.BaseModel):
    """One message: who sent what, when, on behalf of which request."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    version: str = pydantic.Field(default=VERSION, pattern=r"^\d+\.\d+$")
    message_id: str = pydantic.Field(default_factory=lambda: str(uuid.uuid4()))
    request_id: str
    method: str = pydantic.Field(min_length=1, max_length=128)
    args: dict[str, Any] = pydantic.Field(default_factory=dict)
    sent_at: datetime.datetime = pydantic.Field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    sender: str

    def check_version(self) -> None:
        """Raise :class:`UnsupportedVersion` unless this receiver knows the major."""
        major = int(self.version.split(".", 1)[0])
        if major not in SUPPORTED_MAJORS:
            raise UnsupportedVersion(
                f"message {self.message_id} has version {self.version}; "
                f"this receiver knows majors {sorted(SUPPORTED_MAJORS)}"
            )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, body: bytes) -> Envelope:
        return cls.model_validate_json(body)


def new_request_id() -> str:
    """A request id in Nova's format, carried through logs on every component."""
    return f"req-{uuid.uuid4()}"
