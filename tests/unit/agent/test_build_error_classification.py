"""Which spawn failures are rescheduled to another host and which abort the build."""

from __future__ import annotations

import subprocess

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import errors

UUID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"

ABORTED = [
    exceptions.ImageChecksumMismatch("http://x/i", expected="a" * 64, actual="b" * 64),
    exceptions.InvalidImage("not a qcow2"),
    exceptions.ImageTooLarge("i", virtual_size=2, disk_bytes=1),
    exceptions.ImageDownloadError("http://x/i", "HTTP 404 Not Found", permanent=True),
    ValueError("bad url"),
]
RESCHEDULED = [
    exceptions.HypervisorError("internal error: qemu unexpectedly closed the monitor", code=1),
    OSError(28, "No space left on device"),
    exceptions.ImageDownloadError("http://x/i", "connection refused"),
    subprocess.CalledProcessError(1, ["qemu-img"], stderr="qemu-img: Could not create"),
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("cause", ABORTED, ids=lambda exc: type(exc).__name__)
def test_request_faults_abort_the_build(cause):
    error = errors.build_error(UUID, cause)
    assert isinstance(error, exceptions.BuildAbortedError)
    assert error.instance_uuid == UUID


@pytest.mark.parametrize("cause", RESCHEDULED, ids=lambda exc: type(exc).__name__)
def test_host_faults_reschedule_the_build(cause):
    error = errors.build_error(UUID, cause)
    assert isinstance(error, exceptions.RescheduledBuildError)


def test_qemu_img_stderr_is_kept_in_the_reason():
    cause = subprocess.CalledProcessError(1, ["qemu-img"], stderr="Could not open backing file\n")
    error = errors.build_error(UUID, cause)
    assert error is not None
    assert "Could not open backing file" in error.reason


def test_a_build_error_is_passed_through():
    cause = exceptions.BuildAbortedError(UUID, "already classified")
    assert errors.build_error(UUID, cause) is cause


def test_keyboard_interrupt_is_not_a_build_error():
    assert errors.build_error(UUID, KeyboardInterrupt()) is None
