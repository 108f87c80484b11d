"""Day-2 power operations on real QEMU guests, asked for with ``kubectl nova`` (the plugin
kubectl finds on the PATH) and with ``kubectl patch``: stop and start, pause, suspend, soft and
hard reboots, a refused operation, a soft reboot the guest ignores, a guest that powers itself
off, and an agent killed in the middle of a reboot. Each guest counts its boots on its serial
console (``kubenova-guest: ready`` once per boot), so a reboot is seen to happen, and a
resume or an unpause is seen not to reboot."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
from typing import Any

import libvirt
import pytest

from tests.e2e.conftest import (
    AGENT,
    KUBECONFIG,
    KUBECTL,
    apply,
    condition_of,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.e2e

INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
FLAVOR = "e2e-power"
READY = "kubenova-guest: ready"


def nova(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``kubectl nova ARGS`` as a user runs it: kubectl finds the plugin on the PATH."""
    return subprocess.run(
        [str(KUBECTL), "nova", *args],
        env={**env, "KUBECONFIG": str(KUBECONFIG)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _boot(namespace: str, name: str, **spec: Any) -> str:
    """Apply an instance, wait until its guest is up; return its uuid."""
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    apply(instance_manifest(name, namespace, FLAVOR, **spec))
    wait_for(
        f"{name} to be Running with an address",
        lambda: (s := status_of(namespace, name)).get("phase") == "Running" and s.get("addresses"),
        timeout=180,
    )
    uuid: str = get("instances", name, namespace)["metadata"]["uid"]
    wait_for(f"{name}'s guest to be ready", lambda: _boots(uuid) >= 1, timeout=120)
    return uuid


def _console(uuid: str) -> str:
    path = INSTANCES_PATH / uuid / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _boots(uuid: str) -> int:
    return _console(uuid).count(READY)


def _domain_state(uuid: str) -> tuple[int, bool]:
    """libvirt's state of the instance's domain, and whether it has a managed save image."""
    connection = libvirt.open("qemu:///system")
    try:
        domain = connection.lookupByUUIDString(uuid)
        return domain.state()[0], bool(domain.hasManagedSaveImage(0))
    finally:
        connection.close()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _actions(namespace: str, name: str) -> list[dict[str, Any]]:
    listed = kubectl(
        "get", "instanceactions", "-n", namespace, "-l", f"compute.kubenova.io/instance={name}",
        "-o", "json",
    )  # fmt: skip
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return sorted(items, key=lambda a: (a.get("startTime") or "", a["metadata"]["name"]))


def test_a_guest_is_stopped_started_paused_suspended_and_rebooted_through_the_plugin(
    namespace: str, stack: dict[str, str]
) -> None:
    uuid = _boot(namespace, "vm")

    _ok(nova(stack, "stop", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Stopped"
    assert _domain_state(uuid)[0] == libvirt.VIR_DOMAIN_SHUTOFF

    # Refused in this state: the plugin says why and fails; nothing changes.
    refused = nova(stack, "pause", "vm", "-n", namespace)
    assert refused.returncode == 1, refused
    assert "cannot pause: the instance is stopped" in refused.stdout + refused.stderr
    assert status_of(namespace, "vm")["phase"] == "Stopped"
    assert condition_of(namespace, "vm", "Synced")["reason"] == "InvalidState"

    _ok(nova(stack, "start", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Running"
    wait_for("the second boot", lambda: _boots(uuid) == 2, timeout=120)

    _ok(nova(stack, "pause", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Paused"
    assert _domain_state(uuid)[0] == libvirt.VIR_DOMAIN_PAUSED
    _ok(nova(stack, "unpause", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Running"

    _ok(nova(stack, "suspend", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Suspended"
    assert _domain_state(uuid) == (libvirt.VIR_DOMAIN_SHUTOFF, True)
    _ok(nova(stack, "resume", "vm", "-n", namespace))
    assert status_of(namespace, "vm")["phase"] == "Running"
    assert _domain_state(uuid) == (libvirt.VIR_DOMAIN_RUNNING, False)
    # Neither an unpause nor a resume boots the guest again.
    assert _boots(uuid) == 2

    _ok(nova(stack, "reboot", "vm", "-n", namespace))
    wait_for("the boot after a soft reboot", lambda: _boots(uuid) == 3, timeout=120)
    _ok(nova(stack, "reboot", "--hard", "vm", "-n", namespace))
    wait_for("the boot after a hard reboot", lambda: _boots(uuid) == 4, timeout=120)

    # The history is written a moment after the statuses (action_history.py).
    def history() -> list[tuple[str, str]]:
        return [(a["action"], a["result"]) for a in _actions(namespace, "vm")]

    with contextlib.suppress(AssertionError):
        wait_for("the history of every operation", lambda: history() == EXPECTED_HISTORY, 60)
    assert history() == EXPECTED_HISTORY
    events = _ok(nova(stack, "events", "vm", "-n", namespace))
    for action in ("create", "stop", "start", "pause", "suspend", "reboot"):
        assert action in events


# The objects: the create, which succeeded at its first try, is shown from the Instance's
# status by `kubectl nova events` and has none.
EXPECTED_HISTORY = [
    ("stop", "Success"),
    ("start", "Success"),
    ("pause", "Success"),
    ("unpause", "Success"),
    ("suspend", "Success"),
    ("resume", "Success"),
    ("reboot", "Success"),
    ("reboot", "Success"),
]


def test_a_soft_reboot_the_guest_ignores_becomes_hard(
    namespace: str, stack: dict[str, str]
) -> None:
    uuid = _boot(namespace, "deaf", userData="#kubenova-guest: ignore-acpi\n")

    # Declaratively, as GitOps would: a new stamp in the spec.
    kubectl(
        "patch", "instance", "deaf", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"reboot": {"requestedAt": "2026-12-06T10:00:00Z"}}}),
    )  # fmt: skip
    wait_for("the boot after the reboot", lambda: _boots(uuid) == 2, timeout=180)
    reboot = wait_for(
        "the reboot action to finish",
        lambda: next(
            (
                a
                for a in _actions(namespace, "deaf")
                if a["action"] == "reboot" and a.get("finishTime")
            ),
            None,
        ),
        timeout=60,
    )
    assert reboot["result"] == "Success"
    assert "rebooted hard" in (reboot.get("message") or "")


def test_a_guest_that_powers_itself_off_is_recorded_stopped_under_run_strategy_manual(
    namespace: str, stack: dict[str, str]
) -> None:
    uuid = _boot(
        namespace, "quitter", runStrategy="Manual", userData="#kubenova-guest: poweroff-after=3\n"
    )
    wait_for(
        "the guest's own power-off to be recorded",
        lambda: status_of(namespace, "quitter").get("phase") == "Stopped",
        timeout=60,
        interval=0.2,
    )
    assert _domain_state(uuid)[0] == libvirt.VIR_DOMAIN_SHUTOFF
    # The conductor reads the spec after recording the power-off: the condition follows.
    synced = wait_for(
        "the Synced condition to say the guest powered itself off",
        lambda: (
            (c := condition_of(namespace, "quitter", "Synced")).get("reason") == "GuestPoweredOff"
            and c
        ),
        timeout=30,
        interval=0.2,
    )
    assert synced["status"] == "False"

    # Started again by asking (a hard reboot, as the spec already says Running). The guest
    # powers itself off again soon after, so the reboot's record is what is checked.
    _ok(nova(stack, "start", "quitter", "-n", namespace))
    wait_for(
        "the hard reboot's action",
        lambda: (
            [a["result"] for a in _actions(namespace, "quitter") if a["action"] == "reboot"]
            == ["Success"]
        ),
        timeout=60,
    )


def test_a_guest_that_powers_itself_off_is_started_again_under_run_strategy_always(
    namespace: str, stack: dict[str, str]
) -> None:
    uuid = _boot(namespace, "phoenix", userData="#kubenova-guest: poweroff-after=3\n")
    wait_for("a second boot", lambda: _boots(uuid) >= 2, timeout=120)
    starts = wait_for(
        "the start action",
        lambda: [a for a in _actions(namespace, "phoenix") if a["action"] == "start"],
        timeout=60,
    )
    assert "spec.runStrategy Always starts it again" in starts[0].get("message", "")


def test_killing_the_agent_in_the_middle_of_a_reboot_leaves_no_instance_stuck(
    namespace: str, stack: dict[str, str]
) -> None:
    # The guest ignores the soft request, so the reboot is under way for the whole shutdown
    # timeout: the agent is killed in the middle of it.
    uuid = _boot(namespace, "victim", userData="#kubenova-guest: ignore-acpi\n")
    _ok(nova(stack, "reboot", "victim", "-n", namespace, "--no-wait"))
    wait_for(
        "the reboot to be under way",
        lambda: status_of(namespace, "victim").get("taskState") == "rebooting",
        timeout=30,
        interval=0.2,
    )
    AGENT.kill()
    AGENT.restart()
    wait_for(
        "the reboot to end",
        lambda: (
            (s := status_of(namespace, "victim")).get("taskState") is None
            and s.get("phase") == "Running"
        ),
        timeout=180,
    )
    wait_for("the boot after the reboot", lambda: _boots(uuid) >= 2, timeout=120)
    wait_for(
        "the reboot action to end in success",
        lambda: (
            [
                (a["result"], bool(a.get("finishTime")))
                for a in _actions(namespace, "victim")
                if a["action"] == "reboot"
            ]
            == [("Success", True)]
        ),
        timeout=60,
    )
