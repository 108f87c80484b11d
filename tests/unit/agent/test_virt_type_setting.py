"""KUBENOVA_VIRT_TYPE (Nova's ``[libvirt] virt_type``): read and checked at start, handed to the
libvirt driver, which probes only for "auto"."""

from __future__ import annotations

import pathlib
import re

import pytest

from kubenova_agent import cmd
from kubenova_agent.settings import VIRT_TYPES, AgentSettings
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from kubenova_agent.virt.libvirt import probe
from tests.unit.agent.libvirt_builds import make_libvirt_driver

VARIABLE = "KUBENOVA_VIRT_TYPE"


@pytest.fixture(autouse=True)
def no_virt_type_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)


def test_auto_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AgentSettings.from_env(host="node-a").virt_type == "auto"
    monkeypatch.setenv(VARIABLE, "")
    assert AgentSettings.from_env(host="node-a").virt_type == "auto"


@pytest.mark.parametrize("value", ["auto", "kvm", "qemu"])
def test_each_virt_type_is_read(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VARIABLE, value)
    assert AgentSettings.from_env(host="node-a").virt_type == value


@pytest.mark.parametrize("value", ["xen", "KVM", "tcg", " kvm"])
def test_a_bad_virt_type_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(VARIABLE, value)
    expected = f"environment variable {VARIABLE} must be one of auto, kvm, qemu, got {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected) + "$"):
        AgentSettings.from_env(host="node-a")


def test_the_driver_accepts_what_the_setting_accepts() -> None:
    assert frozenset(VIRT_TYPES) == libvirt_driver.VIRT_TYPES


def test_the_agent_stops_at_start_on_a_bad_virt_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_get_this_far(*args: object) -> None:
        raise AssertionError("the agent went on past a bad setting")

    monkeypatch.setattr(cmd.log, "setup", lambda *args, **kwargs: None)
    monkeypatch.setattr(cmd, "_amqp_url_from_operator", must_not_get_this_far)
    monkeypatch.setenv(VARIABLE, "xen")
    # --host too: the settings are checked even when the host name needs none of them.
    with pytest.raises(SystemExit) as raised:
        cmd.main(["--host", "node-a"])
    assert str(raised.value) == (
        f"kubenova-agent: environment variable {VARIABLE} must be one of auto, kvm, qemu, got 'xen'"
    )


@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_a_forced_virt_type_skips_the_probe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, virt_type: str
) -> None:
    def no_probe(*args: object) -> str:
        raise AssertionError("probed although the virt type was forced")

    monkeypatch.setattr(probe, "probe_virt_type", no_probe)
    built = make_libvirt_driver(tmp_path, virt_type=virt_type)
    try:
        built.init_host()  # where "auto" would probe
        assert built.get_host_info().virt_type == virt_type
    finally:
        built._connection.close()


def test_auto_probes_once_with_the_drivers_libvirtd_and_instances_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    # Without a local QEMU the probe runs its guest through that libvirtd, with its files under
    # the instances path, which libvirtd's QEMU reaches at the same path.
    calls: list[tuple[object, ...]] = []

    def fake_probe(*args: object) -> str:
        calls.append(args)
        return "qemu"

    monkeypatch.setattr(probe, "probe_virt_type", fake_probe)
    built = make_libvirt_driver(tmp_path, virt_type="auto")
    assert (built.virt_type, built.virt_type) == ("qemu", "qemu")
    assert len(calls) == 1
    assert calls[0][2] is built._connection
    assert calls[0][3] == str(tmp_path / "instances")
