"""The KVM probe's libvirt path against a real libvirtd (``integration``).

The domain type is "qemu" (TCG), not "kvm": whether KVM works differs between machines, while
TCG always runs the payload to its end, so a success proves the mechanism end to end (the
transient domain, the debug-exit device passed in libvirt's QEMU namespace, the marker reaching
the serial file, the cleanup) on any host.

The probe's files must be where libvirtd's QEMU can reach them. By default that is a directory
under /var/tmp, which works with a libvirtd on this host; when libvirtd runs in a pod, point
``KUBENOVA_INSTANCES_PATH`` at the directory it shares with the agent (/var/lib/kubenova/instances).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection, probe
from tests.support.required import missing

from .conftest import LIBVIRT_URI

pytestmark = pytest.mark.integration


@pytest.fixture
def libvirtd() -> Iterator[connection.Connection]:
    conn = connection.Connection(LIBVIRT_URI)
    try:
        conn.open()
    except exceptions.HypervisorError as exc:
        missing(f"libvirtd is not reachable at {LIBVIRT_URI} ({exc})")
    yield conn
    conn.close()


@pytest.fixture
def shared_dir() -> Iterator[pathlib.Path]:
    parent = os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/tmp")
    path = pathlib.Path(tempfile.mkdtemp(prefix="kubenova-probe-test-", dir=parent))
    path.chmod(0o711)  # QEMU, perhaps unprivileged, must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def probe_domains(libvirtd: connection.Connection) -> list[str]:
    return [
        domain.name
        for domain in libvirtd.list_domains()
        if domain.name.startswith(probe.DOMAIN_NAME_PREFIX)
    ]


def test_payload_runs_to_its_end_as_a_tcg_domain(libvirtd, shared_dir):
    before = probe_domains(libvirtd)
    started = time.monotonic()
    assert probe.run_payload_in_libvirtd(libvirtd, str(shared_dir), "qemu", timeout=30)
    # The payload takes about 0.3 s under TCG; far more means the probe waited for nothing.
    assert time.monotonic() - started < 15
    assert list(shared_dir.iterdir()) == []
    assert probe_domains(libvirtd) == before
