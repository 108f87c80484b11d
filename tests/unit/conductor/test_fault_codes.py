"""The code a failed build's fault records: 400 for a request no host can build, 409 when no
alternate had room for a reschedule, 500 when every host tried failed it."""

from __future__ import annotations

import pytest

from kubenova.conductor import faults
from kubenova.rpc import payloads

UUID = "00000000-0000-4000-8000-000000000001"


def _failure(*, reschedulable: bool) -> payloads.InstanceBuildFailed:
    return payloads.InstanceBuildFailed(
        instance_uuid=UUID,
        host="h1",
        reason="BuildFailed" if reschedulable else "BuildAborted",
        message="what the host said",
        reschedulable=reschedulable,
    )


@pytest.mark.parametrize(
    ("reschedulable", "refused", "code"),
    [
        # The request is bad: no reschedule was tried, whatever else is known.
        (False, [], 400),
        (False, ["h2: insufficient memory"], 400),
        (True, ["h2: insufficient memory", "h3: disabled"], 409),
        (True, [], 500),
    ],
)
def test_the_code_says_how_the_build_ended(
    reschedulable: bool, refused: list[str], code: int
) -> None:
    assert faults.build_fault_code(_failure(reschedulable=reschedulable), refused) == code
