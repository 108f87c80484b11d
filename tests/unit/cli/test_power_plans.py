import datetime

import pytest

from kubenova.cli import power
from tests.unit.cli.helpers import instance

NOW = datetime.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def plan(verb, obj):
    return power.plan_power(power.VERBS[verb], obj, NOW)


@pytest.mark.parametrize(
    ("verb", "wanted"),
    [
        ("stop", "Stopped"),
        ("pause", "Paused"),
        ("suspend", "Suspended"),
    ],
)
def test_verbs_away_from_running_patch_the_power_state(verb, wanted):
    assert plan(verb, instance()) == power.Patch({"spec": {"powerState": wanted}})


@pytest.mark.parametrize(
    ("verb", "from_state"),
    [("start", "Stopped"), ("unpause", "Paused"), ("resume", "Suspended")],
)
def test_verbs_back_to_running_patch_running_from_their_own_state(verb, from_state):
    obj = instance(power_state=from_state, phase=from_state)

    assert plan(verb, obj) == power.Patch({"spec": {"powerState": "Running"}})


@pytest.mark.parametrize(
    ("verb", "state", "word"),
    [
        ("start", "Running", "running"),
        ("unpause", "Running", "running"),
        ("resume", "Running", "running"),
        ("stop", "Stopped", "stopped"),
        ("pause", "Paused", "paused"),
        ("suspend", "Suspended", "suspended"),
    ],
)
def test_nothing_is_patched_when_spec_and_status_show_the_wanted_state(verb, state, word):
    obj = instance(power_state=state, phase=state)

    assert plan(verb, obj) == power.Already(f"instance web-1 is already {word}")


def test_a_task_under_way_is_not_already_there():
    obj = instance(power_state="Stopped", phase="Stopped", task="powering-off")

    assert plan("stop", obj) == power.Patch({"spec": {"powerState": "Stopped"}})


def test_a_spec_that_asks_but_a_status_that_does_not_show_it_yet_is_patched_and_waited_for():
    # The patch is a no-op for the spec; the wait then follows the operator to the verdict.
    obj = instance(power_state="Stopped", phase="Running")

    assert plan("stop", obj) == power.Patch({"spec": {"powerState": "Stopped"}})


def test_start_of_an_instance_stopped_by_its_guest_asks_for_a_hard_reboot():
    obj = instance(power_state="Running", phase="Stopped")

    decided = plan("start", obj)

    assert isinstance(decided, power.Patch)
    assert decided.patch == {
        "spec": {"reboot": {"requestedAt": "2025-03-01T12:00:00.123456Z", "type": "Hard"}}
    }
    assert "hard reboot" in decided.note
    assert "web-1" in decided.note


def test_start_while_the_operator_already_starts_it_only_waits():
    obj = instance(power_state="Running", phase="Stopped", task="powering-on")

    assert plan("start", obj) == power.Patch({"spec": {"powerState": "Running"}})


@pytest.mark.parametrize(
    ("verb", "power_state", "phase", "current", "hint"),
    [
        ("unpause", "Stopped", "Stopped", "Stopped", "start"),
        ("unpause", "Suspended", "Suspended", "Suspended", "resume"),
        ("resume", "Paused", "Paused", "Paused", "unpause"),
        ("start", "Paused", "Paused", "Paused", "unpause"),
        ("resume", "Running", "Stopped", "Stopped", "start"),
    ],
)
def test_a_verb_back_to_running_refuses_a_state_that_another_verb_leaves(
    verb, power_state, phase, current, hint
):
    decided = plan(verb, instance(power_state=power_state, phase=phase))

    assert isinstance(decided, power.Refused)
    assert decided.message.startswith(f"error: cannot {verb} instance web-1: it is {current}")
    assert f'use "kubectl nova {hint}"' in decided.message


def pending(power_state, phase):
    """The spec asks for ``power_state`` at generation 2; the operator has not decided yet."""
    return instance(power_state=power_state, phase=phase, generation=2)


def test_a_request_not_yet_decided_counts_as_where_the_instance_goes():
    decided = plan("start", pending("Suspended", "Running"))

    assert isinstance(decided, power.Refused)
    assert decided.message.startswith("error: cannot start instance web-1: it is Suspended")


def test_unpause_undoes_a_pause_the_operator_has_not_acted_on_yet():
    assert plan("unpause", pending("Paused", "Running")) == power.Patch(
        {"spec": {"powerState": "Running"}}
    )


def test_a_refused_request_leaves_the_instance_where_it_was():
    # "pause" of a stopped instance was refused: it is still stopped, so start fits.
    refused = instance(
        power_state="Paused", phase="Stopped", generation=2, observed=2,
        synced=("False", "InvalidState", 2),
    )  # fmt: skip

    assert plan("start", refused) == power.Patch({"spec": {"powerState": "Running"}})
    assert isinstance(plan("unpause", refused), power.Refused)


@pytest.mark.parametrize("phase", ["Error", "Pending", "Building", "Unknown", None])
def test_states_no_verb_leaves_go_to_the_operator_which_decides(phase):
    obj = instance(power_state="Running", phase=phase)

    assert plan("start", obj) == power.Patch({"spec": {"powerState": "Running"}})


def test_an_instance_without_power_state_in_its_spec_counts_as_running():
    obj = instance(power_state=None, phase="Running")

    assert plan("start", obj) == power.Already("instance web-1 is already running")


@pytest.mark.parametrize(("hard", "kind"), [(False, "Soft"), (True, "Hard")])
def test_reboot_stamps_a_request_with_microseconds(hard, kind):
    decided = power.plan_reboot(instance(), hard, NOW)

    assert decided == power.Patch(
        {"spec": {"reboot": {"requestedAt": "2025-03-01T12:00:00.123456Z", "type": kind}}}
    )


def test_a_reboot_stamp_never_repeats_the_previous_request():
    obj = instance(reboot={"requestedAt": "2025-03-01T12:00:00.123456Z", "type": "Soft"})

    decided = power.plan_reboot(obj, False, NOW)

    assert isinstance(decided, power.Patch)
    assert decided.patch["spec"]["reboot"]["requestedAt"] == "2025-03-01T12:00:00.123457Z"


def test_stamps_are_utc_whatever_the_local_zone():
    local = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2)))

    assert power.stamp(local) == "2025-03-01T12:00:00.123456Z"
