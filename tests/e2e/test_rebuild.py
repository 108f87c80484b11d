"""A real guest rebuilt from another Image with ``kubectl nova rebuild``: a new root disk and
config drive (the new user data reaches the guest), the same uuid, host and address."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import apply, get, kubectl, status_of, wait_for
from tests.e2e.test_power_operations import _actions, _boot, _boots, _console, _ok, nova

pytestmark = pytest.mark.e2e


@pytest.fixture
def second_image(stack: dict[str, str]) -> Iterator[str]:
    """The tiny guest's file as another Image: a rebuild makes the disk anew from the Image
    the spec names."""
    tiny = get("images", "kubenova-tiny")
    assert tiny is not None
    apply(
        {
            "apiVersion": tiny["apiVersion"],
            "kind": "Image",
            "metadata": {"name": "kubenova-tiny-again"},
            "spec": tiny["spec"],
        }
    )
    yield "kubenova-tiny-again"
    kubectl("delete", "image", "kubenova-tiny-again", "--wait=false", check=False)


def test_an_instance_rebuilt_from_another_image_keeps_its_identity_and_address(
    namespace: str, stack: dict[str, str], second_image: str
) -> None:
    uuid = _boot(namespace, "reborn", userData="first life\n")
    before = status_of(namespace, "reborn")

    kubectl(
        "patch", "instance", "reborn", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"userData": "second life\n"}}),
    )  # fmt: skip
    _ok(nova(stack, "rebuild", "reborn", second_image, "-n", namespace))

    wait_for("the boot of the rebuilt guest", lambda: _boots(uuid) == 2, timeout=180)
    after = wait_for(
        "an address again",
        lambda: (s := status_of(namespace, "reborn")).get("addresses") and s,
        timeout=120,
    )
    assert get("instances", "reborn", namespace)["metadata"]["uid"] == uuid
    assert (after["phase"], after["host"], after["addresses"]) == (
        "Running",
        before["host"],
        before["addresses"],
    )
    second_boot = _console(uuid).split("kubenova-guest: ready")[1]
    assert "second life" in second_boot
    assert "first life" not in second_boot
    wait_for(
        "the rebuild's action",
        lambda: (
            [a["result"] for a in _actions(namespace, "reborn") if a["action"] == "rebuild"]
            == ["Success"]
        ),
        timeout=60,
    )
