"""The versioned envelope every message travels in.

Versioning follows Nova's RPC APIs: ``MAJOR.MINOR``, one version for the whole contract
(:data:`VERSION`, the newest this code implements), and each method carries the version in
which its arguments last changed (:data:`kubenova.rpc.payloads.METHODS`); the publisher puts
that version in the envelope. A receiver handles a message of a major it knows whose version
is not newer than its own :data:`VERSION`, as Nova's dispatcher compares a message's version
with its endpoint's; a newer one (a method or argument it does not know) it refuses with
:class:`UnsupportedVersion`, and the consumer dead-letters it with a log line naming both
versions. New minors only add methods or optional arguments, so a receiver still handles the
older versions of a method it has changed. Change a method's arguments and you give it the
next minor, raise :data:`VERSION` to it and add a line below; the fingerprints in
``tests/unit/rpc/test_contract_versions.py`` fail until you do.

Version history:

* 1.0 - build_and_run_instance, terminate_instance (compute); compute_node_report,
  instance_update, instance_build_failed, instance_terminated (conductor).
* 1.1 - service_stopping (conductor). It was first sent as 1.0, without a new version;
  a 1.1 receiver handles those still.
* 1.2 - compute_node_report carries service_version, the newest contract version the agent
  implements (its service's version).
* 1.3 - stop_instance, start_instance, pause_instance, unpause_instance, suspend_instance,
  resume_instance, reboot_instance, rebuild_instance (compute); instance_operation_finished
  (conductor).
* 1.4 - snapshot_instance (compute); snapshot_finished (conductor). Resize:
  resize_instance, finish_resize, confirm_resize, revert_resize, finish_revert_resize
  (compute); migration_step_finished (conductor); compute_node_report carries
  migration_uri.
* 1.5 - Live migration: pre_live_migration, live_migration,
  post_live_migration_at_destination, post_live_migration_at_source,
  rollback_live_migration_at_destination, live_migration_abort (compute);
  migration_progress (conductor); migration_step_finished carries a live migration's
  total_s and downtime_ms.
* 1.6 - instance_update and instance_operation_finished carry console_ports, the ports of
  the guest's VNC and SPICE as its host's libvirt handed them out.
* 1.7 - get_console_output (compute), the first call: a message with ``reply_to`` whose
  handler's return value is published back to the caller (:mod:`kubenova.rpc.call`).
* 1.8 - compute_node_report carries console_address, where the console proxy reaches the
  host's consoles.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pydantic

#: The newest version of the contract this code implements: the highest version of a method.
VERSION = "1.8"
#: Majors this code understands.
SUPPORTED_MAJORS = frozenset({1})


class UnsupportedVersion(ValueError):
    """A message's version is of a major this receiver does not know, or newer than its own."""


def parse_version(version: str) -> tuple[int, int]:
    """``"1.10"`` -> ``(1, 10)``, which orders as versions do."""
    major, minor = version.split(".", 1)
    return int(major), int(minor)


class Envelope(pydantic.BaseModel):
    """One message: who sent what, when, on behalf of which request."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    # The method's version (the publisher sets it from payloads.METHODS); the default, the
    # newest, is for an envelope built by hand.
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
        """Raise :class:`UnsupportedVersion` unless this receiver implements the version."""
        version = parse_version(self.version)
        if version[0] not in SUPPORTED_MAJORS:
            raise UnsupportedVersion(
                f"message {self.message_id} ({self.method}) has version {self.version}; "
                f"this receiver knows majors {sorted(SUPPORTED_MAJORS)}"
            )
        if version > parse_version(VERSION):
            raise UnsupportedVersion(
                f"message {self.message_id} ({self.method}) has version {self.version}; "
                f"this receiver implements the contract up to {VERSION}"
            )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, body: bytes) -> Envelope:
        return cls.model_validate_json(body)


def new_request_id() -> str:
    """A request id in Nova's format, carried through logs on every component."""
    return f"req-{uuid.uuid4()}"
