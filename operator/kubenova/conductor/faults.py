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
409    The build failed on its host and attempts were left, but every alternate chosen at
       scheduling time refused the claim (its room taken meanwhile, disabled, the group's
       policy): placement answers 409 Conflict to an allocation that no longer fits, and
       creating the instance again may well succeed once room frees.
500    The build failed on every host it was tried on (attempts used up, or no alternate
       to try): Nova's ``MaxRetriesExceeded``, a ``NoValidHost``, which is 500.
=====  ============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from kubenova.rpc import payloads

#: The request cannot be built on any host.
BUILD_ABORTED: Final = 400
#: No alternate host had room for a reschedule any more.
NO_ALTERNATE_TOOK_IT: Final = 409
#: Every host the build was tried on failed it.
RETRIES_EXHAUSTED: Final = 500


def build_fault_code(failure: payloads.InstanceBuildFailed, refused: Sequence[str]) -> int:
    """The fault code of a build that ends in Error after ``failure``, its last one;
    ``refused`` lists why each alternate refused a reschedule (empty when none was tried)."""
    if not failure.reschedulable:
        return BUILD_ABORTED
    if refused:
        return NO_ALTERNATE_TOOK_IT
    return RETRIES_EXHAUSTED
