"""The code a failed build's fault records: 400 for a request no host can build, 409 when a
reschedule was tried and no other host took it, 500 when every host tried failed it."""

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
    ("reschedulable", "rescheduled", "code"),
    [
        # The request is bad: any host would refuse it, whatever else was tried.
        (False, False, 400),
        (False, True, 400),
        (True, True, 409),
        (True, False, 500),
    ],
)
def test_the_code_says_how_the_build_ended(
    reschedulable: bool, rescheduled: bool, code: int
) -> None:
    failure = _failure(reschedulable=reschedulable)
    assert faults.build_fault_code(failure, rescheduled=rescheduled) == code
