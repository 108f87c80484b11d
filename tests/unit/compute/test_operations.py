"""The table of day-2 operations: which operation reaches a wanted power state, and the
refusals, which name the operation and the state."""

from __future__ import annotations

import pytest

from kubenova.compute import operations, states


@pytest.mark.parametrize(
    ("wanted", "vm_state", "expected"),
    [
        ("Running", states.ACTIVE, None),
        ("Running", states.STOPPED, operations.START),
        ("Running", states.PAUSED, operations.UNPAUSE),
        ("Running", states.SUSPENDED, operations.RESUME),
        ("Running", states.ERROR, operations.START),
        ("Stopped", states.STOPPED, None),
        ("Stopped", states.ACTIVE, operations.STOP),
        ("Stopped", states.PAUSED, operations.STOP),
        ("Paused", states.ACTIVE, operations.PAUSE),
        ("Paused", states.PAUSED, None),
        ("Suspended", states.ACTIVE, operations.SUSPEND),
        ("Suspended", states.SUSPENDED, None),
    ],
)
def test_the_operation_for_a_wanted_power_state(
    wanted: str, vm_state: str, expected: operations.Operation | None
) -> None:
    assert operations.for_power_state(wanted, vm_state) is expected


@pytest.mark.parametrize(
    ("operation", "vm_state", "task_state", "refusal"),
    [
        (operations.STOP, states.ACTIVE, None, None),
        (operations.STOP, states.ERROR, None, None),
        (
            operations.STOP,
            states.PAUSED,
            None,
            "cannot stop: the instance is paused; stop needs vm_state active or error",
        ),
        (
            operations.START,
            states.ERROR,
            None,
            "cannot start: the instance is error; start needs vm_state stopped",
        ),
        (
            operations.PAUSE,
            states.ACTIVE,
            states.REBOOTING,
            "cannot pause: the instance is busy (rebooting)",
        ),
        (
            operations.REBOOT_SOFT,
            states.STOPPED,
            None,
            "cannot reboot: the instance is stopped; reboot needs vm_state active",
        ),
        (operations.REBOOT_HARD, states.STOPPED, None, None),
        (operations.REBOOT_HARD, states.SUSPENDED, None, None),
        (operations.RESUME, states.SUSPENDED, None, None),
    ],
)
def test_refusals_name_the_operation_and_the_state(
    operation: operations.Operation, vm_state: str, task_state: str | None, refusal: str | None
) -> None:
    assert operation.refusal(vm_state, task_state) == refusal


def test_every_operation_runs_under_its_own_task_state_and_is_found_by_it() -> None:
    every = [
        operations.STOP,
        operations.START,
        operations.PAUSE,
        operations.UNPAUSE,
        operations.SUSPEND,
        operations.RESUME,
        operations.REBOOT_SOFT,
        operations.REBOOT_HARD,
    ]
    assert len({op.task_state for op in every}) == len(every)
    for op in every:
        assert operations.BY_TASK_STATE[op.task_state] is op
    assert operations.reboot(hard=True) is operations.REBOOT_HARD
    assert operations.REBOOT_SOFT.event == "compute_reboot_instance"
