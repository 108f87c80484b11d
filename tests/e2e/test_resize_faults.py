"""A resize whose operator and agent are both killed (SIGKILL) in the middle of it, while the
guest is being shut down for the move, and started again: the resize is finished, not left in a
task state, and its action says Success (Nova's ``_init_instance``). The killed agent's message
comes back from the broker and its step runs again; the new operator casts the step under way
again at start-up; the hosts' steps are idempotent and a second report of one step changes
nothing."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AGENT, OPERATOR, apply, flavor_manifest, status_of, wait_for
from tests.e2e.test_power_operations import _actions, _boot, _ok, nova
from tests.e2e.test_resize import BIG, _domain_size

pytestmark = pytest.mark.e2e


def test_killing_the_operator_and_the_agent_in_the_middle_of_a_resize_leaves_nothing_stuck(
    namespace: str, stack: dict[str, str]
) -> None:
    # The guest ignores ACPI, so its host waits the whole shutdown timeout before it powers
    # it off for the move: both processes are killed in that window.
    uuid = _boot(namespace, "survivor", userData="#kubenova-guest: ignore-acpi\n")
    apply(flavor_manifest(BIG, 2, 192, 2))
    _ok(nova(stack, "resize", "survivor", BIG, "-n", namespace, "--no-wait"))
    wait_for(
        "the resize to be under way on the host",
        lambda: status_of(namespace, "survivor").get("taskState") == "resize_migrating",
        timeout=60,
        interval=0.2,
    )
    OPERATOR.kill()
    AGENT.kill()
    OPERATOR.restart()
    AGENT.restart()

    status = wait_for(
        "the resize to end in VerifyResize",
        lambda: (
            (s := status_of(namespace, "survivor")).get("phase") == "VerifyResize"
            and s.get("taskState") is None
            and s
        ),
        timeout=240,
    )
    assert status["resize"]["newFlavor"] == BIG
    assert _domain_size(uuid) == (2, 192)
    _ok(nova(stack, "resize-confirm", "survivor", "-n", namespace))
    assert status_of(namespace, "survivor")["phase"] == "Running"
    wait_for(
        "the history: the resize and its confirmation, both ended in success",
        lambda: (
            [(a["action"], a["result"]) for a in _actions(namespace, "survivor")]
            == [("resize", "Success"), ("confirmResize", "Success")]
        ),
        timeout=90,
    )
