"""How the libvirt-based drivers report a failed spawn or rebuild: which exception, and its
reason in words an operator reading an instance fault can act on."""

from __future__ import annotations

import subprocess

from kubenova_agent import exceptions

# Errors whose cause is the request (the image), so that no other host would do better.
_ABORT_ERRORS: tuple[type[BaseException], ...] = (
    exceptions.ImageChecksumMismatch,
    exceptions.InvalidImage,
    exceptions.ImageTooLarge,
    ValueError,
)


def reason(exc: BaseException) -> str:
    """What went wrong, with qemu-img's own words when it was qemu-img that failed."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
        text = f"{text}: {str(exc.stderr).strip()}"
    return text


def build_error(instance_uuid: str, exc: BaseException) -> exceptions.BuildError | None:
    """Classify a spawn failure as reschedulable or not; None for what must propagate as is
    (``KeyboardInterrupt`` and the like)."""
    if isinstance(exc, exceptions.BuildError):
        return exc
    if not isinstance(exc, Exception):
        return None
    if isinstance(exc, _ABORT_ERRORS) or (
        isinstance(exc, exceptions.ImageDownloadError) and exc.permanent
    ):
        return exceptions.BuildAbortedError(instance_uuid, reason(exc))
    # Everything else (libvirt and qemu errors, OSError such as a full disk, an image server
    # that does not answer, and bugs) is this host's problem: another host may succeed.
    return exceptions.RescheduledBuildError(instance_uuid, reason(exc))


def rebuild_failed(instance_uuid: str, exc: Exception, *, intact: bool) -> exceptions.RebuildFailed:
    """The rebuild's failure; ``intact`` says whether the instance was left as it was.

    No classification as for a build: a rebuild happens where the instance is, so there is no
    other host to try, and whatever the cause the instance's end state is what the caller
    must know.
    """
    return exceptions.RebuildFailed(instance_uuid, reason(exc), intact=intact)
