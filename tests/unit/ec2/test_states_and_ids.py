"""EC2's states of Instances, and the shape and stability of the ids."""

from __future__ import annotations

import re

import pytest

from kubenova.ec2 import ids, states
from kubenova.k8s import resources
from tests.unit.ec2 import fakes


def _instance(phase=None, power="Running", deleting=False, generation=1, observed=1):
    made = fakes.obj("Instance", "web-1", {"powerState": power}, "team-a")
    made["metadata"]["generation"] = generation
    if phase is not None:
        made["status"] = {"phase": phase, "observedGeneration": observed}
    if deleting:
        made["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return made


@pytest.mark.parametrize(
    ("phase", "power", "expected"),
    [
        (None, "Running", (0, "pending")),
        ("Pending", "Running", (0, "pending")),
        ("Building", "Running", (0, "pending")),
        ("Running", "Running", (16, "running")),
        ("VerifyResize", "Running", (16, "running")),
        ("Running", "Stopped", (64, "stopping")),
        ("Stopped", "Stopped", (80, "stopped")),
        ("Paused", "Paused", (80, "stopped")),
        ("Suspended", "Suspended", (80, "stopped")),
        ("Error", "Running", (48, "terminated")),
        ("Deleting", "Running", (32, "shutting-down")),
    ],
)
def test_phase_and_power_map_to_ec2_states(phase, power, expected):
    state = states.of_instance(_instance(phase, power))
    assert (state.code, state.name) == expected


def test_the_codes_are_ec2s():
    assert {state.name: state.code for state in states.ALL} == {
        "pending": 0,
        "running": 16,
        "shutting-down": 32,
        "terminated": 48,
        "stopping": 64,
        "stopped": 80,
    }


def test_an_instance_being_deleted_is_shutting_down_whatever_its_phase():
    assert states.of_instance(_instance("Running", deleting=True)) is states.SHUTTING_DOWN


def test_a_start_not_yet_acted_on_is_pending_and_a_settled_stop_is_stopped():
    asked = _instance("Stopped", "Running", generation=2, observed=1)
    assert states.of_instance(asked) is states.PENDING
    # Powered off by its guest under runStrategy Manual: nothing asked, so stopped.
    settled = _instance("Stopped", "Running", generation=1, observed=1)
    assert states.of_instance(settled) is states.STOPPED


def test_a_resized_instance_whose_guest_is_shut_off_stays_stopped():
    # A stopped instance resized (ModifyInstanceAttribute) until the resize is confirmed.
    resized = _instance("VerifyResize", "Stopped")
    resized["status"]["powerState"] = "shutdown"
    assert states.of_instance(resized) is states.STOPPED
    running = _instance("VerifyResize", "Running")
    running["status"]["powerState"] = "running"
    assert states.of_instance(running) is states.RUNNING
    # Started while it awaited the confirmation: pending until the operator acts on it.
    starting = _instance("VerifyResize", "Running", generation=3, observed=2)
    starting["status"]["powerState"] = "shutdown"
    assert states.of_instance(starting) is states.PENDING


def test_a_failed_instance_says_why():
    failed = _instance("Error")
    failed["status"]["fault"] = {"reason": "NoValidHost", "message": "no host has room"}
    reason = states.state_reason(failed)
    assert reason == {
        "Code": "Server.InternalError",
        "Message": "Server.InternalError: no host has room",
    }
    assert states.state_reason(_instance("Running")) is None


def test_ids_are_ec2_shaped_stable_and_per_uid():
    first = fakes.obj("Instance", "web-1", {}, "team-a")
    again = dict(first, metadata=dict(first["metadata"], resourceVersion="2"))
    remade = fakes.obj("Instance", "web-1", {}, "team-a")
    assert re.fullmatch(r"i-[0-9a-f]{17}", ids.instance_id(first))
    assert re.fullmatch(r"ami-[0-9a-f]{17}", ids.image_id(first))
    assert ids.instance_id(first) == ids.instance_id(again)
    assert ids.instance_id(first) != ids.instance_id(remade)


def test_an_image_a_snapshot_made_has_the_id_its_snapshot_was_given():
    snapshot = fakes.obj("InstanceSnapshot", "golden", {"imageName": "golden"}, "team-a")
    image = fakes.obj("Image", "golden", {})
    plain_id = ids.image_id(image)
    image["metadata"]["annotations"] = {
        resources.SNAPSHOT_UID_ANNOTATION: snapshot["metadata"]["uid"]
    }
    assert ids.image_id(image) == ids.snapshot_image_id(snapshot) != plain_id
    assert re.fullmatch(r"ami-[0-9a-f]{17}", ids.snapshot_image_id(snapshot))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("i-0123456789abcdef0", True),
        ("i-0123456789ABCDEF0", False),
        ("i-0123456789abcdef", False),
        ("ami-0123456789abcdef0", False),
        ("i-0123456789abcdef0x", False),
        ("web-1", False),
    ],
)
def test_only_well_formed_instance_ids_pass(value, ok):
    assert ids.well_formed(value, ids.INSTANCE_PREFIX) is ok


def test_a_kubectl_instance_is_a_reservation_of_its_own():
    made = fakes.obj("Instance", "web-1", {}, "team-a")
    assert re.fullmatch(r"r-[0-9a-f]{17}", ids.reservation_id(made))
    made["metadata"]["labels"][ids.RESERVATION_ID_LABEL] = "r-00000000000000001"
    assert ids.reservation_id(made) == "r-00000000000000001"
