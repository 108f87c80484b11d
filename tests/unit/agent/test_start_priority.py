"""Starting guests first (KUBENOVA_STARTING_GUESTS_FIRST): read at start, handed to the libvirt
driver, which lowers a domain's live CPU weight once the domain has started."""

from __future__ import annotations

import logging
import pathlib

import pytest

from kubenova_agent import exceptions
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt.libvirt import start_priority
from tests.unit.agent.libvirt_builds import make_libvirt_driver

VARIABLE = "KUBENOVA_STARTING_GUESTS_FIRST"


@pytest.fixture(autouse=True)
def no_setting_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)


def test_on_by_default() -> None:
    assert AgentSettings.from_env(host="node-a").starting_guests_first is True


def test_false_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "false")
    assert AgentSettings.from_env(host="node-a").starting_guests_first is False


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "yes")
    with pytest.raises(ValueError, match=f"{VARIABLE} must be one of true, false, got 'yes'"):
        AgentSettings.from_env(host="node-a")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_agent_hands_the_setting_to_the_libvirt_driver(
    tmp_path: pathlib.Path, enabled: bool
) -> None:
    built = make_libvirt_driver(tmp_path, virt_type="qemu", starting_guests_first=enabled)
    assert built._start_priority.enabled is enabled


class Domain:
    """What StartPriority asks of a domain, recorded; ``refusal`` makes libvirt refuse."""

    def __init__(self, refusal: str | None = None) -> None:
        self.refusal = refusal
        self.shares: list[int] = []

    def set_live_cpu_shares(self, shares: int) -> None:
        if self.refusal is not None:
            raise exceptions.HypervisorError(self.refusal, code=55)
        self.shares.append(shares)


def test_a_started_domain_gets_the_least_weight() -> None:
    domain = Domain()
    start_priority.StartPriority(True).started(domain)  # type: ignore[arg-type]
    assert domain.shares == [start_priority.RUNNING_GUEST_CPU_SHARES] == [2]


def test_off_leaves_the_domain_alone() -> None:
    domain = Domain()
    start_priority.StartPriority(False).started(domain)  # type: ignore[arg-type]
    assert domain.shares == []


def test_a_refusal_is_logged_once_and_never_fails_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    priority = start_priority.StartPriority(True)
    refusing = Domain("cgroup CPU controller is not mounted")
    with caplog.at_level(logging.WARNING, logger=start_priority.__name__):
        priority.started(refusing)  # type: ignore[arg-type]
        priority.started(refusing)  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cgroup CPU controller is not mounted" in warnings[0]
    # A domain libvirt accepts it for still gets it.
    accepting = Domain()
    priority.started(accepting)  # type: ignore[arg-type]
    assert accepting.shares == [2]
