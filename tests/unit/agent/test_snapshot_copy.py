"""The copy of a root disk's overlay: a running guest is paused for it and runs again after,
whatever happens; a paused one stays paused, unless a copy that died had paused it."""

from __future__ import annotations

import pathlib

import pytest

from kubenova_agent.virt.libvirt import snapshot
from kubenova_agent.virt.power_state import LibvirtDomainState


class FakeDomain:
    name = "instance-x"

    def __init__(self, state: LibvirtDomainState) -> None:
        self._state = state
        self.calls: list[str] = []

    def state(self) -> int:
        return int(self._state)

    def pause(self) -> None:
        self.calls.append("pause")
        self._state = LibvirtDomainState.PAUSED

    def unpause(self) -> None:
        self.calls.append("unpause")
        self._state = LibvirtDomainState.RUNNING


@pytest.fixture
def files(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    overlay = tmp_path / "disk"
    overlay.write_bytes(b"what the guest wrote" * 1000)
    return overlay, tmp_path / "disk.snapshot", tmp_path / "snapshot.paused"


def test_a_running_guest_is_paused_for_the_copy_only(files, monkeypatch):
    overlay, copy, marker = files
    domain = FakeDomain(LibvirtDomainState.RUNNING)
    seen: list[tuple[int, bool]] = []
    real_copy = snapshot._copy

    def copy_while_looking(source, target):
        seen.append((domain.state(), marker.exists()))
        real_copy(source, target)

    monkeypatch.setattr(snapshot, "_copy", copy_while_looking)

    paused_s = snapshot.copy_overlay(domain, overlay, copy, pause_marker=marker)

    assert seen == [(int(LibvirtDomainState.PAUSED), True)]
    assert domain.calls == ["pause", "unpause"]
    assert copy.read_bytes() == overlay.read_bytes()
    assert not marker.exists()
    assert paused_s >= 0.0


@pytest.mark.parametrize("state", [LibvirtDomainState.PAUSED, LibvirtDomainState.SHUTOFF])
def test_a_guest_that_is_not_running_is_copied_as_it_is(files, state):
    overlay, copy, marker = files
    domain = FakeDomain(state)

    assert snapshot.copy_overlay(domain, overlay, copy, pause_marker=marker) == 0.0

    assert domain.calls == []
    assert copy.read_bytes() == overlay.read_bytes()


def test_a_guest_left_paused_by_a_copy_that_died_runs_again(files):
    overlay, copy, marker = files
    marker.touch()
    domain = FakeDomain(LibvirtDomainState.PAUSED)

    snapshot.copy_overlay(domain, overlay, copy, pause_marker=marker)

    assert domain.calls == ["unpause"]
    assert domain.state() == int(LibvirtDomainState.RUNNING)
    assert not marker.exists()


def test_the_guest_runs_again_when_the_copy_fails(files):
    overlay, copy, marker = files
    copy.write_bytes(b"in the way")  # the copy is made with O_EXCL
    domain = FakeDomain(LibvirtDomainState.RUNNING)

    with pytest.raises(FileExistsError):
        snapshot.copy_overlay(domain, overlay, copy, pause_marker=marker)

    assert domain.calls == ["pause", "unpause"]
    assert not marker.exists()
