"""The code of the fault a failed build records, after Nova's exception codes.

Nova records each instance fault with the HTTP-style ``code`` of the exception behind it
(``NovaException.code``: 500 unless a subclass says otherwise). A build that ends in Error here
gets one of three, by what the last failure says about retrying:

=====  ============================================================================
code   when
=====  ============================================================================
400    The host refused the request itself (``reschedulable`` false: the image's checksum,
       format or size, an image URL that answers 4xx, a spec the host cannot build). Any
       host would fail the same way. Nova's ``Invalid`` family: ``ImageUnacceptable``,
       ``InvalidDiskFormat``, ``ImageBadRequest``.
409    The build failed on its host and attempts were left, but the scheduler found no other
       host to take it (every one already tried, full, disabled, or refused by the group's
       policy): placement answers 409 Conflict to an allocation that does not fit, and
       creating the instance again may well succeed once room frees.
500    The build failed on every host it was tried on (attempts used up): Nova's
       ``MaxRetriesExceeded``, which is 500.
=====  ============================================================================
"""

from __future__ import annotations

from typing import Final

from kubenova.rpc import payloads

#: The request cannot be built on any host.
BUILD_ABORTED: Final = 400
#: No other host took a reschedule.
NO_OTHER_HOST: Final = 409
#: Every host the build was tried on failed it.
RETRIES_EXHAUSTED: Final = 500


def build_fault_code(failure: payloads.InstanceBuildFailed, *, rescheduled: bool) -> int:
    """The fault code of a build that ends in Error after ``failure``, its last one;
    ``rescheduled``: a reschedule was tried and no host took it."""
    if not failure.reschedulable:
        return BUILD_ABORTED
    if rescheduled:
        return NO_OTHER_HOST
    return RETRIES_EXHAUSTED
