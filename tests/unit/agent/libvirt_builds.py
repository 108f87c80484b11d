"""The libvirt driver as the agent builds it from its settings, for the settings' tests."""

from __future__ import annotations

import pathlib
from typing import Any

from kubenova.config import MessagingSettings
from kubenova_agent import cmd
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt.libvirt import driver as libvirt_driver


def make_libvirt_driver(tmp_path: pathlib.Path, **settings: Any) -> libvirt_driver.LibvirtDriver:
    """The driver ``cmd.make_driver`` builds from settings with ``settings`` over these; its
    libvirt connection is opened only on first use."""
    values: dict[str, Any] = {
        "host": "node-a",
        "messaging": MessagingSettings(),
        "instances_path": str(tmp_path / "instances"),
        "image_cache_path": str(tmp_path / "_base"),
        "libvirt_uri": "test:///default",
        **settings,
    }
    built = cmd.make_driver(cmd.build_parser().parse_args([]), AgentSettings(**values))
    assert isinstance(built, libvirt_driver.LibvirtDriver)
    return built
