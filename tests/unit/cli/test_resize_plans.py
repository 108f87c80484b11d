"""What the resize verbs patch, from the Instance as read: the new flavor; a confirmation
stamp; the old flavor back; and refusals when no resize awaits an answer."""

from __future__ import annotations

import datetime

import pytest

from kubenova.cli import kube, resize
from tests.unit.cli.helpers import instance

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def _resized() -> dict:
    obj = instance(phase="VerifyResize")
    obj["spec"]["flavor"] = "m1.small"
    obj["status"]["resize"] = {"oldFlavor": "m1.tiny", "newFlavor": "m1.small"}
    return obj


def test_a_resize_sets_the_flavor_unless_it_is_the_current_one() -> None:
    assert resize.plan_resize(instance(), "m1.small") == {"spec": {"flavor": "m1.small"}}
    assert resize.plan_resize(instance(), "m1.tiny") is None


def test_a_confirmation_stamps_a_new_request() -> None:
    obj = _resized()
    obj["spec"]["confirmResize"] = {"requestedAt": "2026-12-06T12:00:00.000000Z"}

    patch = resize.plan_confirm(obj, NOW)

    assert patch == {"spec": {"confirmResize": {"requestedAt": "2026-12-06T12:00:00.000001Z"}}}


def test_a_revert_puts_the_old_flavor_back() -> None:
    assert resize.plan_revert(_resized()) == {"spec": {"flavor": "m1.tiny"}}


@pytest.mark.parametrize("plan", [lambda o: resize.plan_confirm(o, NOW), resize.plan_revert])
def test_an_instance_with_no_resize_awaiting_an_answer_is_refused(plan) -> None:
    with pytest.raises(kube.CommandError, match="it is Running; only an instance in phase"):
        plan(instance())
