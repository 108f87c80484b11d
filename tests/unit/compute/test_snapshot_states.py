"""The snapshot's line in the table of allowed states: Nova's createImage states."""

import pytest

from kubenova.compute import operations, states


@pytest.mark.parametrize(
    "vm_state", [states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED]
)
def test_a_snapshot_is_allowed_in_nova_s_states(vm_state):
    assert operations.SNAPSHOT.refusal(vm_state, None) is None


@pytest.mark.parametrize("vm_state", [states.BUILDING, states.ERROR, states.DELETED])
def test_other_states_are_refused_naming_the_state_and_the_operation(vm_state):
    assert operations.SNAPSHOT.refusal(vm_state, None) == (
        f"cannot snapshot: the instance is {vm_state}; "
        "snapshot needs vm_state active or paused or stopped or suspended"
    )


def test_a_task_under_way_refuses_it():
    assert operations.SNAPSHOT.refusal(states.ACTIVE, states.REBOOTING) == (
        "cannot snapshot: the instance is busy (rebooting)"
    )


def test_it_runs_under_image_snapshot_and_records_nova_s_event():
    assert operations.SNAPSHOT.task_state == "image_snapshot"
    assert operations.SNAPSHOT.event == "compute_snapshot_instance"
    assert operations.SNAPSHOT.final_vm_state is None
    # Its own road (conductor/snapshots.py), not the spec's.
    assert operations.SNAPSHOT.task_state not in operations.BY_TASK_STATE
