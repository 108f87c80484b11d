"""The host's serial console server against a real guest: the tiny guest booted by the
LibvirtDriver on the host's libvirtd has its first serial port on a unix socket that libvirt
binds in its instance directory, still logged to ``console.log``; the server relays a line to
the guest's root shell over TLS and brings back the shell's answer."""

from __future__ import annotations

import pathlib
import random
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator

import pytest

from kubenova_agent import serial_console
from kubenova_agent.virt.libvirt import domain_xml
from tests.integration.virt import conftest
from tests.support import serial_console as support
from tests.support.required import missing

pytestmark = pytest.mark.integration

GUEST_BOOT_TIMEOUT = 180.0
ANSWER_TIMEOUT = 60.0


@pytest.fixture
def harness(
    image_files: tuple[conftest.ImageServer, conftest.ServedImage],
) -> Iterator[conftest.Harness]:
    with conftest._harness("libvirt", image_files) as libvirt_harness:
        if not libvirt_harness.served.boots:
            missing("the tiny guest image is not built (hack/guest/build.sh)")
        yield libvirt_harness


@pytest.fixture
def pki() -> Iterator[support.Pki]:
    directory = pathlib.Path(tempfile.mkdtemp(prefix="kn-sc-pki-", dir="/tmp"))
    try:
        yield support.write_pki(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_text(path: pathlib.Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(1)
    raise AssertionError(f"{text!r} not in {path} after {timeout:.0f}s: {content[-1500:]!r}")


def test_a_line_typed_on_the_serial_console_is_answered_by_the_guests_shell(
    harness: conftest.Harness, pki: support.Pki
) -> None:
    assert harness.instances_path is not None
    instance = harness.instance()
    harness.driver.spawn(instance)
    directory = harness.instances_path / instance.uuid
    console_log = directory / "console.log"
    # virtlogd still writes what the guest prints to the log, with no client connected.
    _wait_for_text(console_log, "kubenova-guest: ready", GUEST_BOOT_TIMEOUT)
    socket_path = directory / domain_xml.CONSOLE_SOCKET
    assert stat.S_ISSOCK(socket_path.stat().st_mode)

    number = random.randrange(10_000, 1_000_000)
    with support.running_server(pki, harness.instances_path) as server:
        client, answer = support.ask(
            server.port, pki.client_context(), f"{instance.uuid}\n".encode()
        )
        with client:
            assert answer == serial_console.OK
            client.settimeout(ANSWER_TIMEOUT)
            # The typed line holds the sum unreduced: only the shell's answer holds the total.
            client.sendall(f"echo kubenova-$(({number}+1))\n".encode())
            seen = support.read_until(client, f"kubenova-{number + 1}".encode())
            assert f"kubenova-{number + 1}".encode() in seen, seen[-1000:]
        # The answer is in the log too: the socket and the log are one serial port.
        _wait_for_text(console_log, f"kubenova-{number + 1}", 30)

        # A second client once the first left gets the console; another instance does not.
        client, answer = support.ask(
            server.port, pki.client_context(), f"{instance.uuid}\n".encode()
        )
        client.close()
        assert answer == serial_console.OK
        harness.driver.destroy(instance.uuid)
        client, answer = support.ask(
            server.port, pki.client_context(), f"{instance.uuid}\n".encode()
        )
        client.close()
        assert answer.startswith(b"ERROR unknown_instance")
