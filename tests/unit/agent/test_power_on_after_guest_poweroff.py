"""A start asked for while the guest is still shutting down (QEMU has not exited yet) waits
for the domain to be off and then starts it, instead of finding it running and doing
nothing."""

from __future__ import annotations

from typing import Any

from kubenova_agent.virt.libvirt import power
from kubenova_agent.virt.power_state import LibvirtDomainState


class ShuttingDown:
    """A domain whose QEMU exits after ``polls`` more looks."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.started = 0

    def is_active(self) -> bool:
        if self.started:
            return True
        if self.polls > 0:
            self.polls -= 1
            return True
        return False

    def state(self) -> int:
        if self.started:
            return int(LibvirtDomainState.RUNNING)
        return int(LibvirtDomainState.SHUTDOWN if self.polls > 0 else LibvirtDomainState.SHUTOFF)

    def has_managed_save_image(self) -> bool:
        return False


def test_a_start_waits_for_a_guest_that_is_shutting_down_then_starts_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(power, "POLL_INTERVAL_S", 0.001)
    domain = ShuttingDown(polls=5)

    def start(started: Any) -> None:
        started.started += 1

    power.power_on(domain, start)  # type: ignore[arg-type]
    assert domain.started == 1


def test_a_start_of_a_running_guest_does_nothing() -> None:
    domain = ShuttingDown(polls=0)
    domain.started = 1  # running

    def start(started: Any) -> None:
        raise AssertionError("a running domain was started again")

    power.power_on(domain, start)  # type: ignore[arg-type]
