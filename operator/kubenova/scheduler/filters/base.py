"""What every host filter is made of: the question, its answer and what it may consult.

Filters are called once per host and request: keep ``host_passes`` free of I/O and of
allocations that matter (return the shared :data:`PASS` and module-level rejections).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from typing import Final

from kubenova.scheduler.host_state import HostState, RequestSpec


@dataclasses.dataclass(frozen=True)
class FilterResult:
    passed: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> FilterResult:
        return PASS

    @classmethod
    def reject(cls, reason: str) -> FilterResult:
        return cls(False, reason)


#: The one "passed" result; results are immutable, so every filter can share it.
PASS: Final = FilterResult(True)


@dataclasses.dataclass(frozen=True)
class FilterContext:
    """What every filter may consult besides the host and the request."""

    now: datetime.datetime
    service_down_time_s: int = 60


class BaseHostFilter(abc.ABC):
    """One question about a host; subclasses set ``name`` and implement host_passes.

    ``RUN_ON_FORCED_HOST`` (like Nova's ``RUN_ON_REBUILD``) says whether the filter still
    applies when an administrator forces the host: only the checks that protect the host
    itself (it is alive, it has room, the build did not already fail there) do.
    """

    name: str = ""
    RUN_ON_FORCED_HOST: bool = False

    @abc.abstractmethod
    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        """Whether ``host_state`` can take ``spec``; the reason when it cannot."""
