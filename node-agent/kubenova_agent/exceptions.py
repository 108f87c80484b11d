"""Exceptions raised by the node-agent's virt layer and its helpers.

Two families matter to the manager:

- :class:`BuildError` and its two subclasses are what ``ComputeDriver.spawn`` raises. The manager
  reschedules a :class:`RescheduledBuildError` to an alternate host (the failure belongs to this
  host) and puts the instance in error on a :class:`BuildAbortedError` (the request itself is bad,
  so another host would fail the same way). This is Nova's ``RescheduledException`` versus
  ``BuildAbortedException`` split.
- :class:`InstanceNotFound` says the hypervisor has no domain for the uuid, and
  :class:`InstanceInvalidState` that a power operation does not apply to the state the instance
  is in; the manager reports either as the operation's error.
- :class:`RebuildFailed` is what ``ComputeDriver.rebuild`` raises; ``intact`` tells the manager
  whether the instance is as it was (the report then gives its state as it is) or was left in
  error.
- :class:`MigrationFailed` and :class:`MigrationAborted` are what the migration and resize
  methods raise (``kubenova_agent.virt.migration``); an aborted or failed live migration leaves
  the guest running on its source.

The others are raised by the helpers (image cache, hypervisor adapter) and are translated into a
build error by the driver; their messages are written for an operator reading an instance fault.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every exception the node-agent raises on purpose."""


class InstanceNotFound(AgentError):
    """The hypervisor has no domain for ``instance_uuid`` (or not one this driver manages)."""

    def __init__(self, instance_uuid: str) -> None:
        super().__init__(f"instance {instance_uuid} is not on this host")
        self.instance_uuid = instance_uuid


class InstanceInvalidState(AgentError):
    """The instance is in no state to undergo ``operation`` (pausing a shut-off instance, say).

    ``state`` names what it is instead, in the words of vm_state ("stopped", "paused"...).
    """

    def __init__(self, instance_uuid: str, operation: str, state: str) -> None:
        super().__init__(f"cannot {operation} instance {instance_uuid}: it is {state}")
        self.instance_uuid = instance_uuid
        self.operation = operation
        self.state = state


class RebuildFailed(AgentError):
    """A rebuild failed; ``reason`` says why.

    ``intact`` is true when the failure came before the instance was touched (a bad image: a
    checksum that does not match, a 404, a wrong format): it still runs, or stays stopped, on its
    old disk. Otherwise the old guest had been powered off and its disk may be replaced already:
    the instance is left shut off, in error, until a rebuild succeeds.
    """

    def __init__(self, instance_uuid: str, reason: str, *, intact: bool) -> None:
        outcome = (
            "the instance is unchanged"
            if intact
            else "the instance is left shut off, in error: rebuild it again"
        )
        super().__init__(f"rebuild of instance {instance_uuid} failed: {reason}; {outcome}")
        self.instance_uuid = instance_uuid
        self.reason = reason
        self.intact = intact


class SnapshotFailed(AgentError):
    """A snapshot could not be made or uploaded; the message says why. The instance is as it
    was (a guest paused for the copy runs again)."""


class HypervisorError(AgentError):
    """A call to libvirt failed; ``code`` is libvirt's error number (``VIR_ERR_*``)."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class ImageError(AgentError):
    """Base class of image cache failures."""


class ImageDownloadError(ImageError):
    """The image could not be fetched.

    ``permanent`` is true when asking again cannot help (an HTTP 4xx answer: the image is not
    there, or we may not read it); transient failures (connection refused, 5xx, a short read)
    leave it false.
    """

    def __init__(self, url: str, reason: str, *, permanent: bool = False) -> None:
        super().__init__(f"cannot download image {url}: {reason}")
        self.url = url
        self.reason = reason
        self.permanent = permanent


class ImageChecksumMismatch(ImageError):
    """The downloaded bytes do not hash to the sha256 the Image declares."""

    def __init__(self, url: str, *, expected: str, actual: str) -> None:
        super().__init__(f"image {url} has sha256 {actual}, expected {expected}")
        self.url = url
        self.expected = expected
        self.actual = actual


class InvalidImage(ImageError):
    """The image's content is unusable as declared (wrong format, or a backing file of its own)."""


class ImageTooLarge(ImageError):
    """The image's virtual size exceeds the root disk the flavor gives."""

    def __init__(self, image: str, *, virtual_size: int, disk_bytes: int) -> None:
        super().__init__(
            f"image {image} has a virtual size of {virtual_size} bytes, "
            f"larger than the flavor's root disk of {disk_bytes} bytes"
        )
        self.virtual_size = virtual_size
        self.disk_bytes = disk_bytes


class BuildError(AgentError):
    """``spawn`` failed and has removed everything it made; ``reason`` says why."""

    def __init__(self, instance_uuid: str, reason: str) -> None:
        super().__init__(f"build of instance {instance_uuid} failed: {reason}")
        self.instance_uuid = instance_uuid
        self.reason = reason


class RescheduledBuildError(BuildError):
    """A host-side build failure (libvirt or qemu error, disk full, image server down).

    Another host may well succeed: the manager should reschedule to an alternate.
    """


class BuildAbortedError(BuildError):
    """A build failure caused by the request (bad image checksum, image too big, bad image).

    Every host would fail the same way: the manager should not reschedule.
    """


class MigrationError(AgentError):
    """A migration or resize step failed; ``reason`` says why."""

    def __init__(self, instance_uuid: str, reason: str) -> None:
        super().__init__(f"migration of instance {instance_uuid} failed: {reason}")
        self.instance_uuid = instance_uuid
        self.reason = reason


class MigrationFailed(MigrationError):
    """The hypervisor failed the migration (or the destination cannot take the guest).

    A failed live migration leaves the guest running on its source, as libvirt does.
    """


class MigrationAborted(MigrationError):
    """A live migration was aborted before it completed: asked to (``timed_out`` False) or
    because it made no progress for too long (``timed_out`` True). The guest runs on its
    source."""

    def __init__(self, instance_uuid: str, reason: str, *, timed_out: bool) -> None:
        super().__init__(instance_uuid, reason)
        self.timed_out = timed_out
