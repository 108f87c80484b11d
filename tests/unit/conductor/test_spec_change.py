"""What a changed spec asks of a record: the order of operations, and the resize's part of it
(a new flavor, the old one put back while a resize awaits its answer, a confirmation)."""

from __future__ import annotations

from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor.spec_change import SpecChange, wanted
from kubenova.db import models

TINY = {"name": "m1.tiny", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}
SMALL = {"name": "m1.small", "vcpus": 2, "memory_mib": 1024, "disk_gib": 2}


def _record(**values: Any) -> models.Instance:
    fields: dict[str, Any] = {
        "uuid": "u" * 36,
        "vm_state": states.ACTIVE,
        "task_state": None,
        "flavor": TINY,
        "image": {"name": "tiny"},
        "last_reboot_request": None,
        "last_resize_confirm": None,
    }
    fields.update(values)
    return models.Instance(**fields)


def _change(flavor: dict[str, Any] | None, **spec: Any) -> SpecChange:
    return SpecChange(
        uid="u" * 36,
        namespace="ns",
        name="vm",
        generation=2,
        spec={"flavor": (flavor or TINY)["name"], "image": "tiny", **spec},
        request_id="req",
        flavor=flavor,
        image={"name": "tiny"},
    )


def test_a_new_flavor_is_a_resize_to_its_snapshot() -> None:
    result = wanted(_change(SMALL), _record())

    assert result.operation is operations.RESIZE
    assert result.flavor == SMALL


def test_a_flavor_with_less_disk_is_refused_naming_the_field() -> None:
    flat = {**SMALL, "name": "m1.flat", "disk_gib": 0}

    result = wanted(_change(flat), _record())

    assert result.operation is None
    assert result.refusal is not None
    assert result.refusal[0] == "FlavorDiskTooSmall"
    assert "spec.flavor" in result.refusal[1]


def test_a_flavor_that_does_not_exist_is_refused_naming_it() -> None:
    change = SpecChange(
        uid="u" * 36, namespace="ns", name="vm", generation=2,
        spec={"flavor": "m1.gone", "image": "tiny"}, request_id="req",
    )  # fmt: skip

    result = wanted(change, _record())

    assert result.refusal == ("FlavorNotFound", "spec.flavor: Flavor 'm1.gone' does not exist")


def test_the_old_flavor_put_back_while_resized_is_a_revert() -> None:
    resized = _record(vm_state=states.RESIZED, flavor=SMALL)

    assert wanted(_change(TINY), resized, resized_from="m1.tiny").operation is (
        operations.REVERT_RESIZE
    )
    # A third flavor while resized is a resize, which the table refuses in that state.
    other = {**SMALL, "name": "m1.big", "disk_gib": 4}
    assert wanted(_change(other), resized, resized_from="m1.tiny").operation is operations.RESIZE
    assert operations.RESIZE.refusal(states.RESIZED, None) is not None


def test_a_new_confirmation_stamp_is_acted_on_once() -> None:
    resized = _record(vm_state=states.RESIZED, flavor=SMALL)
    change = _change(SMALL, confirmResize={"requestedAt": "t1"})

    result = wanted(change, resized, resized_from="m1.tiny")
    assert result.operation is operations.CONFIRM_RESIZE
    assert result.stamps == {"last_resize_confirm": "t1"}

    confirmed = _record(vm_state=states.RESIZED, flavor=SMALL, last_resize_confirm="t1")
    assert wanted(change, confirmed, resized_from="m1.tiny").operation is None


def test_a_resized_instance_keeps_its_power_until_answered() -> None:
    resized = _record(vm_state=states.RESIZED, flavor=SMALL)

    assert wanted(_change(SMALL, powerState="Stopped"), resized, "m1.tiny").operation is None
    assert operations.for_power_state("Running", states.RESIZED) is None


def test_a_resized_instance_shows_verify_resize() -> None:
    assert states.phase(states.RESIZED, None, "running", host="h1") == "VerifyResize"
