import pytest

from kubenova.compute import states


@pytest.mark.parametrize(
    ("vm_state", "task_state", "power_state", "host", "host_up", "phase"),
    [
        ("building", "scheduling", "nostate", None, True, "Pending"),
        ("building", "spawning", "nostate", "h1", True, "Building"),
        ("active", None, "running", "h1", True, "Running"),
        ("active", None, "nostate", "h1", True, "Building"),
        ("active", "rebooting_hard", "shutdown", "h1", True, "Running"),
        ("active", None, "running", "h1", False, "Unknown"),
        ("stopped", None, "shutdown", "h1", True, "Stopped"),
        ("paused", None, "paused", "h1", True, "Paused"),
        ("error", None, "nostate", "h1", True, "Error"),
        ("error", None, "nostate", None, True, "Error"),
        ("active", "deleting", "running", "h1", True, "Deleting"),
        ("deleted", None, "nostate", "h1", True, "Deleting"),
    ],
)
def test_phase_is_derived_from_the_three_states(
    vm_state, task_state, power_state, host, host_up, phase
):
    assert states.phase(vm_state, task_state, power_state, host=host, host_up=host_up) == phase
